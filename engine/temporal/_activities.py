"""The activities a worker runs for :class:`IntegrationWorkflow`, over the same engine pieces.

Each activity starts from the integration document (the truth) and acts under the run's
lease, owned by the workflow's run id rather than a process. ``call`` and ``record`` are
the local engine's :meth:`~engine.run.IntegrationRun.call` and ``record``; ``apply`` is
its :meth:`~engine.run.IntegrationRun.apply`, which does nothing when the document shows
the action done, so an activity retried after a lost worker does no harm.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from engine.client import ApiClient, Document
from engine.errors import BadInput, NotFound, SmartConnectorError, to_wire
from engine.functions import function_names, resolve_functions
from engine.invoke import DEFAULT_TIMEOUT
from engine.journal import Journal
from engine.machine import ModeMachine
from engine.models import Integration, Mode, parse
from engine.plan import Action, Intent, plan_run
from engine.run import IntegrationRun
from engine.run_state import RunState
from engine.temporal._rollout import RolloutRequest, Targets
from engine.temporal._workflow import FINAL, ActionRequest, Called, Plan, Planned, RunRequest
from engine.writer import DocumentWriter, Owner
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
    return ApplicationError(exc.message, to_wire(exc), type=FINAL, non_retryable=True)


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

    @contextlib.asynccontextmanager
    async def run_for(
        self, request: RunRequest, doc: Document | None = None
    ) -> AsyncIterator[IntegrationRun]:
        """An :class:`IntegrationRun` over the document the workflow hands on (read afresh
        when it has none, or when this is a retry: an earlier try may have changed it),
        under the run's lease; the engine's errors leave it typed and final."""
        try:
            if doc is None or activity.info().attempt > 1:
                doc = await self.api.get("integrations", request.integration_id)
            writer = DocumentWriter(self.api, doc, owner_of(request), request.lease_ttl)
            run = IntegrationRun(
                writer=writer,
                connector=self.connector(request.connector_id, doc),
                api=self.api,
                journal=self.journal,
                machine=self.machine,
                stop=asyncio.Event(),
                observe=lambda *a: None,
            )
            self.machine.add(run, Mode(doc.get("mode", "install")))
            try:
                yield run
            finally:
                self.machine.remove(run)
        except SmartConnectorError as exc:
            raise final(exc) from None

    @activity.defn(name="smartconnector.begin")
    async def begin(self, request: RunRequest) -> Plan:
        """Validate, take the lease, and plan what is left to do from the document."""
        try:
            doc = request.doc
            if doc is None or activity.info().attempt > 1:
                doc = await self.api.get("integrations", request.integration_id)
            integration = parse(Integration, doc, what=f"integration {request.integration_id}")
            local = self.connectors.get(request.connector_id) or self.connector(
                request.connector_id
            )
            connector = await resolve_functions(local, self.extension, integration)
            if RunState.of(doc).lease_owner != request.run_id:
                writer = DocumentWriter(self.api, doc, owner_of(request), request.lease_ttl)
                await writer.acquire()
                doc = writer.doc
        except SmartConnectorError as exc:
            raise final(exc) from None
        actions = plan_run(doc, connector.manifest, Intent(request.action), request.version)
        return Plan(request.integration_id, [_planned(a, doc) for a in actions], doc)

    @activity.defn(name="smartconnector.targets")
    async def targets(self, request: RolloutRequest) -> Targets:
        """The integrations a rollout has to update; those already at the version count as
        skipped. Reads the list a page at a time and keeps only ids."""
        found = Targets()
        version = request.version

        def sort(doc: Document) -> None:
            if doc.get("updateInProgress") is True or doc.get("version") != version:
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

    @activity.defn(name="smartconnector.call")
    async def call(self, request: ActionRequest) -> Called:
        """Run one connector function, heartbeating (and renewing the lease) meanwhile.

        A failure is recorded in the document by the run itself, as on the local engine."""
        async with self.run_for(request.run, request.doc) as run:
            beat = asyncio.create_task(_heartbeat(run.writer))
            try:
                raw = await run.call(request.action)
            finally:
                beat.cancel()
        log.info(
            "function succeeded", integration_id=run.writer.id, function=request.action.function
        )
        return Called(raw, run.writer.doc)

    @activity.defn(name="smartconnector.record")
    async def record(self, request: ActionRequest) -> Document:
        """Write a function's success to the document, as the local engine does."""
        async with self.run_for(request.run, request.doc) as run:
            await run.record(request.action, request.result)
        return run.writer.doc

    @activity.defn(name="smartconnector.apply")
    async def apply(self, request: ActionRequest) -> Document | None:
        """An action that calls no function; nothing when the document shows it done."""
        try:
            async with self.run_for(request.run, request.doc) as run:
                await run.apply(request.action)
        except ApplicationError as exc:
            if request.action.action == "delete" and _not_found(exc):
                return None  # deleted by an earlier try whose answer was lost
            raise
        return None if request.action.action == "delete" else run.writer.doc


def _not_found(exc: ApplicationError) -> bool:
    return bool(exc.details) and exc.details[0].get("type") == NotFound.__name__


def _planned(action: Action, doc: Document) -> Planned:
    """The action with the activity options its step's policy asks for."""
    step = next(
        (
            s
            for s in doc.get("install") or []
            if isinstance(s, dict) and s.get("name") == action.step
        ),
        None,
    )
    policy = (step or {}).get("policy") or {}
    timeout = float(policy.get("timeout") or DEFAULT_TIMEOUT)
    return Planned(action, timeout + CALL_MARGIN, float(policy.get("retryDelay") or 1.0))


async def _heartbeat(writer: DocumentWriter) -> None:
    """Tell Temporal this worker is alive, and keep the lease while the function runs."""
    while True:
        activity.heartbeat()
        if writer.quiet_for >= writer.ttl / 3:
            with contextlib.suppress(SmartConnectorError):
                await writer.write([])
        await asyncio.sleep(HEARTBEAT_EVERY)
