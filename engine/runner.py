"""The engine's operations: install, resume, uninstall, status, plan.

Every operation validates everything it can before it changes anything: a refused run
(bad input, a lease held elsewhere, a missing scope) has called no connector function.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from engine.client import ApiClient, Document
from engine.errors import (
    BadInput,
    ConnectorInvalid,
    DocumentInvalid,
    SmartConnectorError,
    StepFailed,
)
from engine.journal import Journal
from engine.machine import Mode, ModeMachine
from engine.models import Integration, StepPolicy, parse
from engine.run import IntegrationRun, StepObserver
from engine.writer import RUN_FIELD, DocumentWriter, Owner, run_state
from installers import Connector, find_installed, load_connector
from installers.remote import ExtensionServer, with_remote


def _ignore(event: str, step: str | None, function: str, seconds: float | None) -> None:
    """The default observer: the runs' structlog events say enough."""


@dataclass(frozen=True)
class PlannedStep:
    name: str
    function: str
    origin: str
    completed: bool = False


@dataclass(frozen=True)
class Plan:
    """What an install would do, in order, with where each function is defined."""

    connector: str
    version: str
    steps: list[PlannedStep]


def status_of(doc: Document) -> dict[str, Any]:
    """``status --json``'s shape (SPEC §4)."""
    install = doc.get("install")
    steps = install if isinstance(install, list) else []
    return {
        "_id": doc.get("_id"),
        "mode": doc.get("mode"),
        "version": doc.get("version"),
        "updateInProgress": doc.get("updateInProgress", False),
        "install": [
            {"name": s.get("name"), "completed": s.get("completed")}
            for s in steps
            if isinstance(s, dict)
        ],
    }


def new_integration(connector: Connector, owner: Owner, ttl: float) -> Document:
    """The document install creates: ``mode: install``, every step not completed."""
    manifest = connector.manifest
    steps = []
    for step in manifest.install:
        wire = step.to_wire()
        wire["completed"] = False
        steps.append(wire)
    return {
        "name": manifest.name,
        "_connectorId": manifest.connector_id,
        "version": manifest.version,
        "mode": "install",
        "install": steps,
        "settings": manifest.settings,
        "updateInProgress": False,
        RUN_FIELD: {"lease": owner.lease(ttl), "done": {}},
    }


def function_names(
    connector: Connector, integration: Integration | None = None
) -> list[tuple[str, str]]:
    """``(field path, name)`` of every function the manifest and the document name."""
    names = connector.manifest.function_names()
    if integration is not None:
        for i, step in enumerate(integration.install):
            names.append((f"install[{i}].installerFunction", step.installer_function))
            names.append((f"install[{i}].uninstallerFunction", step.uninstaller_function))
    return names


def check_functions(connector: Connector, integration: Integration | None = None) -> None:
    """Every function the manifest (and the document) names resolves, or exit 2."""
    registry = connector.registry
    for path, name in function_names(connector, integration):
        if name not in registry:
            raise ConnectorInvalid(
                f"{path}: function {name!r} is not defined in registry {registry.name!r}"
                f" ({connector.provenance})",
                field=path,
            )


async def resolve_functions(
    connector: Connector,
    extension: ExtensionServer | None,
    integration: Integration | None = None,
    *,
    check_health: bool = True,
) -> Connector:
    """``connector`` with every function it names resolved: locally, else on ``extension``
    (after its health check, as the protocol cannot list functions), else exit 2."""
    names = function_names(connector, integration)
    if extension is not None and any(n not in connector.registry for _, n in names):
        if check_health:
            await extension.check_health()
        connector = with_remote(connector, extension, names)
    check_functions(connector, integration)
    return connector


@dataclass
class Engine:
    """Runs integrations against one API with one journal; share it across many runs."""

    api: ApiClient
    journal: Journal
    lease_ttl: float = 30.0
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    observe: StepObserver = _ignore
    machine: ModeMachine = field(default_factory=ModeMachine)
    #: Policy for functions whose step sets none (timeout, retries of RetryableError).
    default_policy: StepPolicy | None = None
    #: Where functions the connector does not define locally are called (SPEC §6).
    extension: ExtensionServer | None = None
    #: Connectors this engine ran, by integration id: resume in the same process finds them.
    known: dict[str, Connector] = field(default_factory=dict)
    _extension_healthy: bool = field(default=False, init=False)

    # -- read-only ------------------------------------------------------------------------

    @staticmethod
    def plan_for(connector: Connector) -> Plan:
        """Validate ``connector`` and list what install would run, changing nothing."""
        check_functions(connector)
        registry = connector.registry
        steps = []
        manifest = connector.manifest
        if manifest.installer_function:
            fn = registry.get(manifest.installer_function)
            steps.append(
                PlannedStep(
                    "(connector installer)", manifest.installer_function, fn.origin if fn else "?"
                )
            )
        for step in manifest.install:
            fn = registry.get(step.installer_function)
            steps.append(PlannedStep(step.name, step.installer_function, fn.origin if fn else "?"))
        return Plan(manifest.name, manifest.version, steps)

    async def status(self, integration_id: str) -> Document:
        return await self.api.get("integrations", integration_id)

    # -- runs -----------------------------------------------------------------------------

    async def install(
        self, connector: Connector, *, integration_id: str | None = None, atomic: bool = False
    ) -> Document:
        """Create the integration (or take ``integration_id``) and run every step.

        With ``atomic``, a failed step undoes the completed ones in reverse order and
        deletes the integration; if undoing fails too, it is left resumable as an uninstall.
        """
        connector = await self.resolve(connector)
        owner = Owner.here()
        if integration_id is None:
            doc = await self.api.create(
                "integrations", new_integration(connector, owner, self.lease_ttl)
            )
            self.journal.remember_connector(doc["_id"], connector.directory)
            writer = DocumentWriter(self.api, doc, owner, self.lease_ttl)
        else:
            writer, connector = await self._take(integration_id, connector, owner)
            self.journal.remember_connector(integration_id, connector.directory)
        try:
            return await self._drive(writer, connector, Mode.INSTALL)
        except StepFailed as failure:
            if not atomic:
                raise
            await self._roll_back(writer, connector, failure)
            raise AssertionError("unreachable: _roll_back always raises") from None

    async def _roll_back(
        self, writer: DocumentWriter, connector: Connector, failure: StepFailed
    ) -> NoReturn:
        """Undo an atomic install whose step failed; the error says what was undone."""
        steps = writer.doc.get("install") or []
        undone = [s.get("name") for s in reversed(steps) if s.get("completed") is True]
        try:
            await writer.acquire()
            await self._drive(writer, connector, Mode.UNINSTALL)
        except SmartConnectorError as undo_failure:
            raise StepFailed(
                f"{failure}; rolling back failed too: {undo_failure}. The integration is in"
                f" uninstall mode: `smartconnector resume {writer.id}` finishes the rollback",
                integration_id=writer.id,
            ) from undo_failure
        what = ", ".join(repr(n) for n in undone) or "no completed steps"
        raise StepFailed(
            f"{failure}; rolled back: undid {what} and deleted integration {writer.id}",
            integration_id=writer.id,
            rolled_back=True,
        ) from failure

    async def resume(self, integration_id: str, connector: Connector | None = None) -> Document:
        """Go on from the document: finish an install or an uninstall."""
        doc = await self.api.get("integrations", integration_id)
        connector = connector or self.find_connector(integration_id, doc)
        writer, connector = await self._take(integration_id, connector, Owner.here(), doc)
        mode = Mode(writer.doc["mode"])
        if mode is Mode.SETTINGS:
            await writer.write([], release=True)
            return writer.doc
        return await self._drive(writer, connector, mode)

    async def uninstall(self, integration_id: str, connector: Connector | None = None) -> None:
        """Undo every completed step in reverse order, then delete the integration."""
        doc = await self.api.get("integrations", integration_id)
        connector = connector or self.find_connector(integration_id, doc)
        writer, connector = await self._take(integration_id, connector, Owner.here(), doc)
        await self._drive(writer, connector, Mode.UNINSTALL)

    def find_connector(self, integration_id: str, doc: Document) -> Connector:
        """From this process, what install recorded here, else an installed package."""
        if integration_id in self.known:
            return self.known[integration_id]
        directory = self.journal.connector_directory(integration_id)
        if directory is not None and (directory / "connector.json").exists():
            return load_connector(directory)
        connector_id = doc.get("_connectorId")
        found = find_installed(connector_id) if isinstance(connector_id, str) else None
        if found is None:
            raise BadInput(
                f"integration {integration_id}: cannot find its connector"
                f" (_connectorId {connector_id!r}); pass --connector DIR",
                field="--connector",
            )
        return found

    async def _take(
        self, integration_id: str, connector: Connector, owner: Owner, doc: Document | None = None
    ) -> tuple[DocumentWriter, Connector]:
        """Validate the document and the connector against it, then take the lease."""
        doc = doc if doc is not None else await self.api.get("integrations", integration_id)
        integration = parse(
            Integration, doc, what=f"integration {integration_id}", error=DocumentInvalid
        )
        connector = await self.resolve(connector, integration)
        if integration.connector_id not in (None, connector.manifest.connector_id):
            raise BadInput(
                f"integration {integration_id} belongs to connector {integration.connector_id},"
                f" not {connector.manifest.connector_id} ({connector.provenance})",
                field="_connectorId",
            )
        writer = DocumentWriter(self.api, doc, owner, self.lease_ttl)
        await writer.acquire()
        return writer, connector

    async def resolve(
        self, connector: Connector, integration: Integration | None = None
    ) -> Connector:
        """Resolve every function name, locally first, then on the extension server.

        Nothing has run and nothing is changed when this refuses (exit 2, or 5 when the
        extension server does not answer its health check).
        """
        connector = await resolve_functions(
            connector, self.extension, integration, check_health=not self._extension_healthy
        )
        self._extension_healthy |= any(f.remote for f in connector.registry)
        return connector

    async def _drive(self, writer: DocumentWriter, connector: Connector, goal: Mode) -> Document:
        self.known[writer.id] = connector
        run = IntegrationRun(
            writer=writer,
            connector=connector,
            api=self.api,
            journal=self.journal,
            machine=self.machine,
            stop=self.stop,
            observe=self.observe,
            default_policy=self.default_policy,
        )
        self.machine.add(run, Mode(writer.doc["mode"]))
        keep_alive = asyncio.create_task(writer.keep_alive())
        try:
            if goal is Mode.UNINSTALL:
                await run.uninstall()
            else:
                await run.install()
        except SmartConnectorError as exc:
            exc.context.setdefault("integration_id", writer.id)
            raise
        finally:
            keep_alive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keep_alive
            self.machine.remove(run)
        return writer.doc


def waiting_or_error(doc: Document) -> dict[str, Any] | None:
    """What stopped the last run, if anything: a step waiting for a person, or an error."""
    state = run_state(doc)
    return state.get("waiting") or state.get("error")


def connector_from(directory: Path | None) -> Connector | None:
    return load_connector(directory) if directory is not None else None
