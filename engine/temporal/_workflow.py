"""The Temporal workflow that drives one integration: deterministic, no I/O of its own.

The plan comes from the ``begin`` activity (it reads the document); each connector
function is one ``call`` activity and each write one ``record`` or ``transition`` activity.
A function's success is in the workflow history as soon as its activity completes, so a
worker lost after that point never makes the workflow call it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

WORKFLOW_NAME = "smartconnector.integration"
#: Failure types a ``call`` activity raises that retrying cannot fix.
FINAL_FAILURES = [
    "StepFailed",
    "UserActionRequired",
    "AuthenticationFailed",
    "BadInput",
    "LeaseHeld",
]
HEARTBEAT = timedelta(seconds=10)


@dataclass
class RunRequest:
    """What a command asks a workflow to do with one integration."""

    action: str  # install | resume | uninstall | update
    integration_id: str
    connector_id: str
    run_id: str
    lease_ttl: float = 30.0
    version: str | None = None


@dataclass
class PlanItem:
    """One thing to do: call a function (``call``) or change the mode/flags (``transition``)."""

    kind: str
    name: str  # function name, or transition name
    step: str | None = None
    phase: str = "install"
    done_marker: str | None = None  # connector-level function kind, e.g. installerFunction
    completed: bool = True  # what the step becomes once its function succeeded
    timeout: float = 300.0
    retries: int = 0
    retry_delay: float = 1.0


@dataclass
class Plan:
    integration_id: str
    items: list[PlanItem] = field(default_factory=list)


@dataclass
class CallRequest:
    run: RunRequest
    item: PlanItem


@dataclass
class RecordRequest:
    run: RunRequest
    item: PlanItem
    result: Any = None


@dataclass
class StopRequest:
    run: RunRequest
    item: PlanItem
    status: str  # error | waiting
    message: str
    url: str | None = None


@dataclass
class RunResult:
    """How the run ended, as the CLI reports it (exit code and message)."""

    integration_id: str
    exit_code: int = 0
    message: str = ""
    url: str | None = None
    failure: str | None = None


API_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=10,
    non_retryable_error_types=FINAL_FAILURES,
)


@workflow.defn(name=WORKFLOW_NAME)
class IntegrationWorkflow:
    @workflow.run
    async def run(self, request: RunRequest) -> RunResult:
        plan: Plan = await workflow.execute_activity(
            "smartconnector.begin",
            request,
            result_type=Plan,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=API_RETRY,
        )
        for item in plan.items:
            if item.kind == "transition":
                await workflow.execute_activity(
                    "smartconnector.transition",
                    RecordRequest(request, item),
                    start_to_close_timeout=timedelta(minutes=2),
                    retry_policy=API_RETRY,
                )
                continue
            try:
                result = await workflow.execute_activity(
                    "smartconnector.call",
                    CallRequest(request, item),
                    start_to_close_timeout=timedelta(seconds=item.timeout),
                    heartbeat_timeout=HEARTBEAT,
                    retry_policy=RetryPolicy(
                        initial_interval=timedelta(seconds=max(item.retry_delay, 0.1)),
                        maximum_attempts=0,  # a lost worker is always retried
                        non_retryable_error_types=FINAL_FAILURES,
                    ),
                )
            except ActivityError as exc:
                return await self._stopped(request, item, exc)
            await workflow.execute_activity(
                "smartconnector.record",
                RecordRequest(request, item, result),
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=API_RETRY,
            )
        return RunResult(request.integration_id)

    async def _stopped(self, request: RunRequest, item: PlanItem, exc: ActivityError) -> RunResult:
        cause = exc.cause
        kind = cause.type if isinstance(cause, ApplicationError) else "StepFailed"
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or exc)
        details = list(cause.details) if isinstance(cause, ApplicationError) else []
        url = details[0] if kind == "UserActionRequired" and details else None
        status = "waiting" if kind == "UserActionRequired" else "error"
        await workflow.execute_activity(
            "smartconnector.stop",
            StopRequest(request, item, status, message, url),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=API_RETRY,
        )
        codes = {"UserActionRequired": 7, "AuthenticationFailed": 3, "BadInput": 2, "LeaseHeld": 4}
        return RunResult(request.integration_id, codes.get(kind or "", 1), message, url, kind)
