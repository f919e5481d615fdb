"""Writing a run's progress to the integration, under a lease, in the way the API takes it.

A run changes its integration with JSON Patch operations over a *view*: the document with
the run's state in its ``smartconnector`` field (:mod:`engine.run.progress`). Where that state
lives, and how the operations reach the API, is the write way's (:mod:`engine.writes`):

- :class:`DocumentWriter` (``json-patch-test``): the state is in the document itself, so
  two engines on two machines see each other; the lease is taken with a compare-and-swap on
  ``lastModified`` and every later write tests that it is still ours.
- :class:`StateWriter` (``replace-only``, ``put-only``): the API keeps no unknown field and
  takes no ``test``; the state is kept in the State API under the integration, the document
  gets ``replace`` operations (or a PUT of the whole of it), and the lease is claimed by
  writing it, waiting :data:`CLAIM_WAIT` and reading it back (a timed mutex: it holds while
  a rival's read and write of the claim land within that wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.client import ApiClient, Document
from engine.defaults import LEASE_TTL
from engine.errors import ApiError, Conflict, LeaseHeld, NotFound
from engine.run.progress import RUN_FIELD, Op, RunState, pointer
from engine.writes import WriteWay

#: Seconds a claim of the lease waits before reading it back (the timed mutex's delay).
CLAIM_WAIT = 1.0


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parse_iso(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Owner:
    """Who runs: a random run id, plus host and pid so a dead local holder is seen at once."""

    run_id: str
    host: str
    pid: int

    @classmethod
    def here(cls) -> Owner:
        return cls(secrets.token_hex(8), socket.gethostname(), os.getpid())

    def lease(self, ttl: float) -> dict[str, Any]:
        expires = datetime.now(UTC) + timedelta(seconds=ttl)
        return {
            "owner": self.run_id,
            "host": self.host,
            "pid": self.pid,
            "expiresAt": _iso(expires),
        }


def check_lease(doc: Document, owner: Owner) -> None:
    """Raise :class:`LeaseHeld` when someone else holds a live lease on ``doc``."""
    lease = RunState.of(doc).lease
    if lease is None or lease.get("owner") == owner.run_id:
        return
    if lease.get("host") == owner.host and not _pid_alive(lease.get("pid")):
        return  # its holder was a process on this host that is gone
    expires = _parse_iso(lease.get("expiresAt"))
    if expires is None or expires <= datetime.now(UTC):
        return
    raise LeaseHeld(
        f"integration {doc.get('_id')} is being run by {lease.get('owner')}"
        f" (pid {lease.get('pid')} on {lease.get('host')}); its lease expires at"
        f" {lease.get('expiresAt')}",
        integration_id=doc.get("_id"),
        holder=lease.get("owner"),
        expires_at=lease.get("expiresAt"),
    )


class DocumentWriter:
    """Every change a run makes to its integration goes through here, one PATCH each."""

    way = WriteWay.JSON_PATCH_TEST

    def __init__(self, api: ApiClient, doc: Document, owner: Owner, ttl: float = LEASE_TTL) -> None:
        self.api = api
        self.doc = doc
        self.owner = owner
        self.ttl = ttl
        self._lock = asyncio.Lock()
        self._last_write = time.monotonic()

    @property
    def id(self) -> str:
        return str(self.doc["_id"])

    @property
    def state(self) -> RunState:
        return RunState.of(self.doc)

    async def acquire(self, also: list[Op] | None = None, *, fresh: bool = False) -> None:
        """Take the lease: compare-and-swap on ``lastModified``; exit 4 if someone holds it.

        ``also`` rides on the same PATCH: a run's first change costs no request of its own.
        ``fresh``: the document was just created under this run's lease.
        """
        if fresh and not also and RunState.of(self.doc).lease_owner == self.owner.run_id:
            return
        check_lease(self.doc, self.owner)
        ops: list[Op] = []
        if "lastModified" in self.doc:
            ops.append({"op": "test", "path": "/lastModified", "value": self.doc["lastModified"]})
        ops += self.state.take(self.owner.lease(self.ttl), self.doc)
        ops += also or []
        try:
            await self._patch(ops)
        except Conflict:
            self.doc = await self.api.get("integrations", self.id)
            check_lease(self.doc, self.owner)
            raise LeaseHeld(
                f"integration {self.id} changed while taking its lease; try again",
                integration_id=self.id,
            ) from None

    async def write(self, ops: list[Op], *, release: bool = False) -> Document:
        """Apply ``ops`` if the lease is still ours, renewing it (or releasing it)."""
        guarded: list[Op] = [RunState.held_by(self.owner.run_id), *ops]
        if not release:
            guarded.append(RunState.renew(self.owner.lease(self.ttl)["expiresAt"]))
        elif not RunState.removes_all(ops):
            guarded.append(RunState.release())
        try:
            return await self._patch(guarded)
        except Conflict as exc:
            raise LeaseHeld(
                f"integration {self.id}: lost the lease or the document changed under the"
                f" run ({exc.message})",
                integration_id=self.id,
            ) from None

    async def _patch(self, ops: list[Op]) -> Document:
        async with self._lock:
            self.doc = await self.api.patch("integrations", self.id, ops)
            self._last_write = time.monotonic()
        return self.doc

    @property
    def quiet_for(self) -> float:
        """Seconds since this run last wrote (and so renewed its lease)."""
        return time.monotonic() - self._last_write


class LeaseKeeper:
    """Renews the leases of every run of an engine that has gone quiet (a long function).

    One task for all runs, not one per run: a fleet of runs in flight costs no more tasks.
    """

    def __init__(self, ttl: float) -> None:
        self.interval = ttl / 3
        self._writers: set[DocumentWriter] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, writer: DocumentWriter) -> None:
        self._writers.add(writer)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._renew_quiet_leases())

    def discard(self, writer: DocumentWriter) -> None:
        self._writers.discard(writer)

    async def _renew_quiet_leases(self) -> None:
        while self._writers:
            await asyncio.sleep(self.interval / 2)
            quiet = [w for w in self._writers if w.quiet_for >= self.interval]
            results = await asyncio.gather(*(w.write([]) for w in quiet), return_exceptions=True)
            for writer, result in zip(quiet, results, strict=True):
                if isinstance(result, Exception):  # the run will find out at its next write
                    self._writers.discard(writer)


# -- the State API's way ------------------------------------------------------------------


async def read_state(api: ApiClient, integration_id: str) -> dict[str, Any] | None:
    """The run state kept under the integration in the State API, if any."""
    try:
        found = await api.get_state(RUN_FIELD, resource="integrations", id=integration_id)
    except NotFound:
        return None
    return found if isinstance(found, dict) else None


def with_state(doc: Document, state: dict[str, Any] | None) -> Document:
    """The view of ``doc`` with ``state`` as its run state (none: without one)."""
    view = {k: v for k, v in doc.items() if k != RUN_FIELD}
    if state is not None:
        view[RUN_FIELD] = state
    return view


async def read_view(api: ApiClient, integration_id: str) -> Document:
    """The integration with its run state, wherever the API's way keeps it."""
    doc = await api.get("integrations", integration_id)
    return await view_of(api, doc)


async def read_views(api: ApiClient, **filters: str) -> list[Document]:
    """The integrations the API holds (matching ``filters``), each with its run state."""
    docs = await api.list("integrations", **filters)
    return list(await asyncio.gather(*(view_of(api, d) for d in docs)))


async def view_of(api: ApiClient, doc: Document) -> Document:
    """``doc`` (as read or listed) with its run state: read from the State API unless the
    API keeps it in the document (or ``doc`` carries it)."""
    way = api.writes.way
    if way is WriteWay.JSON_PATCH_TEST or (way is None and RUN_FIELD in doc):
        return doc
    return with_state(doc, await read_state(api, str(doc["_id"])))


def _split(ops: list[Op]) -> tuple[list[Op], list[Op]]:
    """Operations on the document, and those on the run state."""
    run = pointer(RUN_FIELD)
    on_state = [op for op in ops if op["path"] == run or op["path"].startswith(run + "/")]
    return [op for op in ops if op not in on_state], on_state


def _parts(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def applied(target: dict[str, Any], ops: list[Op]) -> dict[str, Any]:
    """``target`` with ``ops`` applied as the platform applies ``replace`` (a missing key under
    an existing object is set); ``test`` operations are skipped. ``target`` is not changed."""
    result = copy.deepcopy(target)
    for op in ops:
        if op["op"] == "test":
            continue
        *parents, last = _parts(op["path"])
        node: Any = result
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) else last
        if op["op"] == "remove":
            if isinstance(node, list) or last in node:
                del node[key]
        else:
            node[key] = op["value"]
    return result


class StateWriter(DocumentWriter):
    """``replace-only`` and ``put-only``: the run state in the State API, the document
    changed with ``replace`` operations (or one PUT of the whole of it)."""

    def __init__(
        self,
        api: ApiClient,
        doc: Document,
        owner: Owner,
        ttl: float = LEASE_TTL,
        *,
        way: WriteWay = WriteWay.REPLACE_ONLY,
        claim_wait: float = CLAIM_WAIT,
    ) -> None:
        super().__init__(api, doc, owner, ttl)
        self.way = way
        self.claim_wait = claim_wait

    async def acquire(self, also: list[Op] | None = None, *, fresh: bool = False) -> None:
        """Claim the lease: check no one holds it, write it, wait, read it back; exit 4 if
        another run holds it or claimed it meanwhile. The run-state part of ``also`` goes
        with the claim, the rest in one write after it."""
        on_doc, on_state = _split(also or [])
        if not fresh:
            self.doc = with_state(self.doc, await read_state(self.api, self.id))
        check_lease(self.doc, self.owner)
        take = self.state.take(self.owner.lease(self.ttl), self.doc)
        claimed = applied(self.doc, take + on_state)
        await self._store_state(claimed.get(RUN_FIELD))
        await asyncio.sleep(self.claim_wait)
        back = with_state(self.doc, await read_state(self.api, self.id))
        if RunState.of(back).lease_owner != self.owner.run_id:
            check_lease(back, self.owner)
            raise LeaseHeld(
                f"integration {self.id}: another run claimed it at the same time; try again",
                integration_id=self.id,
            )
        self.doc = claimed
        if on_doc:
            await self.write(on_doc)

    async def write(self, ops: list[Op], *, release: bool = False) -> Document:
        """The document's part first (so a crash in between leaves the run state behind the
        document, never ahead of it), then the run state's, each only if it changes.

        Every store of the run state renews the lease it carries. When the lease is due for
        renewal it may have lapsed (a long function, a suspended machine, a gap between two
        Temporal activities): then it is read first, and a run whose lease another took
        stops before it writes anything."""
        on_doc, on_state = _split([op for op in ops if op["op"] != "test"])
        if release and not RunState.removes_all(ops):
            on_state.append(RunState.release())
        async with self._lock:
            held = self.state.lease_owner == self.owner.run_id
            due = held and self.quiet_for >= self.ttl / 3
            if due:
                await self._check_still_ours()
            if on_doc:
                await self._write_document(on_doc)
            view = applied(self.doc, on_state)
            changed = view.get(RUN_FIELD) != self.doc.get(RUN_FIELD)
            if (changed or due) and RunState.of(view).lease_owner == self.owner.run_id:
                view = applied(view, [RunState.renew(self.owner.lease(self.ttl)["expiresAt"])])
            if view.get(RUN_FIELD) != self.doc.get(RUN_FIELD):
                await self._store_state(view.get(RUN_FIELD))
                self.doc = with_state(self.doc, view.get(RUN_FIELD))
        return self.doc

    @property
    def quiet_for(self) -> float:
        """Seconds since this run's lease was last renewed, told from its expiry by the wall
        clock: a suspended machine, or a writer made anew for the next Temporal activity,
        sees the time that passed."""
        if self.state.lease_owner != self.owner.run_id:
            return 0.0
        expires = _parse_iso((self.state.lease or {}).get("expiresAt"))
        if expires is None:
            return self.ttl
        return self.ttl - (expires - datetime.now(UTC)).total_seconds()

    async def _write_document(self, ops: list[Op]) -> None:
        changes = [{"op": "replace", "path": op["path"], "value": op["value"]} for op in ops]
        document = applied(with_state(self.doc, None), changes)
        answer: Document | None = None
        if self.way is WriteWay.REPLACE_ONLY:
            try:
                answer = await self.api.patch_applied("integrations", self.id, changes)
                self.api.writes.confirm()
            except ApiError as exc:
                if exc.status not in (404, 405, 501):  # no PATCH here after all
                    raise
                self.way = WriteWay.PUT_ONLY
                self.api.writes.learn(self.way)
        if self.way is WriteWay.PUT_ONLY:
            answer = await self.api.replace_applied("integrations", self.id, document)
            self.api.writes.confirm()
        self.doc = with_state(answer or document, self.doc.get(RUN_FIELD))

    async def _check_still_ours(self) -> None:
        stored = await read_state(self.api, self.id)
        if RunState.of(with_state(self.doc, stored)).lease_owner != self.owner.run_id:
            raise LeaseHeld(
                f"integration {self.id}: lost the lease (another run took it)",
                integration_id=self.id,
            )

    async def _store_state(self, state: dict[str, Any] | None) -> None:
        if state is None:
            await self._delete_state()
        else:
            await self.api.put_state(RUN_FIELD, state, resource="integrations", id=self.id)

    async def _delete_state(self) -> None:
        with contextlib.suppress(NotFound):  # nothing was kept: the run stored none
            await self.api.delete_state(RUN_FIELD, resource="integrations", id=self.id)


def open_writer(
    way: WriteWay,
    api: ApiClient,
    doc: Document,
    owner: Owner,
    ttl: float = LEASE_TTL,
    claim_wait: float = CLAIM_WAIT,
) -> DocumentWriter:
    """The writer for ``way``."""
    if way is WriteWay.JSON_PATCH_TEST:
        return DocumentWriter(api, doc, owner, ttl)
    return StateWriter(api, doc, owner, ttl, way=way, claim_wait=claim_wait)
