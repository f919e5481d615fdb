"""Where a plan runs: the seam between the engine, which decides, and what executes.

The :class:`~engine.drivers.runner.Engine` validates a command, plans it from the
document (:func:`engine.run.plan.plan_run`, under a :class:`~engine.run.plan.Take` of the
lease) and hands the plan to an :class:`Executor` as a :class:`Job`. Two execute it,
action by action, through the
same :class:`~engine.run.integration.IntegrationRun`:

- :class:`LocalExecutor`, a short loop in this process;
- :class:`engine.temporal.TemporalExecutor`, a Temporal workflow run by ``smartconnector
  worker``, one activity per function call.

Whichever runs it, a plan does the same calls and leaves the same document; a failure comes
back as the same error, and the engine's answer to it (an ``--atomic`` rollback) is one more
plan handed to the same executor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from engine import telemetry
from engine.client import Document
from engine.errors import SmartConnectorError
from engine.run.integration import IntegrationRun
from engine.run.plan import Action
from engine.run.writer import DocumentWriter, LeaseKeeper, Owner
from installers import Connector


@dataclass(frozen=True)
class Job:
    """One command's plan for one integration, ready to execute."""

    #: What the command asked (an :class:`~engine.run.plan.Intent`'s value, or ``settings``).
    intent: str
    #: The integration with its run state, as validated and planned from.
    doc: Document
    connector: Connector
    #: Who holds the lease while the plan runs.
    owner: Owner
    actions: list[Action]
    #: An update's target version.
    version: str | None = None
    #: Answers to a waiting step's fields (``resume --input-file``).
    answers: dict[str, str] | None = None

    @property
    def integration_id(self) -> str:
        return str(self.doc["_id"])


class Host(Protocol):
    """What an executor needs of the engine it runs plans for."""

    lease_ttl: float
    leases: LeaseKeeper

    async def writer(self, doc: Document, owner: Owner) -> DocumentWriter: ...

    def run_of(
        self, writer: DocumentWriter, connector: Connector, answers: dict[str, str] | None
    ) -> IntegrationRun: ...


class Executor(Protocol):
    """Runs the plans an :class:`~engine.drivers.runner.Engine` makes."""

    def owner(self, integration_id: str | None) -> Owner:
        """A new run's holder of the lease on ``integration_id`` (``None``: one it is about
        to create)."""
        ...

    def refuse(self, answers: dict[str, str] | None) -> None:
        """Raise :class:`~engine.errors.BadInput` for what this executor cannot carry,
        before the command changes anything."""
        ...

    async def execute(self, engine: Host, job: Job) -> Document:
        """Do ``job``'s actions in order; the document as the run left it (``{"_id"}`` only
        once it is deleted). A failure raises the engine's error, recorded in the document."""
        ...


class LocalExecutor:
    """Runs each plan in this process: one :class:`IntegrationRun`, action after action."""

    def owner(self, integration_id: str | None) -> Owner:
        return Owner.here()

    def refuse(self, answers: dict[str, str] | None) -> None:
        """Everything can be run here."""

    async def execute(self, engine: Host, job: Job) -> Document:
        writer = await engine.writer(job.doc, job.owner)
        run = engine.run_of(writer, job.connector, job.answers)
        engine.leases.add(writer)
        try:
            with telemetry.integration_run(writer.id, job.doc.get("mode")):
                await run.execute(job.actions)
        except SmartConnectorError as exc:
            exc.context.setdefault("integration_id", writer.id)
            raise
        finally:
            engine.leases.discard(writer)
        return writer.doc
