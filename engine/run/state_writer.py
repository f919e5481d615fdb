"""Writing a run's changes where the API accepts only ``replace`` operations or whole
documents: the run state in the State API, the document apart, the lease claimed as a timed
mutex; and :func:`open_writer`, which picks the writer for the API's way."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from datetime import UTC, datetime
from typing import Any

from engine.client import ApiClient, Document
from engine.defaults import LEASE_TTL
from engine.errors import ApiError, LeaseHeld, NotFound
from engine.run.progress import RUN_FIELD, Op, RunState
from engine.run.views import read_state, with_state
from engine.run.writer import CLAIM_WAIT, DocumentWriter, Owner, check_lease, parse_iso
from engine.writes import WriteWay


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
        on_doc, on_state = RunState.split(also or [])
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
        on_doc, on_state = RunState.split([op for op in ops if op["op"] != "test"])
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
        expires = parse_iso((self.state.lease or {}).get("expiresAt"))
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
