"""Writing a run's progress to the integration, under a lease, in the way the API takes it.

A run changes its integration with JSON Patch operations over a *view*: the document with
the run's state in its ``smartconnector`` field (:mod:`engine.run.progress`). Where that state
lives, and how the operations reach the API, is the write way's (:mod:`engine.writes`):

- :class:`DocumentWriter` (``json-patch-test``): the state is in the document itself, so
  two engines on two machines see each other; the lease is taken with a compare-and-swap on
  ``lastModified`` and every later write tests that it is still ours.
- :class:`~engine.run.state_writer.StateWriter` (``replace-only``, ``put-only``): the API
  keeps no unknown field and takes no ``test``; the state is kept in the State API under
  the integration, the document gets ``replace`` operations (or a PUT of the whole of it),
  and the lease is claimed by writing it, waiting :data:`CLAIM_WAIT` and reading it back
  (a timed mutex: it holds while a rival's read and write of the claim land within that
  wait).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.client import ApiClient, Document
from engine.defaults import LEASE_TTL
from engine.errors import Conflict, LeaseHeld
from engine.run.progress import Op, RunState
from engine.writes import WriteWay

#: Seconds a claim of the lease waits before reading it back (the timed mutex's delay).
CLAIM_WAIT = 1.0


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(value: Any) -> datetime | None:
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
    expires = parse_iso(lease.get("expiresAt"))
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
