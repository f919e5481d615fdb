"""The activities a worker runs for :class:`IntegrationWorkflow`, over the same engine pieces.

Each activity starts from the integration document (the truth) and acts under the run's
lease, owned by the workflow's run id rather than a process. ``run`` executes one slice of
the plan with :meth:`~engine.run.integration.IntegrationRun.execute`, as a local run does;
retried after a lost worker, it reads the document again and skips the calls it shows
done.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from engine import telemetry
from engine.client import ApiClient, Document
from engine.errors import BadInput, NotFound, SmartConnectorError, to_wire as error_to_wire
from engine.fleet.control import health_problem
from engine.fleet.record import RolloutRecord, RolloutRecords, now_iso
from engine.models import Integration, parse
from engine.run.documents import needs_update
from engine.run.functions.invoke import DEFAULT_TIMEOUT
from engine.run.functions.resolve import function_names, resolve_functions
from engine.run.integration import IntegrationRun
from engine.run.journal import Journal
from engine.run.machine import ModeMachine
from engine.run.plan import (
    Action,
    Call,
    Delete,
    Intent,
    Take,
    calls_function,
    from_wire,
    plan_run,
    taking,
    to_wire,
)
from engine.run.state_writer import open_writer
from engine.run.views import read_view
from engine.run.writer import DocumentWriter, Owner
from engine.temporal._rollout import Look, Page, PageRequest, RolloutRequest, Targets
from engine.temporal._workflow import (
    FINAL,
    Begun,
    Done,
    Held,
    RunRequest,
    Slice,
    SliceRequest,
    slices,
    wire,
)
from installers import Connector, find_installed
from installers.remote import ExtensionServer, with_remote

log = structlog.get_logger("smartconnector.worker")
HEARTBEAT_EVERY = 2.0
#: What a call activity may take beyond its function's own timeout (which ends it first).
CALL_MARGIN = 30.0


def owner_of(request: RunRequest) -> Owner:
    """Runs on Temporal hold the lease as their workflow run, not as a process."""
    return Owner(request.run_id, "temporal", 0)


def final(exc: SmartConnectorError) -> ApplicationError:
    """The engine's error, typed, for the workflow and the command to raise again."""
    return ApplicationError(exc.message, error_to_wire(exc), type=FINAL, non_retryable=True)


class Activities:
    """Activities bound to a worker's API client and the connectors it can run."""

    def __init__(
        self,
        api: ApiClient,
        connectors: dict[str, Connector],
        extension: ExtensionServer | None = None,
    ) -> None:
        self.api = api
        self.connectors = connectors
        self.extension = extension
        self.machine = ModeMachine()
        self.journal = Journal(Path(":memory:"))  # Temporal's history is the journal here

    def connector(self, connector_id: str, doc: Document | None = None) -> Connector:
        """The connector, with the functions it does not define resolved on the worker's
        extension server (if it has one)."""
        found = self.connectors.get(connector_id) or find_installed(connector_id)
        if found is None:
            raise final(
                BadInput(
                    f"this worker has no connector {connector_id}: start it with --connector DIR",
                    field="--connector",
                )
            )
        if self.extension is None:
            return found
        integration = Integration.model_validate(doc) if doc is not None else None
        return with_remote(found, self.extension, function_names(found, integration))

    async def writer(self, doc: Document, request: RunRequest) -> DocumentWriter:
        """The writer of the API's way, under the workflow run's lease."""
        way = await self.api.writes.of(self.api, request.integration_id)
        return open_writer(way, self.api, doc, owner_of(request), request.lease_ttl)

    @contextlib.asynccontextmanager
    async def run_for(
        self, request: RunRequest, doc: Document | None = None
    ) -> AsyncIterator[IntegrationRun]:
        """An :class:`IntegrationRun` over the document the workflow hands on (read afresh
        when it has none, or when this is a retry: an earlier try may have changed it),
        under the run's lease; the engine's errors leave it typed and final."""
        try:
            if doc is None or activity.info().attempt > 1:
                doc = await read_view(self.api, request.integration_id)
            writer = await self.writer(doc, request)
            run = IntegrationRun(
                writer=writer,
                connector=self.connector(request.connector_id, doc),
                api=self.api,
                journal=self.journal,
                machine=self.machine,
                stop=asyncio.Event(),
                observe=lambda *a: None,
            )
            yield run
        except SmartConnectorError as exc:
            raise final(exc) from None

    @activity.defn(name="smartconnector.begin")
    async def begin(self, request: RunRequest) -> Begun:
        """Check the worker can run the plan (every function resolves here), then do its
        first action, the :class:`~engine.run.plan.Take` of the lease, and cut the rest into
        slices."""
        async with self.run_for(request, request.doc) as run:
            integration = parse(Integration, run.doc, what=f"integration {run.writer.id}")
            local = self.connectors.get(request.connector_id) or run.connector
            await resolve_functions(local, self.extension, integration)
            actions = _plan(request, run)
            take = actions[:1] if actions and isinstance(actions[0], Take) else []
            await run.execute(take)
        rest = actions[len(take) :]
        return Begun(request.integration_id, [_slice(s, run.doc) for s in slices(rest)], run.doc)

    @activity.defn(name="smartconnector.targets")
    async def targets(self, request: RolloutRequest) -> Targets:
        """The integrations a rollout has to update; those already at the version count as
        skipped. Reads the list a page at a time and keeps only ids."""
        found = Targets()

        def sort(doc: Document) -> None:
            if needs_update(doc, request.version):
                found.ids.append(str(doc["_id"]))
            else:
                found.skipped += 1

        if request.integration_ids is None:
            pages = self.api.pages("integrations", _connectorId=request.connector_id)
            async for page in pages:
                for doc in page:
                    sort(doc)
            return found
        for integration_id in request.integration_ids:
            try:
                sort(await self.api.get("integrations", integration_id))
            except NotFound:
                found.missing.append(integration_id)
        return found

    @activity.defn(name="smartconnector.page")
    async def page(self, request: PageRequest) -> Page:
        """A page of the connector's integrations: those to update, and how many are not."""
        filters = {"_connectorId": request.connector_id, "limit": str(request.size)}
        if request.cursor is not None:
            filters = {}
        docs, cursor = await self.api.page("integrations", request.cursor, **filters)
        found = Page(next=cursor)
        for doc in docs:
            if needs_update(doc, request.version):
                found.docs.append(doc)
            else:
                found.skipped += 1
        return found

    @activity.defn(name="smartconnector.record")
    async def record(self, record: dict[str, Any]) -> None:
        """Write a rollout's record to the State API, where ``rollouts`` reads it."""
        found = RolloutRecord.from_json(record)
        if found is not None:
            found.heardAt = now_iso()
            await RolloutRecords(self.api).put(found)

    @activity.defn(name="smartconnector.look")
    async def look(self, look: Look) -> str:
        """What is wrong with an integration after a bake ("" when nothing is)."""
        try:
            doc = await read_view(self.api, look.integration_id)
        except SmartConnectorError as exc:
            return f"after the bake: {exc}"
        return health_problem(doc, look.version) or ""

    @activity.defn(name="smartconnector.run")
    async def run(self, request: SliceRequest) -> Done:
        """A slice of the plan, heartbeating (and renewing the lease) while its function
        runs; a failure is recorded in the document by the run itself, as locally."""
        actions = [from_wire(a) for a in request.actions]
        deletes = bool(actions) and isinstance(actions[-1], Delete)  # re-planning keeps it
        try:
            async with self.run_for(request.run, request.doc) as run:
                run.held = [(_call(h.action), h.result) for h in request.held]
                beat = asyncio.create_task(_heartbeat(run.writer))
                try:
                    with telemetry.in_flight():
                        await run.execute(actions)
                finally:
                    beat.cancel()
        except ApplicationError as exc:
            if deletes and _not_found(exc):
                return Done(None)  # deleted by an earlier try whose answer was lost
            raise
        log.info("slice done", integration_id=run.writer.id, actions=len(actions))
        if deletes:
            return Done(None)
        return Done(run.writer.doc, [Held(to_wire(a), raw) for a, raw in run.held])


def _plan(request: RunRequest, run: IntegrationRun) -> list[Action]:
    """The plan the command sent; one from a command that sent none is made here."""
    if request.actions is not None:
        return [from_wire(a) for a in request.actions]
    intent = Intent(request.action)
    return taking(plan_run(run.doc, run.connector.manifest, intent, request.version))


def _call(data: dict[str, Any]) -> Call:
    action = from_wire(data)
    assert isinstance(action, Call)
    return action


def _not_found(exc: ApplicationError) -> bool:
    return bool(exc.details) and exc.details[0].get("type") == NotFound.__name__


def _slice(actions: list[Action], doc: Document) -> Slice:
    """The slice with the activity options its functions' policies ask for."""
    policies = {
        s.get("name"): s.get("policy") or {}
        for s in doc.get("install") or []
        if isinstance(s, dict)
    }
    timeout, retry_delay = CALL_MARGIN, None
    for action in actions:
        if calls_function(action):
            policy = policies.get(getattr(action, "step", None)) or {}
            timeout += float(policy.get("timeout") or DEFAULT_TIMEOUT)
            retry_delay = retry_delay or float(policy.get("retryDelay") or 1.0)
    return Slice(wire(actions), timeout, retry_delay or 1.0)


async def _heartbeat(writer: DocumentWriter) -> None:
    """Tell Temporal this worker is alive, and keep the lease while the function runs."""
    while True:
        activity.heartbeat()
        if writer.quiet_for >= writer.ttl / 3:
            with contextlib.suppress(SmartConnectorError):
                await writer.write([])
        await asyncio.sleep(HEARTBEAT_EVERY)
