"""Rolling a connector version out to its install base, many integrations at once.

Integrations already at the version are skipped without a write, so a rollout that stopped
(failures over the limit, Ctrl-C, a crash) continues where it stopped when run again; one
whose update was interrupted is finished. All runs share one API client, so together they
stay under the platform's rate limit.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.client import Document
from engine.drivers.runner import Engine
from engine.errors import Interrupted, SmartConnectorError
from engine.fleet.control import RolloutController
from engine.fleet.record import RolloutRecord
from installers import Connector

Status = Literal["updated", "skipped", "failed", "interrupted", "not attempted"]
STATUSES: tuple[Status, ...] = ("updated", "skipped", "failed", "interrupted", "not attempted")


@dataclass(frozen=True)
class Outcome:
    integration_id: str
    status: Status
    reason: str | None = None


@dataclass
class RolloutReport:
    """How many integrations ended how, the ones that did not get the update, and why the
    rollout stopped early, if it did. Updated and skipped ones are only counted, so a
    report's size does not grow with the fleet."""

    version: str
    counted: Counter[str] = field(default_factory=Counter)
    #: Every outcome other than updated or skipped (failed, interrupted, not attempted).
    outcomes: list[Outcome] = field(default_factory=list)
    stopped: str | None = None
    #: Ctrl-C stopped it (exit 130); running the same command again goes on.
    interrupted: bool = False
    #: ``rollouts abort`` ended it (exit 1); running the same command again goes on.
    aborted: bool = False
    #: The id its record and ``rollouts`` know it by, when it keeps one.
    rollout_id: str | None = None

    def add(self, outcome: Outcome) -> None:
        self.counted[outcome.status] += 1
        if outcome.status not in ("updated", "skipped"):
            self.outcomes.append(outcome)

    def demote(self, integration_id: str, was: str, reason: str) -> None:
        """An integration counted ``was`` (updated or skipped) failed after all (a bake)."""
        self.counted[was] -= 1
        self.add(Outcome(integration_id, "failed", reason))

    def counts(self) -> dict[str, int]:
        return {s: self.counted.get(s, 0) for s in STATUSES}

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def failure_stop(failures: int, limit: int | None, number: int, phases: int) -> str | None:
    """Why a rollout stops after phase ``number`` of ``phases``: more ``failures`` than
    ``--max-failures`` allows. ``None``: it goes on (or that was its last phase). Both
    executors stop by this rule."""
    if limit is None or failures <= limit or number >= phases:
        return None
    return f"{failures} failures, over the limit of {limit}, after phase {number} of {phases}"


def waves(ids: list[str], phase_pct: float | None) -> list[list[str]]:
    """One pass, or successive phases of ``phase_pct`` percent of the integrations each."""
    if phase_pct is None or not ids:
        return [ids]
    size = max(1, math.ceil(len(ids) * phase_pct / 100))
    return [ids[i : i + size] for i in range(0, len(ids), size)]


async def rollout(
    engine: Engine,
    connector: Connector,
    integration_ids: list[str] | None = None,
    *,
    concurrency: int = 10,
    phase_pct: float | None = None,
    max_failures: int | None = None,
    pause: bool = False,
    bake: float | None = None,
    recorded: bool = False,
    on_outcome: Callable[[Outcome], None] = lambda outcome: None,
    on_phase: Callable[[int, int, int], None] = lambda number, phases, total: None,
    on_state: Callable[[RolloutRecord], None] = lambda record: None,
) -> RolloutReport:
    """Update ``integration_ids`` (default: every integration of the connector) to its version.

    Without ids, phases, ``pause`` or ``bake`` it pages through the fleet, ``concurrency``
    documents in flight: memory stays flat. ``recorded`` (implied by ``pause`` and ``bake``)
    keeps its record in the State API and obeys its operators (:mod:`engine.fleet.record`).
    ``pause`` holds after each phase until resumed; ``bake`` waits, then looks again. The
    ``on_`` callbacks hear each outcome, phase (number, phases, total) and change of state."""
    report = RolloutReport(connector.manifest.version)
    control = None
    if recorded or pause or bake is not None:
        asked = {"pause": pause, "bake": bake, "maxFailures": max_failures, "phase": phase_pct}
        control = await _controlled(
            engine, connector, asked | {"concurrency": concurrency}, on_state
        )
        report.rollout_id = control.record.id
    run = _Run(engine, connector, report, concurrency, max_failures, pause, bake, control)
    run.on_outcome, run.on_phase = on_outcome, on_phase
    await run.through(integration_ids, phase_pct)
    return report


async def _controlled(
    engine: Engine,
    connector: Connector,
    options: dict[str, Any],
    on_state: Callable[[RolloutRecord], None],
) -> RolloutController:
    """The rollout's record, taken up (refused, exit 4, while a live command runs it)."""
    manifest = connector.manifest
    return await RolloutController.open(
        engine.api,
        manifest.connector_id,
        manifest.version,
        options,
        engine.stop,
        manifest.name,
        on_state=on_state,
    )


def _final_state(report: RolloutReport) -> str:
    if report.aborted:
        return "aborted"
    return "failed" if report.failed or report.stopped else "done"


async def _listed(engine: Engine, connector: Connector) -> AsyncIterator[Document]:
    async for page in engine.api.pages(
        "integrations", _connectorId=connector.manifest.connector_id
    ):
        for doc in page:
            yield doc


async def _pool(
    targets: AsyncIterator[Any],
    work: Callable[[Any], Awaitable[None]],
    concurrency: int,
    going: Callable[[], bool] = lambda: True,
) -> None:
    """``work`` each target, ``concurrency`` at a time, taking the next only when one ends,
    and only while ``going``."""
    source = aiter(targets)
    lock = asyncio.Lock()

    async def worker() -> None:
        while True:
            async with lock:
                try:
                    target = await anext(source)
                except StopAsyncIteration:
                    return
            if not going():
                return
            await work(target)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _go() -> bool:
    return True


async def _update_one(
    engine: Engine,
    connector: Connector,
    target: str | Document,
    begin: Callable[[], Awaitable[bool]] = _go,
) -> Outcome:
    """One integration (an id, or the document a listing gave) to the connector's version;
    ``begin`` is asked just before the update starts (it waits while the rollout is paused;
    ``False``: aborted)."""
    integration_id = target if isinstance(target, str) else str(target["_id"])
    version = connector.manifest.version
    if engine.stop.is_set():
        return Outcome(integration_id, "interrupted", "not started: interrupted")
    try:
        doc = (
            target
            if not isinstance(target, str)
            else await engine.api.get("integrations", integration_id)
        )
        if not engine.needs_update(doc, connector):
            return Outcome(integration_id, "skipped", f"already at {version}")
        if not await begin():
            return Outcome(integration_id, "not attempted", "aborted")
        await engine.update(integration_id, connector, doc=doc)
    except Interrupted as exc:  # its progress is saved: the next rollout finishes it
        return Outcome(integration_id, "interrupted", str(exc))
    except SmartConnectorError as exc:
        return Outcome(integration_id, "failed", str(exc))
    return Outcome(integration_id, "updated")


@dataclass
class _Run:
    """One rollout: its updates, phase by phase, and what its record asks of it."""

    engine: Engine
    connector: Connector
    report: RolloutReport
    concurrency: int
    max_failures: int | None
    pause: bool
    bake: float | None
    control: RolloutController | None
    on_outcome: Callable[[Outcome], None] = lambda outcome: None
    on_phase: Callable[[int, int, int], None] = lambda number, phases, total: None

    def going(self) -> bool:
        """Whether to take another integration: not once aborted."""
        return self.control is None or not self.control.aborted

    async def one(self, target: str | Document, seen: dict[str, Status] | None = None) -> None:
        control = self.control
        began = False

        async def begin() -> bool:  # skipped ones never wait for a pause
            nonlocal began
            began = control is None or await control.proceed()
            if began and control is not None:
                control.started()
            return began

        outcome = await _update_one(self.engine, self.connector, target, begin)
        self.report.add(outcome)
        if seen is not None:
            seen[outcome.integration_id] = outcome.status
        if control is not None:
            control.finished(outcome.integration_id, outcome.status, outcome.reason, began)
        self.on_outcome(outcome)

    async def through(self, integration_ids: list[str] | None, phase_pct: float | None) -> None:
        """:meth:`every`, then the record's last write: the end, or after a plain Ctrl-C
        none (the next run takes the rollout up where it is)."""
        report, control = self.report, self.control
        try:
            await self.every(integration_ids, phase_pct)
        except SmartConnectorError as exc:  # the fleet could not be read: the record says why
            report.stopped = report.stopped or f"the fleet could not be read: {exc}"
            raise
        finally:
            report.interrupted = self.engine.stop.is_set()
            if control is not None and report.interrupted and not report.aborted:
                await control.leave()
            elif control is not None:
                await control.finish(_final_state(report), report.stopped)

    async def every(self, integration_ids: list[str] | None, phase_pct: float | None) -> None:
        """``integration_ids`` (default: the connector's), paged through unless in phases."""
        if integration_ids is None and phase_pct is None and not self.pause and self.bake is None:
            await self.paged()
            return
        if integration_ids is None:
            integration_ids = [d["_id"] async for d in _listed(self.engine, self.connector)]
        await self.phased(waves(integration_ids, phase_pct))

    async def paged(self) -> None:
        """Every integration of the connector, as the list is read."""
        await _pool(self._listed(), self.one, self.concurrency, self.going)
        if self.control is not None and self.control.aborted:
            self._aborted(None, [])

    async def _listed(self) -> AsyncIterator[Document]:
        async for doc in _listed(self.engine, self.connector):
            if self.control is not None:
                self.control.listed()
            yield doc

    async def phased(self, phases: list[list[str]]) -> None:
        if self.control is not None:
            self.control.plan(len(wave) for wave in phases)
        for number, wave in enumerate(phases, 1):
            self.on_phase(number, len(phases), sum(len(w) for w in phases))
            seen = await self._phase(number, wave)
            if self.control is not None and self.control.aborted:
                self._aborted(number, [i for i in wave if i not in seen], *phases[number:])
                return
            held = False
            if not self.engine.stop.is_set() and "updated" in seen.values():
                if self.pause and self.control is not None and number < len(phases):
                    self.control.take_hold()  # killed while baking: the next run holds
                    held = True
                await self._bake(seen)
                if self.control is not None and self.control.aborted:
                    self._aborted(number, *phases[number:])
                    return
            if self._stops_after(number, len(phases)):
                self._not_attempted(phases[number:])
                return
            if number < len(phases) and not await self._hold(seen, taken=held):
                self._aborted(number, *phases[number:])
                return

    async def _phase(self, number: int, wave: list[str]) -> dict[str, Status]:
        if self.control is not None:
            self.control.begin_phase(number)
        seen: dict[str, Status] = {}

        async def ids() -> AsyncIterator[str]:
            for integration_id in wave:
                yield integration_id

        await _pool(ids(), lambda i: self.one(i, seen), self.concurrency, self.going)
        return seen

    async def _bake(self, seen: dict[str, Status]) -> None:
        """Wait ``--bake`` seconds, then look again at the phase's integrations at the
        version: one that no longer is healthy counts as a failure."""
        if self.bake is None or self.control is None:
            return
        await self.control.bake(self.bake)
        if self.control.aborted or self.engine.stop.is_set():
            return
        current = [i for i, status in seen.items() if status in ("updated", "skipped")]
        version = self.connector.manifest.version
        for integration_id, problem in (
            await self.control.look(current, version, self.concurrency)
        ).items():
            was = seen[integration_id]
            self.report.demote(integration_id, was, problem)
            self.control.demoted(integration_id, was, problem)

    async def _hold(self, seen: dict[str, Status], *, taken: bool = False) -> bool:
        """With ``--pause``, after a phase that updated any: hold until resumed (``taken``:
        the hold began with the bake, and a resume meanwhile has released it)."""
        if not self.pause or self.control is None or "updated" not in seen.values():
            return True
        if self.engine.stop.is_set():
            return True
        if taken:
            return await self.control.proceed()
        return await self.control.hold()

    def _stops_after(self, number: int, phases: int) -> bool:
        stop = failure_stop(len(self.report.failed), self.max_failures, number, phases)
        if stop is None and self.engine.stop.is_set() and number < phases:
            stop = f"interrupted, after phase {number} of {phases}"
        if stop is None:
            return False
        self.report.stopped = stop
        return True

    def _aborted(self, number: int | None, *rest: list[str]) -> None:
        self.report.aborted = True
        where = f" in phase {number}" if number is not None else ""
        self.report.stopped = (
            f"aborted{where} by `smartconnector rollouts abort {self.report.rollout_id}`"
        )
        self._not_attempted(rest)

    def _not_attempted(self, rest: Iterable[list[str]]) -> None:
        assert self.report.stopped is not None
        for wave in rest:
            for integration_id in wave:
                self.report.add(Outcome(integration_id, "not attempted", self.report.stopped))
