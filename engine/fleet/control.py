"""The local rollout's side of its record: it writes where it is, and obeys what it says.

A task syncs the record every :data:`POLL` seconds: it reads the rollout's control key (an
operator may have asked something new), then writes the record when anything changed, or
:data:`HEARTBEAT` seconds after its last write, so that others can tell it is alive. A change
of state (a phase begun, a hold, a bake) wakes it at once. So a pause or an abort is seen
within :data:`POLL` seconds and a request, and the record costs at most two reads and two
writes a second, however many integrations are being updated.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from engine.client import ApiClient, Document
from engine.errors import LeaseHeld, SmartConnectorError
from engine.fleet.record import (
    Request,
    RolloutRecord,
    RolloutRecords,
    Wave,
    carry_on,
    now_iso,
    rollout_name,
    take_up,
)
from engine.run.progress import Progress
from engine.run.views import read_view

log = structlog.get_logger("smartconnector.rollout")
#: Seconds between reads of the requests (what bounds how late a pause or an abort is seen).
POLL = 0.5
#: Seconds after which an unchanged record is written again, to show the rollout is alive.
HEARTBEAT = 5.0


def health_problem(doc: Document, version: str) -> str | None:
    """What is wrong with an integration a bake looks at again, or ``None``: it must still be
    at ``version``, with no update in progress and no recorded error."""
    progress = Progress(doc)
    if progress.version != version:
        return f"after the bake: at version {progress.version}, not {version}"
    if progress.update_in_progress:
        return "after the bake: an update is in progress"
    error = progress.run.error
    if error is not None:
        return f"after the bake: {error.get('message') or 'an error is recorded'}"
    return None


def _held_elsewhere(found: RolloutRecord | None) -> None:
    """Refuse (exit 4) when another live command runs this rollout."""
    if found is None or found.executor != "local" or found.ended or found.abandoned:
        return
    runner = found.runner or {}
    raise LeaseHeld(
        f"rollout {found.id} is being run by pid {runner.get('pid')} on {runner.get('host')}"
        f" (its record was written {found.silent_for() or 0:.0f} s ago); wait for it, or"
        f" `smartconnector rollouts abort {found.id}`"
    )


class RolloutController:
    """Keeps one local rollout's record, and tells it when to hold, go on or stop."""

    def __init__(self, api: ApiClient, record: RolloutRecord, stop: asyncio.Event) -> None:
        self.records = RolloutRecords(api)
        self.api = api
        self.record = record
        self.stop = stop
        self.baking = False
        self.final: str | None = None
        #: The command is stopping before the end (:meth:`leave`).
        self.leaving = False
        #: Told the record at each change of its state (running, paused, baking, an end).
        self.on_state: Callable[[RolloutRecord], None] = lambda record: None
        self._told: tuple[str, int] | None = None
        self._written: dict[str, Any] | None = None
        self._last_write = 0.0
        self._changed = asyncio.Event()
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        api: ApiClient,
        connector_id: str,
        version: str,
        options: dict[str, Any],
        stop: asyncio.Event,
        name: str = "",
        *,
        on_state: Callable[[RolloutRecord], None] | None = None,
    ) -> RolloutController:
        """Take up the rollout's record: a new one, or what a stopped run left. A hold stays
        (the rollout holds until resumed), and so does an abort (this run ends at once,
        aborted); an end is cleared: the rollout goes on. A request asked while no command
        ran it is taken up now."""
        rollout_id = rollout_name(connector_id, version)
        records = RolloutRecords(api)
        found = await records.stored(rollout_id)
        _held_elsewhere(found)
        request = await records.request(rollout_id)
        record = RolloutRecord(
            rollout_id,
            connector_id,
            version,
            name=name,
            options=options,
            runner={"host": socket.gethostname(), "pid": os.getpid()},
        )
        carry_on(record, found, request)
        if found is None and request is None:  # nobody can ask before the record exists
            await records.put_request(rollout_id, Request("run", ""))
            record.asked = ""
        controller = cls(api, record, stop)
        if on_state is not None:
            controller.on_state = on_state
        await controller.sync(write=True, adopt=False)
        controller._task = asyncio.create_task(controller._keep())
        return controller

    # -- what the rollout tells it ----------------------------------------------------------

    def plan(self, sizes: Iterable[int]) -> None:
        """The phases, by how many integrations each holds."""
        self.record.waves = [Wave(size) for size in sizes]
        self.record.phases = max(1, len(self.record.waves))
        self.record.remaining = sum(w.size for w in self.record.waves)
        self._kick.set()

    def listed(self) -> None:
        """One more integration found (a rollout that reads the list as it goes)."""
        if not self.record.waves:
            self.record.waves = [Wave()]
            self.record.phase = 1
        self.record.waves[0].size += 1
        self.record.remaining += 1

    def begin_phase(self, number: int) -> None:
        self.record.phase = number
        self._kick.set()

    def started(self) -> None:
        self.record.inFlight += 1

    def finished(self, integration_id: str, status: str, reason: str | None, began: bool) -> None:
        """One integration's outcome, in the phase the rollout is in (``began``: its update
        had started)."""
        record = self.record
        record.inFlight -= 1 if began else 0
        if record.inFlight == 0 and record.control == "pause":
            self._kick.set()  # paused now: say so at once
        wave = record.waves[record.phase - 1] if record.waves else None
        if status not in ("updated", "skipped", "failed"):
            return  # interrupted, or not attempted: still to do
        record.remaining -= 1
        if wave is not None:
            setattr(wave, status, getattr(wave, status) + 1)
        if status == "failed":
            record.add_failure(integration_id, reason or "failed")
        else:
            setattr(record, status, getattr(record, status) + 1)

    def demoted(self, integration_id: str, was: str, reason: str) -> None:
        """An integration updated (or skipped) in this phase failed the look after the bake."""
        record = self.record
        setattr(record, was, getattr(record, was) - 1)
        if record.waves:
            wave = record.waves[record.phase - 1]
            setattr(wave, was, getattr(wave, was) - 1)
            wave.failed += 1
        record.add_failure(integration_id, reason)

    @property
    def aborted(self) -> bool:
        return self.record.control == "abort"

    async def proceed(self) -> bool:
        """Before an update starts: wait while paused; ``False`` once aborted."""
        while self.record.control == "pause" and not self.stop.is_set():
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), POLL)
        return self.record.control != "abort"

    async def hold(self) -> bool:
        """Hold after a phase (``--pause``) until resumed; ``False`` once aborted. A pause
        an operator asked is this hold too: one resume goes on."""
        self.take_hold()
        return await self.proceed()

    def take_hold(self) -> None:
        """The next hold begins now (before a phase's bake, say), recorded at once: a
        command killed before it holds leaves the rollout holding for the next run."""
        if self.record.control not in ("pause", "abort"):
            self.record.control = "pause"
            self.record.hold += 1
        self._kick.set()

    async def bake(self, seconds: float) -> None:
        """Wait ``seconds`` (or until aborted) with the record saying it bakes."""
        self.baking = True
        self._kick.set()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.aborted and not self.stop.is_set():
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(POLL, deadline - time.monotonic()))
        self.baking = False
        self._kick.set()

    async def look(self, ids: list[str], version: str, concurrency: int) -> dict[str, str]:
        """Each integration of ``ids`` that is no longer healthy, with what is wrong."""
        gate = asyncio.Semaphore(concurrency)

        async def problem(integration_id: str) -> str | None:
            async with gate:
                try:
                    return health_problem(await read_view(self.api, integration_id), version)
                except SmartConnectorError as exc:
                    return f"after the bake: {exc}"

        found = await asyncio.gather(*(problem(i) for i in ids))
        return {i: p for i, p in zip(ids, found, strict=True) if p is not None}

    async def finish(self, state: str, stopped: str | None) -> None:
        """The rollout ended as ``state``: write it, and stop keeping the record."""
        self.final = state
        self.record.stopped = stopped
        await self._write_last()

    async def leave(self) -> None:
        """The command stops before the rollout ends (Ctrl-C): the record says where it is
        and that no command runs it, so its holds, pauses and abort stay for the next run."""
        self.leaving = True
        self.record.runner = None
        await self._write_last()

    async def _write_last(self) -> None:
        self.record.inFlight = 0
        if self._task is not None:  # its write in flight lands first, not after the last
            self._kick.set()
            await asyncio.wait({self._task})
        self._told = None  # told again: an end, or that no command runs it now
        await self.sync(write=True, adopt=False)

    # -- the record ---------------------------------------------------------------------------

    def _state(self) -> str:
        if self.final is not None:
            return self.final
        if self.baking:
            return "baking"
        if self.record.control == "pause" and self.record.inFlight == 0:
            return "paused"
        return "running"

    async def _keep(self) -> None:
        """Sync every :data:`POLL` seconds, or when kicked, until the last write."""
        while not self._over:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), POLL)
            self._kick.clear()
            if not self._over:
                await self.sync()

    @property
    def _over(self) -> bool:
        """Whether this command's last write of the record is under way (an end, or
        :meth:`leave`): nothing is taken up or synced after it."""
        return self.final is not None or self.leaving

    async def sync(self, *, write: bool = False, adopt: bool = True) -> None:
        """Read what an operator asked, then write the record if it changed (or is due)."""
        try:
            if adopt:
                self._obey(await self.records.request(self.record.id))
            self.record.state = self._state()
            if (self.record.state, self.record.phase) != self._told:
                self._told = (self.record.state, self.record.phase)
                self._tell()
            body = {**self.record.to_json(), "heardAt": None}
            due = time.monotonic() - self._last_write >= HEARTBEAT
            if write or due or body != self._written:
                self.record.heardAt = now_iso()
                await self.records.put(self.record)
                self._written, self._last_write = body, time.monotonic()
        except SmartConnectorError as exc:  # the next sync tries again; the updates go on
            log.warning("rollout record not kept", rollout=self.record.id, error=str(exc))

    def _tell(self) -> None:
        """``on_state``, which must not stop the record being kept (its heartbeat is what
        tells others a command runs the rollout)."""
        try:
            self.on_state(self.record)
        except Exception as exc:
            log.warning("rollout state not shown", rollout=self.record.id, error=repr(exc))

    def _obey(self, request: Request | None) -> None:
        """Take up an operator's request the rollout has not taken up yet (:func:`take_up`)."""
        if request is None or request.asked == self.record.asked or self._over:
            return
        if not take_up(self.record, request):
            return
        log.info("rollout control", rollout=self.record.id, control=request.control)
        self._changed.set()
        self._changed = asyncio.Event()
