"""A rollout as a Temporal workflow: it outlives the command that started it.

Its id comes from the connector and the version, so the same command run again attaches to
the running rollout, or reports the finished one. Phases and ``--max-failures`` are decided
inside it; each integration is a child :class:`IntegrationWorkflow` (whose id, one per
integration, keeps any other run off it meanwhile); ``progress`` can be queried at any time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from engine.rollout import waves
    from engine.temporal._workflow import (
        API_RETRY,
        WORKFLOW_NAME,
        RunRequest,
        RunResult,
    )

ROLLOUT_WORKFLOW = "smartconnector.rollout"


def rollout_id(connector_id: str, version: str) -> str:
    return f"smartconnector-rollout-{connector_id}-{version}"


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


@dataclass
class Targets:
    """What the rollout has to do: the integrations to update, and how many are current."""

    ids: list[str] = field(default_factory=list)
    skipped: int = 0
    missing: list[str] = field(default_factory=list)


@dataclass
class RolloutState:
    """Where a rollout is: counts by outcome, the failures, and why it stopped early."""

    version: str
    counts: dict[str, int] = field(default_factory=dict)
    failed: list[dict[str, str]] = field(default_factory=list)
    stopped: str | None = None
    done: bool = False


@workflow.defn(name=ROLLOUT_WORKFLOW)
class RolloutWorkflow:
    def __init__(self) -> None:
        self.state = RolloutState("")

    @workflow.query
    def progress(self) -> RolloutState:
        return self.state

    @workflow.run
    async def run(self, request: RolloutRequest) -> RolloutState:
        self.state = RolloutState(request.version, {"updated": 0, "skipped": 0, "failed": 0})
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
        self.state.done = True
        return self.state

    async def _one(
        self, request: RolloutRequest, integration_id: str, gate: asyncio.Semaphore
    ) -> None:
        async with gate:
            run = RunRequest(
                "update",
                integration_id,
                request.connector_id,
                str(workflow.uuid4())[:16],
                request.lease_ttl,
                request.version,
            )
            try:
                result: RunResult = await workflow.execute_child_workflow(
                    WORKFLOW_NAME,
                    run,
                    id=f"smartconnector-{integration_id}",
                    result_type=RunResult,
                )
            except (ChildWorkflowError, WorkflowAlreadyStartedError) as exc:
                self._failed(integration_id, f"could not run: {exc}")
                return
            if result.error is not None:
                self._failed(integration_id, str(result.error.get("message")))
            else:
                self.state.counts["updated"] += 1

    def _failed(self, integration_id: str, reason: str) -> None:
        self.state.counts["failed"] = self.state.counts.get("failed", 0) + 1
        self.state.failed.append({"_id": integration_id, "reason": reason})
