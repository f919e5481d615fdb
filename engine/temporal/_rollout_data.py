"""What a rollout workflow takes, keeps and hands its activities (:mod:`._rollout`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.fleet.record import RolloutRecord, Wave, rollout_name

#: Integrations a page of the list holds: what the rollout keeps at most, besides the runs.
PAGE = 100
#: Updates one ``update_page`` activity does at most: a page costs Temporal a handful of
#: history events, where an update of its own (a child workflow) cost some 25.
PAGE_UPDATES = 10


def rollout_id(connector_id: str, version: str) -> str:
    return f"smartconnector-rollout-{rollout_name(connector_id, version)}"


@dataclass
class RolloutState:
    """Where a rollout is: counts by outcome, the failures, why it stopped early, and what
    an operator asked of it (``control``: run, pause or abort)."""

    version: str
    counts: dict[str, int] = field(default_factory=dict)
    failed: list[dict[str, str]] = field(default_factory=list)
    stopped: str | None = None
    done: bool = False
    rollout: str = ""
    connector: str = ""
    name: str = ""
    state: str = "running"
    control: str = "run"
    phase: int = 0
    phases: int = 1
    remaining: int = 0
    in_flight: int = 0
    waves: list[dict[str, int]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def aborted(self) -> bool:
        return self.state == "aborted"

    def record(self) -> RolloutRecord:
        """The record ``rollouts`` shows, as a local rollout keeps it."""
        record = RolloutRecord(
            self.rollout,
            self.connector,
            self.version,
            executor="temporal",
            name=self.name,
            state=self.state,
            control=self.control,
            phase=self.phase,
            phases=self.phases,
            updated=self.counts.get("updated", 0),
            skipped=self.counts.get("skipped", 0),
            remaining=self.remaining,
            inFlight=self.in_flight,
            waves=[Wave(**w) for w in self.waves],
            stopped=self.stopped,
            options=self.options,
        )
        for failure in self.failed:
            record.add_failure(failure["_id"], failure["reason"])
        return record


@dataclass
class RolloutRequest:
    connector_id: str
    version: str
    #: ``None``: every integration of the connector.
    integration_ids: list[str] | None = None
    concurrency: int = 10
    phase_pct: float | None = None
    max_failures: int | None = None
    lease_ttl: float = 30.0
    #: Where a rollout that continued as new goes on: the next page, and its state so far.
    cursor: str | None = None
    state: RolloutState | None = None
    pause: bool = False
    bake: float | None = None
    name: str = ""


@dataclass
class PageRequest:
    connector_id: str
    version: str
    cursor: str | None = None
    size: int = PAGE


@dataclass
class Page:
    """A page of the connector's integrations: the documents to update, how many are at
    the version already, and the cursor of the next page (``None`` after the last)."""

    docs: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    next: str | None = None


@dataclass
class Targets:
    """What the rollout has to do: the integrations to update, and how many are current."""

    ids: list[str] = field(default_factory=list)
    skipped: int = 0
    missing: list[str] = field(default_factory=list)


@dataclass
class UpdatePage:
    """Integrations one activity updates: listed documents (two requests each, as locally)
    or ids (each read first), ``concurrency`` at once, within ``share`` of the request rate
    the workers of the task queue keep to (the rollout's pages split it between them).
    ``offset``: how much of the time between two of its updates it waits before its first,
    so that pages started together do not start their first updates at once."""

    rollout: str
    connector_id: str
    version: str
    docs: list[dict[str, Any]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    concurrency: int = 1
    share: float = 1.0
    offset: float = 0.0
    lease_ttl: float = 30.0


@dataclass
class PageDone:
    """What a page did: the ids it updated (or found updated by an earlier try of it), those
    that failed and why, and what it did not start (paused or aborted meanwhile). Without
    ``left_*`` it is also the progress an activity's heartbeat carries, so a retried one
    skips what an earlier try finished."""

    updated: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    left_docs: list[dict[str, Any]] = field(default_factory=list)
    left_ids: list[str] = field(default_factory=list)

    def finished(self) -> set[str]:
        return {*self.updated, *(f["_id"] for f in self.failed)}


@dataclass
class LookPage:
    """Integrations a bake looks at again, for the version they should be at."""

    ids: list[str]
    version: str
    concurrency: int = 1
    share: float = 1.0


@dataclass
class Look:
    """An integration a bake looks at again, for the version it should be at."""

    integration_id: str
    version: str


def fresh_state(request: RolloutRequest) -> RolloutState:
    """The state a rollout starts from: nothing done yet."""
    options = {
        "pause": request.pause,
        "bake": request.bake,
        "maxFailures": request.max_failures,
        "concurrency": request.concurrency,
        "phase": request.phase_pct,
    }
    counts = {"updated": 0, "skipped": 0, "failed": 0}
    name = rollout_name(request.connector_id, request.version)
    return RolloutState(
        request.version,
        counts,
        rollout=name,
        connector=request.connector_id,
        name=request.name,
        options=options,
    )
