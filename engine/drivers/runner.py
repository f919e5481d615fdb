"""The engine's operations: install, resume, uninstall, status, plan.

Every operation validates everything it can before it changes anything: a refused run
(bad input, a lease held elsewhere, a missing scope) has called no connector function.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from engine.client import ApiClient, Document
from engine.defaults import LEASE_TTL
from engine.drivers.executors import Executor, Job, LocalExecutor
from engine.errors import (
    BadInput,
    DocumentInvalid,
    Interrupted,
    SmartConnectorError,
    StepFailed,
)
from engine.models import Integration, Mode, StepPolicy, parse
from engine.run.creating import post_integration
from engine.run.documents import (
    check_installable,
    check_settable,
    needs_update,
    started_update_target,
    update_target,
)
from engine.run.functions.caller import keep_secret_answers
from engine.run.functions.resolve import resolve_functions
from engine.run.integration import IntegrationRun, StepObserver
from engine.run.journal import Journal
from engine.run.machine import ModeMachine
from engine.run.plan import Action, Intent, SaveSettings, plan_run, taking
from engine.run.progress import RUN_FIELD, Progress
from engine.run.state_writer import open_writer
from engine.run.views import read_view, read_views, view_of
from engine.run.writer import CLAIM_WAIT, DocumentWriter, LeaseKeeper, Owner, check_lease
from engine.writes import WriteWay
from installers import Connector, find_installed, load_connector
from installers.remote import ExtensionServer

#: Told a new integration's id once it exists (an install page follows it from there).
Created = Callable[[str], object]


def _finishing_update(doc: Document) -> bool:
    """Whether resuming ``doc`` finishes an update (to the version it started for)."""
    progress = Progress(doc)
    return progress.mode is Mode.SETTINGS and progress.update_in_progress


def _ignore(event: str, step: str | None, function: str, seconds: float | None) -> None:
    """The default observer: the runs' structlog events say enough."""


@dataclass
class Engine:
    """Runs integrations against one API with one journal; share it across many runs."""

    api: ApiClient
    journal: Journal
    lease_ttl: float = LEASE_TTL
    #: Seconds a claim of the lease waits before reading it back, where the API offers no
    #: compare-and-set (:class:`~engine.run.writer.StateWriter`).
    claim_wait: float = CLAIM_WAIT
    #: Set by a first Ctrl-C: runs stop after the function that is running, recorded.
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set by a second: the functions still running are abandoned
    #: (:mod:`engine.drivers.interrupts`).
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
    #: What runs the plans: here, or on Temporal (:mod:`engine.drivers.executors`).
    executor: Executor = field(default_factory=LocalExecutor)
    #: The leases of this engine's runs, renewed while a function runs long.
    leases: LeaseKeeper = field(init=False)
    #: The connector functions running now, across this engine's runs.
    calling: set[asyncio.Task[Any]] = field(default_factory=set, init=False)
    _extension_healthy: bool = field(default=False, init=False)
    _resolutions: dict[int, tuple[Connector, Connector]] = field(default_factory=dict, init=False)
    _creating: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.leases = LeaseKeeper(self.lease_ttl)

    # -- read-only ------------------------------------------------------------------------

    def running_functions(self) -> int:
        """How many connector functions are running now, across this engine's runs."""
        return len(self.calling)

    def abandon_running(self) -> None:
        """Cut off the functions that are running; each run then ends, resumable."""
        self.stop.set()
        self.abandon.set()
        for task in list(self.calling):
            task.cancel()

    async def _create(
        self, connector: Connector, owner: Owner, on_created: Created | None = None
    ) -> Document:
        """POST the new integration, then tell ``on_created`` its id. Until its id is known
        here, Ctrl-C cannot end the process (it would leave an integration nobody can name)."""
        self._refuse_if_stopped()
        self._creating += 1
        try:
            doc = await post_integration(self.api, connector, owner, self.lease_ttl)
            self.known[doc["_id"]] = connector
        finally:
            self._creating -= 1
        self.journal.remember_connector(doc["_id"], connector.directory)
        if on_created is not None:
            on_created(doc["_id"])
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
        return await read_views(self.api, **filters)

    async def plan_for(
        self, integration_id: str, intent: Intent, connector: Connector | None = None
    ) -> list[Action]:
        """What ``resume``, ``uninstall`` or ``update`` would do to the integration, from its
        document and run state; nothing is called or changed."""
        doc = await read_view(self.api, integration_id)
        connector = await self._checked(integration_id, connector, doc)
        version = None
        if intent is Intent.UPDATE:
            version = update_target(doc, connector)
            if version is None:
                return []
        elif _finishing_update(doc):
            version = started_update_target(doc, connector)
        return plan_run(doc, connector.manifest, intent, version)

    async def writer(self, doc: Document, owner: Owner) -> DocumentWriter:
        """The writer of the API's way (found by a probe the first time: before any
        function runs, so a run that cannot write has called none)."""
        way = await self.api.writes.of(self.api, str(doc["_id"]))
        return open_writer(way, self.api, doc, owner, self.lease_ttl, self.claim_wait)

    def run_of(
        self, writer: DocumentWriter, connector: Connector, answers: dict[str, str] | None
    ) -> IntegrationRun:
        """A run of ``connector`` under ``writer``, in this engine's process."""
        return IntegrationRun(
            writer=writer,
            connector=connector,
            api=self.api,
            journal=self.journal,
            machine=self.machine,
            stop=self.stop,
            observe=self.observe,
            default_policy=self.default_policy,
            abandon=self.abandon,
            calling=self.calling,
            answers=answers,
        )

    # -- runs -----------------------------------------------------------------------------

    async def install(
        self,
        connector: Connector,
        *,
        integration_id: str | None = None,
        atomic: bool = False,
        on_created: Created | None = None,
    ) -> Document:
        """Create the integration (or take ``integration_id``) and run every step.

        ``on_created`` is told the new integration's id as soon as it exists, before any
        function runs. With ``atomic``, a failed step undoes the completed ones in reverse
        order and deletes the integration; if undoing fails too, it is left resumable as an
        uninstall.
        """
        connector = await self._resolved(connector)
        owner = self.executor.owner(integration_id)
        if integration_id is None:
            doc = await self._create(connector, owner, on_created)
            if self.api.writes.way is None and RUN_FIELD not in doc:
                # it dropped the run state it was sent: no way of the document's, and PATCH
                # is tried first (a 405 then turns to PUT), so no probe is needed
                self.api.writes.suppose(WriteWay.REPLACE_ONLY)
            actions = taking(plan_run(doc, connector.manifest, Intent.INSTALL), fresh=True)
        else:
            doc = await read_view(self.api, integration_id)
            check_installable(doc)
            connector = await self._validated(integration_id, connector, doc, owner)
            self.journal.remember_connector(integration_id, connector.directory)
            actions = taking(plan_run(doc, connector.manifest, Intent.INSTALL))
        job = Job(Intent.INSTALL.value, doc, connector, owner, actions)
        try:
            return await self._execute(job)
        except StepFailed as failure:
            if not atomic:
                raise
            await self._roll_back(job, failure)
            raise AssertionError("unreachable: _roll_back always raises") from None

    async def _roll_back(self, install: Job, failure: StepFailed) -> NoReturn:
        """Undo an atomic install whose step failed: its uninstall, planned from the
        document the failure left and run by the same executor; the error says what was
        undone."""
        doc = await read_view(self.api, install.integration_id)
        steps = Progress(doc).steps
        undone = [str(s.get("name")) for s in reversed(steps) if s.get("completed") is True]
        owner = self.executor.owner(install.integration_id)
        actions = taking(plan_run(doc, install.connector.manifest, Intent.UNINSTALL))
        try:
            await self._execute(Job(Intent.UNINSTALL.value, doc, install.connector, owner, actions))
        except SmartConnectorError as undo_failure:
            raise failure.undo_failed(install.integration_id, undo_failure) from undo_failure
        raise failure.undone(install.integration_id, undone) from failure

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
        self.executor.refuse(input)
        doc = await read_view(self.api, integration_id)
        owner = self.executor.owner(integration_id)
        connector = await self._validated(integration_id, connector, doc, owner)
        version = started_update_target(doc, connector) if _finishing_update(doc) else None
        keep_secret_answers(doc, input or {})
        actions = taking(plan_run(doc, connector.manifest, Intent.RESUME, version))
        job = Job(Intent.RESUME.value, doc, connector, owner, actions, version, answers=input)
        return await self._execute(job)

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
        ``doc`` saves a read when the caller has just listed the integration. The update's
        first write takes the lease too: 2 + k requests from a held document (k the steps
        the version adds), the second being the update's last act.
        """
        if doc is None:
            doc = await read_view(self.api, integration_id)
        elif Progress(doc).update_in_progress:  # its target is in the run state
            doc = await view_of(self.api, doc)
        connector = connector or self.find_connector(integration_id, doc)
        target = update_target(doc, connector, allow_downgrade=allow_downgrade)
        if target is None:
            return doc
        owner = self.executor.owner(integration_id)
        connector = await self._validated(integration_id, connector, doc, owner)
        actions = taking(plan_run(doc, connector.manifest, Intent.UPDATE, target))
        return await self._execute(Job(Intent.UPDATE.value, doc, connector, owner, actions, target))

    async def save_settings(
        self, integration_id: str, settings: Document, connector: Connector | None = None
    ) -> Document:
        """Run the connector's ``persistSettings`` (if any) and write the settings."""
        doc = await read_view(self.api, integration_id)
        check_settable(doc)
        owner = self.executor.owner(integration_id)
        connector = await self._validated(integration_id, connector, doc, owner)
        actions = taking([SaveSettings(settings)])
        return await self._execute(Job("settings", doc, connector, owner, actions))

    @staticmethod
    def needs_update(doc: Document, connector: Connector) -> bool:
        """Whether ``update`` would do anything: another version, or an update to finish."""
        return needs_update(doc, connector.manifest.version)

    async def uninstall(self, integration_id: str, connector: Connector | None = None) -> None:
        """Undo every completed step in reverse order, then delete the integration."""
        doc = await read_view(self.api, integration_id)
        owner = self.executor.owner(integration_id)
        connector = await self._validated(integration_id, connector, doc, owner)
        actions = taking(plan_run(doc, connector.manifest, Intent.UNINSTALL))
        await self._execute(Job(Intent.UNINSTALL.value, doc, connector, owner, actions))

    async def _execute(self, job: Job) -> Document:
        """Hand ``job`` to the executor: the last chance to refuse before it changes
        anything. Runs here go on with the connector this one uses."""
        self._refuse_if_stopped()
        self.known[job.integration_id] = job.connector
        return await self.executor.execute(self, job)

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

    async def _validated(
        self, integration_id: str, connector: Connector | None, doc: Document, owner: Owner
    ) -> Connector:
        """:meth:`_checked`, and the lease (held by another: exit 4), so a refusal has
        changed nothing."""
        connector = await self._checked(integration_id, connector, doc)
        check_lease(doc, owner)
        return connector

    async def _checked(
        self, integration_id: str, connector: Connector | None, doc: Document
    ) -> Connector:
        """The connector, resolved, after checking the document and the connector against it."""
        connector = connector or self.find_connector(integration_id, doc)
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
        return connector

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
