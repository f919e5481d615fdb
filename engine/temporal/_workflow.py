"""The Temporal workflow that drives one integration: deterministic, no I/O of its own.

It executes the plan the command's engine made (:class:`engine.drivers.executors.Job`), with the
same :class:`~engine.run.integration.IntegrationRun` as a local run. The ``begin`` activity does its
first action, the :class:`~engine.run.plan.Take` of the lease (an update's flag and new steps
ride on that PATCH), and cuts the rest into slices (:func:`slices`), one ``run`` activity
each: a function call with the actions that follow it up to the next call, so a step costs
one activity and the PATCH that records it. A slice retried after a lost worker reads the
document again, and skips the calls it shows done. ``updateFunction``'s result travels in the
workflow to the update's last act, whose PATCH writes it (2 + k requests an update); a
function that fails before then has it written with its error record. Errors come
back typed: the activity raises an ``ApplicationError`` whose details are the engine's
error and its facts; a run that fails fails its workflow with the same (non-retryable), so
Temporal shows it as failed, and the command raises that same class again.
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
    from engine.run.plan import Action, calls_function, from_wire, to_wire

#: An action as it crosses into the workflow and back (:func:`engine.run.plan.to_wire`).
WireAction = dict[str, Any]

WORKFLOW_NAME = "smartconnector.integration"
#: Error classes an activity raises that retrying cannot fix (everything the engine raises).
FINAL = "final"
#: The type of the error a failed run fails its workflow with; its details are the engine's
#: error as :func:`engine.errors.to_wire` made it.
RUN_FAILED = "smartconnector.RunFailed"
HEARTBEAT = timedelta(seconds=10)


@dataclass
class RunRequest:
    """What a command asks a workflow to do with one integration."""

    action: str  # an engine.run.plan.Intent: install | resume | uninstall | update
    integration_id: str
    connector_id: str
    run_id: str
    lease_ttl: float = LEASE_TTL
    version: str | None = None
    #: The document as the command last had it: the first activity need not read it.
    doc: dict[str, Any] | None = None
    #: The plan the command's engine made (:func:`engine.run.plan.to_wire`), beginning with the
    #: :class:`~engine.run.plan.Take` of the lease; ``None`` from a command that sent none, for
    #: which ``begin`` plans from the document.
    actions: list[WireAction] | None = None


@dataclass
class Slice:
    """Actions one ``run`` activity does, with the options its calls' policies ask for."""

    actions: list[WireAction]
    timeout: float
    retry_delay: float = 1.0


@dataclass
class Begun:
    """What ``begin`` hands the workflow: the plan (:func:`engine.run.plan.plan_run`) cut into
    slices, under the lease it took."""

    integration_id: str
    slices: list[Slice] = field(default_factory=list)
    #: The document after the lease was taken; the workflow hands it from activity to
    #: activity, so none of them reads it again (N + 2 requests for an N-step install).
    doc: dict[str, Any] | None = None


@dataclass
class Held:
    """What ``updateFunction`` returned, not written yet."""

    action: WireAction
    result: Any


@dataclass
class SliceRequest:
    run: RunRequest
    actions: list[WireAction]
    doc: dict[str, Any] | None = None
    held: list[Held] = field(default_factory=list)


@dataclass
class Done:
    """What a ``run`` activity hands back: the document as it left it (``None`` once
    deleted), and what is held for the update's last act."""

    doc: dict[str, Any] | None
    held: list[Held] = field(default_factory=list)


@dataclass
class RunResult:
    """How a finished run left the integration (a failed one fails its workflow)."""

    integration_id: str
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


def slices(actions: list[Action]) -> list[list[Action]]:
    """The plan cut before each function call: a call and what follows it up to the next
    (the actions before the first call are a slice of their own)."""
    cut: list[list[Action]] = []
    for action in actions:
        if calls_function(action) or not cut:
            cut.append([])
        cut[-1].append(action)
    return cut


def wire(actions: list[Action]) -> list[WireAction]:
    return [to_wire(a) for a in actions]


@workflow.defn(name=WORKFLOW_NAME)
class IntegrationWorkflow:
    @workflow.run
    async def run(self, request: RunRequest) -> RunResult:
        try:
            plan: Begun = await workflow.execute_activity(
                "smartconnector.begin",
                request,
                result_type=Begun,
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=API_RETRY,
            )
            done = Done(plan.doc)
            for part in plan.slices:
                asked = SliceRequest(request, part.actions, done.doc, done.held)
                done = await self._run(asked, part)
        except ActivityError as exc:
            wire = _wire(exc)
            raise ApplicationError(
                str(wire.get("message")), wire, type=RUN_FAILED, non_retryable=True
            ) from None
        return RunResult(request.integration_id, doc=done.doc)

    async def _run(self, request: SliceRequest, part: Slice) -> Done:
        calls = any(calls_function(from_wire(a)) for a in part.actions)
        retry = API_RETRY
        if calls:
            retry = RetryPolicy(
                initial_interval=timedelta(seconds=max(part.retry_delay, 0.1)),
                maximum_attempts=0,  # a lost worker is always retried
                non_retryable_error_types=[FINAL],
            )
        done: Done = await workflow.execute_activity(
            "smartconnector.run",
            request,
            result_type=Done,
            start_to_close_timeout=timedelta(seconds=part.timeout),
            heartbeat_timeout=HEARTBEAT if calls else None,
            retry_policy=retry,
        )
        return done


def run_failure(exc: BaseException) -> dict[str, Any] | None:
    """The engine's error (as :func:`engine.errors.to_wire` made it) that failed a run's
    workflow, from the error that waiting for the workflow (or child) raised."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, ApplicationError) and cause.type == RUN_FAILED and cause.details:
        return dict(cause.details[0])
    return None
