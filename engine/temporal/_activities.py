"""The activities a worker runs for :class:`IntegrationWorkflow`, over the same engine pieces.

Each activity starts from the integration document (the truth) and acts under the run's
lease, owned by the workflow's run id rather than a process. Writes are idempotent, so an
activity retried after a lost worker does no harm.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from engine.client import ApiClient, Document
from engine.documents import new_steps
from engine.errors import (
    AuthenticationFailed,
    BadInput,
    LeaseHeld,
    NotFound,
    PermissionDenied,
    SmartConnectorError,
)
from engine.functions import function_names, resolve_functions
from engine.invoke import invoke, normalise
from engine.journal import Journal
from engine.machine import Mode, ModeMachine, Trigger
from engine.models import Integration, StepPolicy, parse
from engine.run import IntegrationRun, idempotency_key
from engine.temporal._workflow import (
    CallRequest,
    Plan,
    PlanItem,
    RecordRequest,
    RunRequest,
    StopRequest,
)
from engine.writer import RUN_FIELD, DocumentWriter, Owner, pointer, run_state
from installers import Connector, RetryableError, UserActionRequired, find_installed
from installers.remote import ExtensionServer, with_remote

log = structlog.get_logger("smartconnector.worker")
HEARTBEAT_EVERY = 2.0


def owner_of(request: RunRequest) -> Owner:
    """Runs on Temporal hold the lease as their workflow run, not as a process."""
    return Owner(request.run_id, "temporal", 0)


def final(message: str, kind: str, *details: Any) -> ApplicationError:
    return ApplicationError(message, *details, type=kind, non_retryable=True)


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
        self.journal = Journal(_memory())  # Temporal's history is the journal here

    def connector(self, connector_id: str, doc: Document | None = None) -> Connector:
        """The connector, with the functions it does not define resolved on the worker's
        extension server (if it has one)."""
        found = self.connectors.get(connector_id) or find_installed(connector_id)
        if found is None:
            raise final(
                f"this worker has no connector {connector_id}: start it with --connector DIR",
                "BadInput",
            )
        if self.extension is None:
            return found
        integration = Integration.model_validate(doc) if doc is not None else None
        return with_remote(found, self.extension, function_names(found, integration))

    @contextlib.asynccontextmanager
    async def run_for(
        self,
        request: RunRequest,
        doc: Document | None = None,
    ) -> AsyncIterator[IntegrationRun]:
        """An :class:`IntegrationRun` over the current document, under the run's lease."""
        doc = doc if doc is not None else await self.api.get("integrations", request.integration_id)
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
        except LeaseHeld as exc:
            raise final(str(exc), "LeaseHeld") from None
        finally:
            self.machine.remove(run)

    @activity.defn(name="smartconnector.begin")
    async def begin(self, request: RunRequest) -> Plan:
        """Validate, take the lease, and plan what is left to do from the document."""
        try:
            doc = await self.api.get("integrations", request.integration_id)
            integration = parse(Integration, doc, what=f"integration {request.integration_id}")
            local = self.connectors.get(request.connector_id) or self.connector(
                request.connector_id
            )
            connector = await resolve_functions(local, self.extension, integration)
            if run_state(doc).get("lease", {}).get("owner") != request.run_id:
                writer = DocumentWriter(self.api, doc, owner_of(request), request.lease_ttl)
                await writer.acquire()
                doc = writer.doc
        except (BadInput, LeaseHeld) as exc:
            raise final(
                str(exc), type(exc).__name__ if isinstance(exc, LeaseHeld) else "BadInput"
            ) from None
        return Plan(request.integration_id, plan_items(request, doc, connector))

    @activity.defn(name="smartconnector.call")
    async def call(self, request: CallRequest) -> Any:
        """Run one connector function, heartbeating (and renewing the lease) meanwhile."""
        item = request.item
        async with self.run_for(request.run) as run:
            step = next((s for s in run.integration().install if s.name == item.step), None)
            registered = run.connector.registry.get(item.name)
            if registered is None:
                raise final(f"function {item.name!r} is not defined", "BadInput")
            key = idempotency_key(run.writer.id, item.phase, item.name, item.step)
            ctx = run.context(item.name, step, key)
            beat = asyncio.create_task(_heartbeat(run.writer))
            try:
                raw = await invoke(registered, ctx, StepPolicy(timeout=item.timeout))
                normalise(raw, item.name)
            except UserActionRequired as exc:
                raise final(exc.message, "UserActionRequired", exc.url) from None
            except RetryableError as exc:
                if activity.info().attempt <= item.retries:
                    raise ApplicationError(str(exc), type="RetryableError") from None
                raise final(_failed(item, exc), "StepFailed") from None
            except (AuthenticationFailed, PermissionDenied) as exc:
                raise final(str(exc), "AuthenticationFailed") from None
            except Exception as exc:
                raise final(_failed(item, exc), "StepFailed") from None
            finally:
                beat.cancel()
        log.info("function succeeded", integration_id=run.writer.id, function=item.name)
        return raw

    @activity.defn(name="smartconnector.record")
    async def record(self, request: RecordRequest) -> None:
        """Write a function's success to the document, as the local engine does."""
        item = request.item
        result = normalise(request.result, item.name)
        async with self.run_for(request.run) as run:
            if item.done_marker is not None:
                ops = [
                    {
                        "op": "add",
                        "path": pointer(RUN_FIELD, "done", item.done_marker),
                        "value": True,
                    },
                    *run._updates(result, exclude=None),
                ]
            else:
                steps = run.integration().install
                index = next(i for i, s in enumerate(steps) if s.name == item.step)
                ops = run._step_ops(index, steps[index], item.completed, result)
            await run.writer.write(ops)

    @activity.defn(name="smartconnector.transition")
    async def transition(self, request: RecordRequest) -> None:
        """A mode or update-flag change; nothing when the document shows it already made."""
        name, run_request = request.item.name, request.run
        try:
            doc = await self.api.get("integrations", run_request.integration_id)
        except NotFound:
            if name == "remove":
                return
            raise
        async with self.run_for(run_request, doc) as run:
            await _transition(run, name, run_request.version, doc)

    @activity.defn(name="smartconnector.stop")
    async def stop(self, request: StopRequest) -> None:
        """Record why the run stopped (error, or waiting for a person) and free the lease."""
        record: dict[str, Any] = {
            "step": request.item.step,
            "function": request.item.name,
            "message": request.message,
        }
        if request.url is not None:
            record["url"] = request.url
        with contextlib.suppress(SmartConnectorError, ApplicationError):
            async with self.run_for(request.run) as run:
                await run.writer.write(
                    [{"op": "add", "path": pointer(RUN_FIELD, request.status), "value": record}],
                    release=True,
                )


async def _transition(run: IntegrationRun, name: str, version: str | None, doc: Document) -> None:
    mode = doc.get("mode")
    if name == "finish_install" and mode == "install":
        await run.machine.fire(run, Trigger.FINISH_INSTALL)
    elif name == "start_uninstall" and mode != "uninstall":
        await run.machine.fire(run, Trigger.START_UNINSTALL)
    elif name == "remove":
        await run.machine.fire(run, Trigger.REMOVE)
    elif name == "begin_update" and version is not None:
        await run.begin_update(version)
    elif name == "add_new_steps":
        await run.add_new_steps()
    elif name == "finish_update" and version is not None and doc.get("updateInProgress"):
        await run.finish_update(version)
    elif (
        name == "release"
        and run_state(doc).get("lease", {}).get("owner") == run.writer.owner.run_id
    ):
        await run.writer.write([], release=True)


def _failed(item: PlanItem, exc: Exception) -> str:
    return (
        f"step {item.step or '(connector)'!r}: function {item.name!r} failed:"
        f" {type(exc).__name__}: {exc}"
    )


async def _heartbeat(writer: DocumentWriter) -> None:
    """Tell Temporal this worker is alive, and keep the lease while the function runs."""
    while True:
        activity.heartbeat()
        if writer.quiet_for >= writer.ttl / 3:
            with contextlib.suppress(SmartConnectorError):
                await writer.write([])
        await asyncio.sleep(HEARTBEAT_EVERY)


def _memory() -> Any:
    from pathlib import Path

    return Path(":memory:")


def plan_items(request: RunRequest, doc: Document, connector: Connector) -> list[PlanItem]:
    """What is left to do, from the document: the same order as the local engine."""
    planner, mode = _Planner(doc, connector), doc.get("mode")
    if mode == "install":
        planner.install()
    elif mode == "uninstall" or request.action == "uninstall":
        planner.uninstall(fresh=mode != "uninstall")
    elif request.action == "update" or doc.get("updateInProgress"):
        planner.update(request.version or connector.manifest.version)
    else:
        planner.transition("release")
    return planner.items


class _Planner:
    def __init__(self, doc: Document, connector: Connector) -> None:
        self.manifest = connector.manifest
        self.doc = doc
        self.done: dict[str, Any] = run_state(doc).get("done", {})
        self.steps = [s for s in doc.get("install") or [] if isinstance(s, dict)]
        self.items: list[PlanItem] = []

    def transition(self, name: str) -> None:
        self.items.append(PlanItem("transition", name))

    def call(
        self,
        function: str,
        step: dict[str, Any] | None,
        phase: str,
        *,
        marker: str | None = None,
        completed: bool = True,
    ) -> None:
        policy = (step or {}).get("policy") or {}
        self.items.append(
            PlanItem(
                "call",
                function,
                step.get("name") if step else None,
                phase,
                marker,
                completed,
                float(policy.get("timeout") or 300.0),
                int(policy.get("retries") or 0),
                float(policy.get("retryDelay") or 1.0),
            )
        )

    def connector_call(
        self, kind: str, function: str | None, phase: str, fresh: bool = False
    ) -> None:
        if function and (fresh or not self.done.get(kind)):
            self.call(function, None, phase, marker=kind)

    def install(self) -> None:
        self.connector_call("installerFunction", self.manifest.installer_function, "installer")
        for step in self.steps:
            if not step.get("completed"):
                self.call(step["installerFunction"], step, "install")
        self.transition("finish_install")

    def uninstall(self, *, fresh: bool) -> None:
        if fresh:  # starting the uninstall resets the connector-level functions done
            self.transition("start_uninstall")
        self.connector_call(
            "preUninstallFunction", self.manifest.pre_uninstall_function, "uninstall", fresh
        )
        for step in reversed(self.steps):
            if step.get("completed"):
                self.call(step["uninstallerFunction"], step, "uninstall", completed=False)
        self.connector_call(
            "uninstallerFunction", self.manifest.uninstaller_function, "uninstall", fresh
        )
        self.transition("remove")

    def update(self, version: str) -> None:
        phase = f"update:{version}"
        self.transition("begin_update")
        self.connector_call("updateFunction", self.manifest.update_function, phase)
        self.transition("add_new_steps")
        added = [s.to_wire() for s in new_steps(self.doc, self.manifest)]
        for step in [s for s in self.steps if not s.get("completed")] + added:
            self.call(step["installerFunction"], step, phase)
        self.transition("finish_update")
