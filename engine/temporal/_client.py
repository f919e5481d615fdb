"""Running integrations on Temporal: the executor a command's engine uses with
``--engine temporal``, and the worker that runs their workflows."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.runtime import Runtime
from temporalio.worker import Worker

from engine import telemetry
from engine.client import ApiClient, Document
from engine.defaults import API_RATE
from engine.drivers.executors import Host, Job
from engine.drivers.runner import Engine
from engine.errors import BadInput, Interrupted, LeaseHeld, from_wire
from engine.run.writer import Owner
from engine.temporal._activities import Activities
from engine.temporal._rollout import (
    ROLLOUT_WORKFLOW,
    RolloutRequest,
    RolloutState,
    RolloutWorkflow,
    rollout_id,
)
from engine.temporal._rollout_pages import PageActivities
from engine.temporal._workflow import (
    WORKFLOW_NAME,
    IntegrationWorkflow,
    RunRequest,
    RunResult,
    run_failure,
    wire,
)
from installers import Connector
from installers.remote import ExtensionServer

DEFAULT_TASK_QUEUE = "smartconnector"


def workflow_id(integration_id: str) -> str:
    """One workflow id per integration: Temporal itself refuses a second concurrent run."""
    return f"smartconnector-{integration_id}"


class TemporalExecutor:
    """Runs each plan as a Temporal workflow, executed by ``smartconnector worker``: the
    command starts it, waits for it, and ends as a local run would. Temporal itself refuses
    a second run of one integration (one workflow id each)."""

    def __init__(self, client: Client, task_queue: str = DEFAULT_TASK_QUEUE) -> None:
        self.client = client
        self.task_queue = task_queue

    def owner(self, integration_id: str | None) -> Owner:
        """Runs on Temporal hold the lease as their workflow run, not as a process."""
        return Owner(secrets.token_hex(8), "temporal", 0)

    def refuse(self, answers: dict[str, str] | None) -> None:
        if answers:
            raise BadInput(
                "answers to a waiting step cannot go through Temporal (its history keeps"
                " every argument): resume with --engine local",
                field="--input-file",
            )

    async def execute(self, engine: Host, job: Job) -> Document:
        request = RunRequest(
            job.intent,
            job.integration_id,
            job.connector.manifest.connector_id,
            job.owner.run_id,
            engine.lease_ttl,
            job.version,
            doc=job.doc,
            actions=wire(job.actions),
        )
        try:
            with telemetry.integration_run(job.integration_id, job.doc.get("mode")):
                result: RunResult = await self.client.execute_workflow(
                    WORKFLOW_NAME,
                    request,
                    id=workflow_id(job.integration_id),
                    task_queue=self.task_queue,
                    result_type=RunResult,
                )
        except WorkflowAlreadyStartedError:
            raise LeaseHeld(
                f"integration {job.integration_id} is being run by Temporal workflow"
                f" {workflow_id(job.integration_id)}",
                integration_id=job.integration_id,
            ) from None
        except WorkflowFailureError as exc:
            failure = run_failure(exc)
            if failure is None:
                raise
            raise from_wire(failure) from None
        return result.doc if result.doc is not None else {"_id": job.integration_id}


def temporal_of(engine: Engine) -> TemporalExecutor:
    """The engine's Temporal executor (``--engine temporal``)."""
    assert isinstance(engine.executor, TemporalExecutor), "--engine temporal makes one"
    return engine.executor


#: Requests an activity makes: at most one write (the workflow hands the document on, so no
#: activity reads it), and a call's slice none while its function runs but lease renewals
#: and what the function asks of the API itself.
REQUESTS_PER_ACTIVITY = 1
#: The share of the token's rate the workers take; the rest is for commands and renewals.
WORKER_SHARE = 0.9
#: The longest a worker holds an activity's heartbeat before sending it.
HEARTBEAT_THROTTLE = timedelta(seconds=1)


def activities_per_second(api_rate: float) -> float:
    """The task queue's activity rate that keeps its workers under ``api_rate`` requests/s."""
    return api_rate * WORKER_SHARE / REQUESTS_PER_ACTIVITY


async def connect(address: str, runtime: Runtime | None = None) -> Client:
    """A Temporal client (carrying the trace, when tracing); an unreachable server is exit
    5, like an unreachable API. ``runtime``: Temporal's own, if not its default."""
    from engine.errors import ApiUnavailable

    try:
        return await Client.connect(
            address, interceptors=telemetry.temporal_interceptors(), runtime=runtime
        )
    except Exception as exc:
        raise ApiUnavailable(f"cannot reach Temporal at {address}: {exc}") from None


async def run_worker(
    api: ApiClient,
    client: Client,
    task_queue: str,
    connectors: dict[str, Connector],
    extension: ExtensionServer | None = None,
    *,
    api_rate: float = API_RATE,
) -> None:
    """Run workflows and activities from ``task_queue`` until cancelled.

    The task queue's activity rate is what keeps every worker of the queue together under
    the token's rate: Temporal's server enforces it across all of them, sized from the
    requests an activity makes. A rollout's update pages make many requests each: the
    rollout splits the same rate between its pages, and each keeps to its part.
    """
    activities = Activities(api, connectors, extension)
    pages = PageActivities(api, connectors, extension, api_rate * WORKER_SHARE)
    worker = Worker(
        client,
        task_queue=task_queue,
        max_task_queue_activities_per_second=activities_per_second(api_rate),
        # a rollout's page hears of a pause or an abort at its next heartbeat sent
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        workflows=[IntegrationWorkflow, RolloutWorkflow],
        activities=[
            activities.targets,
            activities.page,
            activities.begin,
            activities.run,
            activities.record,
            activities.look,
            pages.update_page,
            pages.look_page,
        ],
    )
    await worker.run()


#: How often an attached command asks a rollout for its progress.
PROGRESS_EVERY = 0.5


async def rollout_on_temporal(
    engine: Engine,
    connector: Connector,
    integration_ids: list[str] | None,
    *,
    concurrency: int,
    phase_pct: float | None,
    max_failures: int | None,
    pause: bool = False,
    bake: float | None = None,
    on_progress: Callable[[RolloutState], None] = lambda state: None,
) -> RolloutState:
    """Start the connector's rollout to its version on Temporal, or attach to it (running or
    finished), following its progress until it ends. One that was aborted, or stopped by its
    failures, starts again and goes on where it stopped. Ctrl-C stops following, not the
    rollout."""
    temporal = temporal_of(engine)
    manifest = connector.manifest
    await engine.resolve(connector)  # every function the workers will call must exist
    options: dict[str, Any] = {"concurrency": concurrency, "phase_pct": phase_pct}
    options |= {"max_failures": max_failures, "pause": pause, "bake": bake}
    request = RolloutRequest(
        manifest.connector_id,
        manifest.version,
        integration_ids,
        lease_ttl=engine.lease_ttl,
        name=manifest.name,
        **options,
    )
    handle = await _started_or_attached(temporal, request)
    return await _followed(handle, engine.stop, on_progress)


async def _followed(
    handle: WorkflowHandle[Any, RolloutState],
    stop: asyncio.Event,
    on_progress: Callable[[RolloutState], None],
) -> RolloutState:
    """The rollout's end, telling ``on_progress`` how it goes meanwhile; ``stop`` (Ctrl-C)
    stops following, not the rollout."""
    result = asyncio.ensure_future(handle.result())
    while not result.done():
        if stop.is_set():
            result.cancel()
            raise Interrupted(
                f"stopped following rollout {handle.id}; it goes on in Temporal: run the same"
                " command again to attach"
            )
        with contextlib.suppress(Exception):  # not started yet: no answer to the query
            on_progress(await handle.query(RolloutWorkflow.progress))
        await asyncio.wait({result}, timeout=PROGRESS_EVERY)
    state: RolloutState = result.result()
    on_progress(state)
    return state


async def _started_or_attached(
    temporal: TemporalExecutor, request: RolloutRequest
) -> WorkflowHandle[Any, RolloutState]:
    """The rollout's workflow: started, the running one, or the finished one (unless it was
    aborted or stopped early: then a new run of it)."""
    workflow = rollout_id(request.connector_id, request.version)
    options: dict[str, Any] = {
        "id": workflow,
        "task_queue": temporal.task_queue,
        "result_type": RolloutState,
    }
    client = temporal.client
    try:
        return await client.start_workflow(
            ROLLOUT_WORKFLOW,
            request,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            **options,
        )
    except WorkflowAlreadyStartedError:  # running, or finished: attach and report
        handle = client.get_workflow_handle(workflow, result_type=RolloutState)
    if (await handle.describe()).status != WorkflowExecutionStatus.COMPLETED:
        return handle
    ended = await handle.result()
    if not (ended.aborted or ended.stopped):
        return handle
    return await client.start_workflow(
        ROLLOUT_WORKFLOW,
        request,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        **options,
    )
