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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

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
    """What happened to each integration, and why the rollout stopped early, if it did."""

    version: str
    outcomes: list[Outcome] = field(default_factory=list)
    stopped: str | None = None
    #: Ctrl-C stopped it (exit 130); running the same command again goes on.
    interrupted: bool = False

    def counts(self) -> dict[str, int]:
        counted = Counter(o.status for o in self.outcomes)
        return {s: counted.get(s, 0) for s in STATUSES}

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
) -> RolloutReport:
    """Update ``integration_ids`` (default: every integration of the connector) to its version."""
    version = connector.manifest.version
    report = RolloutReport(version)
    known: dict[str, Document] = {}
    if integration_ids is None:
        listed = await engine.api.list("integrations", _connectorId=connector.manifest.connector_id)
        known = {d["_id"]: d for d in listed}
        integration_ids = list(known)
    gate = asyncio.Semaphore(concurrency)

    async def one(integration_id: str) -> Outcome:
        async with gate:
            if engine.stop.is_set():
                return Outcome(integration_id, "interrupted", "not started: interrupted")
            try:
                doc = known.get(integration_id) or await engine.api.get(
                    "integrations", integration_id
                )
                if not engine.needs_update(doc, connector):
                    return Outcome(integration_id, "skipped", f"already at {version}")
                await engine.update(integration_id, connector, doc=doc)
            except Interrupted as exc:  # its progress is saved: the next rollout finishes it
                return Outcome(integration_id, "interrupted", str(exc))
            except SmartConnectorError as exc:
                return Outcome(integration_id, "failed", str(exc))
            return Outcome(integration_id, "updated")

    async def noted(integration_id: str) -> Outcome:
        outcome = await one(integration_id)
        on_outcome(outcome)
        return outcome

    phases = waves(integration_ids, phase_pct)
    await _run_phases(report, phases, noted, engine, max_failures)
    report.interrupted = engine.stop.is_set()
    return report


async def _run_phases(
    report: RolloutReport,
    phases: list[list[str]],
    noted: Callable[[str], Awaitable[Outcome]],
    engine: Engine,
    max_failures: int | None,
) -> None:
    for number, wave in enumerate(phases, 1):
        report.outcomes += await asyncio.gather(*(noted(i) for i in wave))
        too_many = max_failures is not None and len(report.failed) > max_failures
        if (too_many or engine.stop.is_set()) and number < len(phases):
            report.stopped = (
                f"{len(report.failed)} failures, over the limit of {max_failures}"
                if too_many
                else "interrupted"
            ) + f", after phase {number} of {len(phases)}"
            report.outcomes += [
                Outcome(i, "not attempted", report.stopped) for w in phases[number:] for i in w
            ]
            break
