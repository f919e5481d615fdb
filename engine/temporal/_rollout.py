"""A rollout as a Temporal workflow: it outlives the command that started it.

Its id comes from the connector and the version, so the same command run again attaches to
the running rollout, or reports the finished one. Phases and ``--max-failures`` are decided
inside it; each integration is a child :class:`IntegrationWorkflow` (whose id, one per
integration, keeps any other run off it meanwhile); ``progress`` can be queried at any time.

Without a list or phases it reads the connector's integrations a page at a time and hands
each child the document it listed, so an update makes 2 + k requests as locally; the next
page is read once every integration of this one has started, and a long rollout continues
as new between pages, so neither its memory nor its history grows with the fleet.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    import engine.telemetry as telemetry  # the worker's own, not a copy in the sandbox
    from engine.rollout import waves
    from engine.temporal._workflow import (
        API_RETRY,
        WORKFLOW_NAME,
        RunRequest,
        RunResult,
        run_failure,
    )

ROLLOUT_WORKFLOW = "smartconnector.rollout"
#: Integrations a page of the list holds: what the rollout keeps at most, besides the runs.
PAGE = 100


def rollout_id(connector_id: str, version: str) -> str:
    return f"smartconnector-rollout-{connector_id}-{version}"


@dataclass
class RolloutState:
    """Where a rollout is: counts by outcome, the failures, and why it stopped early."""

    version: str
    counts: dict[str, int] = field(default_factory=dict)
    failed: list[dict[str, str]] = field(default_factory=list)
    stopped: str | None = None
    done: bool = False


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


@workflow.defn(name=ROLLOUT_WORKFLOW)
class RolloutWorkflow:
    def __init__(self) -> None:
        self.state = RolloutState("")
        #: Integrations of the pages read that have not started yet.
        self.waiting = 0

    @workflow.query
    def progress(self) -> RolloutState:
        return self.state

    @workflow.run
    async def run(self, request: RolloutRequest) -> RolloutState:
        counts = {"updated": 0, "skipped": 0, "failed": 0}
        self.state = request.state or RolloutState(request.version, counts)
        if request.integration_ids is None and request.phase_pct is None:
            await self._paged(request)
        else:
            await self._phased(request)
        self.state.done = True
        self._report()
        return self.state

    async def _paged(self, request: RolloutRequest) -> None:
        """Every integration of the connector, a page at a time, ``concurrency`` at once."""
        gate = asyncio.Semaphore(request.concurrency)
        running: set[asyncio.Task[None]] = set()
        cursor = request.cursor
        while True:
            page: Page = await workflow.execute_activity(
                "smartconnector.page",
                PageRequest(request.connector_id, request.version, cursor),
                result_type=Page,
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=API_RETRY,
            )
            self.state.counts["skipped"] += page.skipped
            self._report()
            for doc in page.docs:
                task = asyncio.ensure_future(self._one(request, str(doc["_id"]), gate, doc))
                running.add(task)
                task.add_done_callback(running.discard)
            if page.next is None:
                break
            cursor = page.next
            await workflow.wait_condition(lambda: self.waiting == 0)
            if workflow.info().is_continue_as_new_suggested():
                await asyncio.gather(*running)
                workflow.continue_as_new(replace(request, cursor=cursor, state=self.state))
        await asyncio.gather(*running)

    async def _phased(self, request: RolloutRequest) -> None:
        """The listed integrations (or all), phase by phase, stopping when too many fail."""
        targets: Targets = await workflow.execute_activity(
            "smartconnector.targets",
            request,
            result_type=Targets,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=API_RETRY,
        )
        self.state.counts["skipped"] = targets.skipped
        for missing in targets.missing:
            self._failed(missing, "not found")
        phases = waves(targets.ids, request.phase_pct)
        gate = asyncio.Semaphore(request.concurrency)
        for number, wave in enumerate(phases, 1):
            await asyncio.gather(*(self._one(request, i, gate) for i in wave))
            failures = self.state.counts["failed"]
            limit = request.max_failures
            if limit is not None and failures > limit and number < len(phases):
                self.state.stopped = (
                    f"{failures} failures, over the limit of {limit},"
                    f" after phase {number} of {len(phases)}"
                )
                self.state.counts["not attempted"] = sum(len(w) for w in phases[number:])
                break

    async def _one(
        self,
        request: RolloutRequest,
        integration_id: str,
        gate: asyncio.Semaphore,
        doc: dict[str, Any] | None = None,
    ) -> None:
        self.waiting += 1
        async with gate:
            self.waiting -= 1
            run = RunRequest(
                "update",
                integration_id,
                request.connector_id,
                str(workflow.uuid4())[:16],
                request.lease_ttl,
                request.version,
                doc,
            )
            try:
                await workflow.execute_child_workflow(
                    WORKFLOW_NAME,
                    run,
                    id=f"smartconnector-{integration_id}",
                    result_type=RunResult,
                )
            except (ChildWorkflowError, WorkflowAlreadyStartedError) as exc:
                failure = run_failure(exc)
                reason = str(failure.get("message")) if failure else f"could not run: {exc}"
                self._failed(integration_id, reason)
                return
            self.state.counts["updated"] += 1
            self._report()

    def _failed(self, integration_id: str, reason: str) -> None:
        self.state.counts["failed"] = self.state.counts.get("failed", 0) + 1
        self.state.failed.append({"_id": integration_id, "reason": reason})
        self._report()

    def _report(self) -> None:
        """The counts, for the worker's ``/metrics`` (not again when a worker replays the
        history: what it shows then is what it showed)."""
        if not workflow.unsafe.is_replaying():
            telemetry.rollout_counts(workflow.info().workflow_id, self.state.counts)
