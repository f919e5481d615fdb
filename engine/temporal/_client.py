"""Running integrations on Temporal: the engine a command uses with ``--engine temporal``,
and the worker that runs their workflows."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
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
from engine.documents import check_installable, started_update_target
from engine.errors import BadInput, Interrupted, LeaseHeld, from_wire
from engine.models import Integration, parse
from engine.runner import Engine
from engine.temporal._activities import Activities, owner_of
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
)
from engine.writer import check_lease, read_view
from installers import Connector
from installers.remote import ExtensionServer

DEFAULT_TASK_QUEUE = "smartconnector"


def workflow_id(integration_id: str) -> str:
    """One workflow id per integration: Temporal itself refuses a second concurrent run."""
    return f"smartconnector-{integration_id}"


@dataclass
class TemporalEngine(Engine):
    """:class:`Engine` whose runs are Temporal workflows executed by ``smartconnector worker``.

    Validation happens here, before anything changes, exactly as with the local engine; the
    command then waits for the workflow and ends as the local engine would.
    """

    temporal: Client | None = None
    task_queue: str = DEFAULT_TASK_QUEUE
    _runs: dict[str, str] = field(default_factory=dict, init=False)

    async def install(
        self, connector: Connector, *, integration_id: str | None = None, atomic: bool = False
    ) -> Document:
        if atomic:
            raise BadInput("--atomic is not available with --engine temporal", field="--atomic")
        connector = await self._resolved(connector)
        request = self._request("install", integration_id or "", connector)
        if integration_id is None:
            doc = await self._create(connector, owner_of(request))
            request.integration_id = doc["_id"]
        else:
            doc = await read_view(self.api, integration_id)
            check_installable(doc)
            await self._validate(integration_id, connector, doc)
        request.doc = doc
        self.journal.remember_connector(request.integration_id, connector.directory)
        return await self._start(request)

    async def resume(
        self,
        integration_id: str,
        connector: Connector | None = None,
        *,
        input: dict[str, str] | None = None,
    ) -> Document:
        if input:
            raise BadInput(
                "answers to a waiting step cannot go through Temporal (its history keeps"
                " every argument): resume with --engine local",
                field="--input-file",
            )
        doc = await read_view(self.api, integration_id)
        connector = await self._validate(integration_id, connector, doc)
        request = self._request("resume", integration_id, connector)
        request.doc = doc
        if doc.get("updateInProgress"):
            request.version = started_update_target(doc, connector)
        return await self._start(request)

    async def uninstall(self, integration_id: str, connector: Connector | None = None) -> None:
        doc = await read_view(self.api, integration_id)
        connector = await self._validate(integration_id, connector, doc)
        request = self._request("uninstall", integration_id, connector)
        request.doc = doc
        await self._start(request)

    async def _update_to(
        self, integration_id: str, connector: Connector, doc: Document, target: str
    ) -> Document:
        await self._validate(integration_id, connector, doc)
        request = self._request("update", integration_id, connector)
        request.version = target
        request.doc = doc
        return await self._start(request)

    def _request(self, action: str, integration_id: str, connector: Connector) -> RunRequest:
        return RunRequest(
            action,
            integration_id,
            connector.manifest.connector_id,
            secrets.token_hex(8),
            self.lease_ttl,
            connector.manifest.version,
        )

    async def _validate(
        self, integration_id: str, connector: Connector | None, doc: Document | None = None
    ) -> Connector:
        """Everything the local engine checks before a run, so a refusal changes nothing."""
        doc = doc if doc is not None else await read_view(self.api, integration_id)
        connector = connector or self.find_connector(integration_id, doc)
        integration = parse(Integration, doc, what=f"integration {integration_id}")
        connector = await self.resolve(connector, integration)
        check_lease(doc, owner_of(self._request("check", integration_id, connector)))
        self.known[integration_id] = connector
        return connector

    async def _start(self, request: RunRequest) -> Document:
        assert self.temporal is not None, "TemporalEngine needs a connected Client"
        mode = (request.doc or {}).get("mode")
        try:
            with telemetry.integration_run(request.integration_id, mode):
                result: RunResult = await self.temporal.execute_workflow(
                    WORKFLOW_NAME,
                    request,
                    id=workflow_id(request.integration_id),
                    task_queue=self.task_queue,
                    result_type=RunResult,
                )
        except WorkflowAlreadyStartedError:
            raise LeaseHeld(
                f"integration {request.integration_id} is being run by Temporal workflow"
                f" {workflow_id(request.integration_id)}",
                integration_id=request.integration_id,
            ) from None
        except WorkflowFailureError as exc:
            failure = run_failure(exc)
            if failure is None:
                raise
            raise from_wire(failure) from None
        if request.action == "uninstall" or result.doc is None:
            return {"_id": request.integration_id}
        return result.doc


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
    engine: TemporalEngine,
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
    assert engine.temporal is not None, "TemporalEngine needs a connected Client"
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
    handle = await _started_or_attached(engine, engine.temporal, request)
    result = asyncio.ensure_future(handle.result())
    while not result.done():
        if engine.stop.is_set():
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
    engine: TemporalEngine, client: Client, request: RolloutRequest
) -> WorkflowHandle[Any, RolloutState]:
    """The rollout's workflow: started, the running one, or the finished one (unless it was
    aborted or stopped early: then a new run of it)."""
    workflow = rollout_id(request.connector_id, request.version)
    options: dict[str, Any] = {
        "id": workflow,
        "task_queue": engine.task_queue,
        "result_type": RolloutState,
    }
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
