"""The Temporal workflow that drives one integration: deterministic, no I/O of its own.

It executes the same plan as the local engine (:func:`engine.plan.plan_run`), which the
``begin`` activity makes from the document: each function call is a ``call`` activity
followed by a ``record`` of its success, every other action one ``apply``. A function's
success is in the workflow history as soon as its activity completes, so a worker lost
after that point never makes the workflow call it again. Errors come back typed: the
activity raises an ``ApplicationError`` whose type is the engine's error class and whose
details are its facts, and the command raises that same class again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from engine.defaults import LEASE_TTL
    from engine.plan import Action

WORKFLOW_NAME = "smartconnector.integration"
#: Error classes an activity raises that retrying cannot fix (everything the engine raises).
FINAL = "final"
HEARTBEAT = timedelta(seconds=10)


@dataclass
class RunRequest:
    """What a command asks a workflow to do with one integration."""

    action: str  # an engine.plan.Intent: install | resume | uninstall | update
    integration_id: str
    connector_id: str
    run_id: str
    lease_ttl: float = LEASE_TTL
    version: str | None = None
    #: The document as the command last had it: the first activity need not read it.
    doc: dict[str, Any] | None = None


@dataclass
class Planned:
    """One action of the plan, with the activity options its step's policy asks for."""

    action: Action
    timeout: float
    retry_delay: float = 1.0


@dataclass
class Plan:
    integration_id: str
    actions: list[Planned] = field(default_factory=list)
    #: The document after the lease was taken; the workflow hands it from activity to
    #: activity, so none of them reads it again (N + 2 requests for an N-step install).
    doc: dict[str, Any] | None = None


@dataclass
class ActionRequest:
    run: RunRequest
    action: Action
    result: Any = None
    doc: dict[str, Any] | None = None


@dataclass
class Called:
    """What a ``call`` activity hands back: the function's result, and the document (the
    lease renewals made while it ran change it)."""

    result: Any
    doc: dict[str, Any] | None


@dataclass
class RunResult:
    """How the run ended: ``error`` is the engine's error as :func:`engine.errors.to_wire`
    made it, ``None`` when the run finished."""

    integration_id: str
    error: dict[str, Any] | None = None
    #: The document as the run left it (``None`` once it is deleted).
    doc: dict[str, Any] | None = None


API_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=10,
    non_retryable_error_types=[FINAL],
)


def _wire(exc: ActivityError) -> dict[str, Any]:
    cause = exc.cause
    if isinstance(cause, ApplicationError) and cause.type == FINAL and cause.details:
        return dict(cause.details[0])
    message = str(cause.message if isinstance(cause, ApplicationError) else cause or exc)
    return {"type": "StepFailed", "message": message, "context": {}, "facts": {}}


@workflow.defn(name=WORKFLOW_NAME)
class IntegrationWorkflow:
    @workflow.run
    async def run(self, request: RunRequest) -> RunResult:
        try:
            plan: Plan = await workflow.execute_activity(
                "smartconnector.begin",
                request,
                result_type=Plan,
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=API_RETRY,
            )
            doc = plan.doc
            for planned in plan.actions:
                doc = await self._do(request, planned, doc)
        except ActivityError as exc:
            return RunResult(request.integration_id, _wire(exc))
        return RunResult(request.integration_id, doc=doc)

    async def _do(
        self, request: RunRequest, planned: Planned, doc: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        action = planned.action
        if action.action != "call":
            return await self._write(
                "smartconnector.apply", ActionRequest(request, action, doc=doc)
            )
        called: Called = await workflow.execute_activity(
            "smartconnector.call",
            ActionRequest(request, action, doc=doc),
            result_type=Called,
            start_to_close_timeout=timedelta(seconds=planned.timeout),
            heartbeat_timeout=HEARTBEAT,
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=max(planned.retry_delay, 0.1)),
                maximum_attempts=0,  # a lost worker is always retried
                non_retryable_error_types=[FINAL],
            ),
        )
        return await self._write(
            "smartconnector.record", ActionRequest(request, action, called.result, called.doc)
        )

    async def _write(self, activity: str, request: ActionRequest) -> dict[str, Any] | None:
        """A write activity; it hands back the document as it left it."""
        doc: dict[str, Any] | None = await workflow.execute_activity(
            activity,
            request,
            result_type=dict,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=API_RETRY,
        )
        return doc
