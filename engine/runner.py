"""The engine's operations: install, resume, uninstall, status, plan.

Every operation validates everything it can before it changes anything: a refused run
(bad input, a lease held elsewhere, a missing scope) has called no connector function.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from engine import telemetry
from engine.calling import keep_secret_answers
from engine.client import ApiClient, Document
from engine.creating import post_integration
from engine.defaults import LEASE_TTL
from engine.documents import (
    check_installable,
    needs_update,
    started_update_target,
    update_target,
)
from engine.errors import (
    BadInput,
    DocumentInvalid,
    Interrupted,
    SmartConnectorError,
    StepFailed,
)
from engine.functions import resolve_functions
from engine.journal import Journal
from engine.machine import ModeMachine
from engine.models import Integration, Mode, StepPolicy, parse
from engine.plan import Action, BeginUpdate, Intent, plan_run
from engine.run import IntegrationRun, StepObserver, begin_update_ops
from engine.run_state import RUN_FIELD, Op
from engine.writer import (
    CLAIM_WAIT,
    DocumentWriter,
    LeaseKeeper,
    Owner,
    open_writer,
    read_view,
    view_of,
)
from engine.writes import WriteWay
from installers import Connector, find_installed, load_connector
from installers.remote import ExtensionServer


def _ignore(event: str, step: str | None, function: str, seconds: float | None) -> None:
    """The default observer: the runs' structlog events say enough."""


@dataclass
class Engine:
    """Runs integrations against one API with one journal; share it across many runs."""

    api: ApiClient
    journal: Journal
    lease_ttl: float = LEASE_TTL
    #: Seconds a claim of the lease waits before reading it back, where the API offers no
    #: compare-and-set (:class:`~engine.writer.StateWriter`).
    claim_wait: float = CLAIM_WAIT
    #: Set by a first Ctrl-C: runs stop after the function that is running, recorded.
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set by a second: the functions still running are abandoned (see :mod:`engine.interrupts`).
    abandon: asyncio.Event = field(default_factory=asyncio.Event)
    observe: StepObserver = _ignore
    machine: ModeMachine = field(default_factory=ModeMachine)
    #: Policy for functions whose step sets none (timeout, retries of RetryableError).
    default_policy: StepPolicy | None = None
    #: Where functions the connector does not define locally are called (SPEC §6).
    extension: ExtensionServer | None = None
    #: Connectors this engine installed, by integration id (the one last run on each):
    #: resume and uninstall in the same process find them. Updates of other integrations
    #: add nothing here, so a rollout's memory stays flat.
    known: dict[str, Connector] = field(default_factory=dict)
    #: Who holds an update's lease, given the integration's id: this process by default. A
    #: rollout on Temporal holds its updates' leases itself, so a worker that takes over a
    #: page a lost worker was in takes the lease of the update it was in straight back.
    update_owner: Callable[[str], Owner] = field(default=lambda integration_id: Owner.here())
    _extension_healthy: bool = field(default=False, init=False)
    _leases: LeaseKeeper = field(init=False)
    _resolutions: dict[int, tuple[Connector, Connector]] = field(default_factory=dict, init=False)
    _calling: set[asyncio.Task[Any]] = field(default_factory=set, init=False)
    _creating: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._leases = LeaseKeeper(self.lease_ttl)

    # -- read-only ------------------------------------------------------------------------

    def running_functions(self) -> int:
        """How many connector functions are running now, across this engine's runs."""
        return len(self._calling)

    def abandon_running(self) -> None:
        """Cut off the functions that are running; each run then ends, resumable."""
        self.stop.set()
        self.abandon.set()
        for task in list(self._calling):
            task.cancel()

    async def _create(self, connector: Connector, owner: Owner) -> Document:
        """POST the new integration. Until its id is known here, Ctrl-C cannot end the
        process (it would leave an integration nobody can name)."""
        self._refuse_if_stopped()
        self._creating += 1
        try:
            doc = await post_integration(self.api, connector, owner, self.lease_ttl)
            self.known[doc["_id"]] = connector
        finally:
            self._creating -= 1
        self.journal.remember_connector(doc["_id"], connector.directory)
        return doc

    def creating(self) -> bool:
        """Whether an integration is being created (its id not yet known)."""
        return self._creating > 0

    def _refuse_if_stopped(self) -> None:
        """Ctrl-C before a run changed anything: it does not start."""
        if self.stop.is_set():
            raise Interrupted("stopped before anything was changed")

    async def status(self, integration_id: str) -> Document:
        """The integration with its run state (from the State API, where the API keeps it
        there)."""
        return await read_view(self.api, integration_id)

    async def integrations(self, **filters: str) -> list[Document]:
        """The integrations the API holds (matching ``filters``), each with its run state."""
        docs = await self.api.list("integrations", **filters)
        return list(await asyncio.gather(*(view_of(self.api, d) for d in docs)))

    async def plan_for(
        self, integration_id: str, intent: Intent, connector: Connector | None = None
    ) -> list[Action]:
        """What ``resume``, ``uninstall`` or ``update`` would do to the integration, from its
        document and run state; nothing is called or changed."""
        doc = await read_view(self.api, integration_id)
        connector = connector or self.find_connector(integration_id, doc)
        integration = parse(
            Integration, doc, what=f"integration {integration_id}", error=DocumentInvalid
        )
        connector = await self.resolve(connector, integration)
        version = None
        if intent is Intent.UPDATE:
            version = update_target(doc, connector)
            if version is None:
                return []
        elif doc.get("mode") == Mode.SETTINGS.value and doc.get("updateInProgress"):
            version = started_update_target(doc, connector)
        return plan_run(doc, connector.manifest, intent, version)

    async def _writer(self, doc: Document, owner: Owner) -> DocumentWriter:
        """The writer of the API's way (found by a probe the first time: before any
        function runs, so a run that cannot write has called none)."""
        way = await self.api.writes.of(self.api, str(doc["_id"]))
        return open_writer(way, self.api, doc, owner, self.lease_ttl, self.claim_wait)

    # -- runs -----------------------------------------------------------------------------

    async def install(
        self, connector: Connector, *, integration_id: str | None = None, atomic: bool = False
    ) -> Document:
        """Create the integration (or take ``integration_id``) and run every step.

        With ``atomic``, a failed step undoes the completed ones in reverse order and
        deletes the integration; if undoing fails too, it is left resumable as an uninstall.
        """
        connector = await self._resolved(connector)
        owner = Owner.here()
        if integration_id is None:
            doc = await self._create(connector, owner)
            if self.api.writes.way is None and RUN_FIELD not in doc:
                # it dropped the run state it was sent: no way of the document's, and PATCH
                # is tried first (a 405 then turns to PUT), so no probe is needed
                self.api.writes.suppose(WriteWay.REPLACE_ONLY)
            writer = await self._writer(doc, owner)
            await writer.acquire(fresh=True)
        else:
            doc = await read_view(self.api, integration_id)
            check_installable(doc)
            writer, connector = await self._take(integration_id, connector, owner, doc)
            self.journal.remember_connector(integration_id, connector.directory)
            self.known[integration_id] = connector
        try:
            return await self._run_plan(writer, connector, Intent.INSTALL)
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
        undone = [str(s.get("name")) for s in reversed(steps) if s.get("completed") is True]
        where: dict[str, Any] = {
            "step": failure.context.get("step"),
            "function": failure.context.get("function"),
        }
        try:
            await writer.acquire()
            await self._run_plan(writer, connector, Intent.UNINSTALL)
        except SmartConnectorError as undo_failure:
            raise StepFailed(
                f"{failure}; rolling back failed too: {undo_failure}. The integration is left"
                " in uninstall mode",
                integration_id=writer.id,
                raised_at=failure.raised_at,
                rollback_failed=True,
                **where,
            ) from undo_failure
        what = ", ".join(repr(n) for n in undone) or "no completed steps"
        raise StepFailed(
            f"{failure}; rolled back: undid {what} and deleted integration {writer.id}",
            integration_id=writer.id,
            raised_at=failure.raised_at,
            rolled_back=undone,
            deleted=True,
            **where,
        ) from failure

    async def resume(
        self,
        integration_id: str,
        connector: Connector | None = None,
        *,
        input: dict[str, str] | None = None,
    ) -> Document:
        """Go on from the document: finish an install, an uninstall or an update.

        ``input`` answers the fields the waiting step asked for: its function's next try
        gets them as ``ctx.input``, and nothing else does (secret ones are scrubbed from
        every log line and error).
        """
        doc = await read_view(self.api, integration_id)
        connector = connector or self.find_connector(integration_id, doc)
        writer, connector = await self._take(integration_id, connector, Owner.here(), doc)
        version = None
        if writer.doc.get("mode") == Mode.SETTINGS.value and writer.doc.get("updateInProgress"):
            version = started_update_target(writer.doc, connector)
        keep_secret_answers(writer.doc, input or {})
        return await self._run_plan(writer, connector, Intent.RESUME, version, answers=input)

    async def update(
        self,
        integration_id: str,
        connector: Connector | None = None,
        *,
        allow_downgrade: bool = False,
        doc: Document | None = None,
    ) -> Document:
        """Bring an integration in settings mode to the connector's version.

        The same version is a no-op; an older one needs ``allow_downgrade``. An interrupted
        update (``updateInProgress: true``) is finished, to the version it started for.
        ``doc`` saves a read when the caller has just listed the integration.
        """
        if doc is None:
            doc = await read_view(self.api, integration_id)
        elif doc.get("updateInProgress") is True:  # its target is in the run state
            doc = await view_of(self.api, doc)
        connector = connector or self.find_connector(integration_id, doc)
        target = update_target(doc, connector, allow_downgrade=allow_downgrade)
        if target is None:
            return doc
        return await self._update_to(integration_id, connector, doc, target)

    async def _update_to(
        self, integration_id: str, connector: Connector, doc: Document, target: str
    ) -> Document:
        """The update's first write takes the lease too: 2 + k requests from a held document
        (k the steps the version adds), the second being the update's last act."""
        writer, connector = await self._take(
            integration_id, connector, self.update_owner(integration_id), doc, acquire=False
        )
        actions = plan_run(writer.doc, connector.manifest, Intent.UPDATE, target)
        first: list[Op] = []
        if actions and isinstance(actions[0], BeginUpdate):
            first = begin_update_ops(writer.doc, connector.manifest, actions[0])
            actions = actions[1:]
        await writer.acquire(first)
        return await self._drive(writer, connector, lambda run: run.execute(actions))

    async def save_settings(
        self, integration_id: str, settings: Document, connector: Connector | None = None
    ) -> Document:
        """Run the connector's ``persistSettings`` (if any) and write the settings."""
        doc = await read_view(self.api, integration_id)
        connector = connector or self.find_connector(integration_id, doc)
        integration = parse(
            Integration, doc, what=f"integration {integration_id}", error=DocumentInvalid
        )
        if integration.mode is not Mode.SETTINGS or integration.update_in_progress:
            state = (
                "an update in progress"
                if integration.update_in_progress
                else (f"mode {integration.mode.value!r}")
            )
            raise BadInput(
                f"integration {integration_id} has {state}; settings can be"
                " changed only on an installed integration",
                field="mode",
            )
        writer, connector = await self._take(integration_id, connector, Owner.here(), doc)
        return await self._drive(writer, connector, lambda run: run.save_settings(settings))

    @staticmethod
    def needs_update(doc: Document, connector: Connector) -> bool:
        """Whether ``update`` would do anything: another version, or an update to finish."""
        return needs_update(doc, connector.manifest.version)

    async def uninstall(self, integration_id: str, connector: Connector | None = None) -> None:
        """Undo every completed step in reverse order, then delete the integration."""
        doc = await read_view(self.api, integration_id)
        connector = connector or self.find_connector(integration_id, doc)
        writer, connector = await self._take(integration_id, connector, Owner.here(), doc)
        await self._run_plan(writer, connector, Intent.UNINSTALL)

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
        self,
        integration_id: str,
        connector: Connector,
        owner: Owner,
        doc: Document | None = None,
        *,
        acquire: bool = True,
    ) -> tuple[DocumentWriter, Connector]:
        """Validate the document and the connector against it, then take the lease (unless
        the caller takes it with its own first write)."""
        doc = doc if doc is not None else await read_view(self.api, integration_id)
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
        writer = await self._writer(doc, owner)
        self._refuse_if_stopped()
        if acquire:
            await writer.acquire()
        return writer, connector

    async def _resolved(self, connector: Connector) -> Connector:
        """:meth:`resolve` once per connector object: a fleet installs one connector often."""
        cached = self._resolutions.get(id(connector))
        if cached is None or cached[0] is not connector:
            cached = (connector, await self.resolve(connector))
            self._resolutions[id(connector)] = cached
        return cached[1]

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

    async def _run_plan(
        self,
        writer: DocumentWriter,
        connector: Connector,
        intent: Intent,
        version: str | None = None,
        answers: dict[str, str] | None = None,
    ) -> Document:
        """Plan from the document as it is now, then run the plan."""
        actions = plan_run(writer.doc, connector.manifest, intent, version)
        return await self._drive(
            writer, connector, lambda run: run.execute(actions), answers=answers
        )

    async def _drive(
        self,
        writer: DocumentWriter,
        connector: Connector,
        action: Callable[[IntegrationRun], Awaitable[None]],
        answers: dict[str, str] | None = None,
    ) -> Document:
        if writer.id in self.known:  # resume here goes on with the connector last used
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
            abandon=self.abandon,
            calling=self._calling,
            answers=answers,
        )
        self._leases.add(writer)
        try:
            with telemetry.integration_run(writer.id, writer.doc.get("mode")):
                await action(run)
        except SmartConnectorError as exc:
            exc.context.setdefault("integration_id", writer.id)
            raise
        finally:
            self._leases.discard(writer)
        return writer.doc
