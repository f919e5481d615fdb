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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.client import Document
from engine.errors import Interrupted, SmartConnectorError
from engine.runner import Engine
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

    def add(self, outcome: Outcome) -> None:
        self.counted[outcome.status] += 1
        if outcome.status not in ("updated", "skipped"):
            self.outcomes.append(outcome)

    def counts(self) -> dict[str, int]:
        return {s: self.counted.get(s, 0) for s in STATUSES}

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]


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
    on_outcome: Callable[[Outcome], None] = lambda outcome: None,
    on_phase: Callable[[int, int, int], None] = lambda number, phases, total: None,
) -> RolloutReport:
    """Update ``integration_ids`` (default: every integration of the connector) to its version.

    Without ids or phases it pages through the connector's integrations, with at most
    ``concurrency`` documents in flight (and the page being read): memory stays flat
    however large the fleet. Phases need the whole list of ids first. ``on_phase`` hears
    of each phase as it starts (its number, how many there are, how many integrations in
    all); a rollout that pages through the fleet has none.
    """
    report = RolloutReport(connector.manifest.version)

    async def noted(target: str | Document) -> None:
        outcome = await _update_one(engine, connector, target)
        report.add(outcome)
        on_outcome(outcome)

    if integration_ids is None and phase_pct is None:
        await _pool(_listed(engine, connector), noted, concurrency)
    else:
        if integration_ids is None:
            integration_ids = [d["_id"] async for d in _listed(engine, connector)]
        await _run_phases(
            report,
            waves(integration_ids, phase_pct),
            noted,
            concurrency,
            engine,
            max_failures,
            on_phase,
        )
    report.interrupted = engine.stop.is_set()
    return report


async def _listed(engine: Engine, connector: Connector) -> AsyncIterator[Document]:
    async for page in engine.api.pages(
        "integrations", _connectorId=connector.manifest.connector_id
    ):
        for doc in page:
            yield doc


async def _pool(
    targets: AsyncIterator[Any], work: Callable[[Any], Awaitable[None]], concurrency: int
) -> None:
    """``work`` each target, ``concurrency`` at a time, taking the next only when one ends."""
    source = aiter(targets)
    lock = asyncio.Lock()

    async def worker() -> None:
        while True:
            async with lock:
                try:
                    target = await anext(source)
                except StopAsyncIteration:
                    return
            await work(target)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _update_one(engine: Engine, connector: Connector, target: str | Document) -> Outcome:
    """One integration (an id, or the document a listing gave) to the connector's version."""
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
        await engine.update(integration_id, connector, doc=doc)
    except Interrupted as exc:  # its progress is saved: the next rollout finishes it
        return Outcome(integration_id, "interrupted", str(exc))
    except SmartConnectorError as exc:
        return Outcome(integration_id, "failed", str(exc))
    return Outcome(integration_id, "updated")


async def _run_phases(
    report: RolloutReport,
    phases: list[list[str]],
    noted: Callable[[str], Awaitable[None]],
    concurrency: int,
    engine: Engine,
    max_failures: int | None,
    on_phase: Callable[[int, int, int], None],
) -> None:
    async def ids(wave: list[str]) -> AsyncIterator[str]:
        for integration_id in wave:
            yield integration_id

    for number, wave in enumerate(phases, 1):
        on_phase(number, len(phases), sum(len(w) for w in phases))
        await _pool(ids(wave), noted, concurrency)
        too_many = max_failures is not None and len(report.failed) > max_failures
        if (too_many or engine.stop.is_set()) and number < len(phases):
            report.stopped = (
                f"{len(report.failed)} failures, over the limit of {max_failures}"
                if too_many
                else "interrupted"
            ) + f", after phase {number} of {len(phases)}"
            for rest in phases[number:]:
                for integration_id in rest:
                    report.add(Outcome(integration_id, "not attempted", report.stopped))
            break
