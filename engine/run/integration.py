"""One integration's run: executes its plan, writing the document after every action.

The plan (:func:`engine.run.plan.plan_run`) says what to do and in which order; this module
says how each action is done: which function is called (:mod:`engine.run.functions.caller`)
and which one JSON Patch records it. Each action checks the document first, so applying it again
(a Temporal activity retried after a lost worker) changes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, assert_never

import structlog

from engine.client import ApiClient, Document
from engine.errors import DocumentInvalid, StepFailed
from engine.models import ConnectorManifest, InstallStep, Integration, Mode, StepPolicy, parse
from engine.run.functions.caller import Caller, StepObserver, idempotency_key
from engine.run.functions.invoke import normalise, settings_result
from engine.run.journal import Journal
from engine.run.machine import ModeMachine, Trigger
from engine.run.plan import (
    Action,
    BeginUpdate,
    Call,
    ChangeMode,
    Create,
    Delete,
    FinishUpdate,
    Release,
    SaveSettings,
    Take,
    new_steps,
)
from engine.run.progress import Op, Progress
from engine.run.writer import DocumentWriter
from installers import Connector, StepResult

__all__ = ["IntegrationRun", "StepObserver", "begin_update_ops", "idempotency_key"]

_MODE_TRIGGERS = {Mode.SETTINGS: Trigger.FINISH_INSTALL, Mode.UNINSTALL: Trigger.START_UNINSTALL}


def begin_update_ops(doc: Document, manifest: ConnectorManifest, action: BeginUpdate) -> list[Op]:
    """An update's first write: its flag and version, and the version's new steps."""
    added = [s.to_wire() for s in new_steps(doc, manifest)]
    return Progress(doc).begin_update(action.to, added)


class IntegrationRun:
    """Drives one integration through its plan; the :class:`ModeMachine` says which mode
    changes the transition table allows."""

    def __init__(
        self,
        *,
        writer: DocumentWriter,
        connector: Connector,
        api: ApiClient,
        journal: Journal,
        machine: ModeMachine,
        stop: asyncio.Event,
        observe: StepObserver,
        default_policy: StepPolicy | None = None,
        abandon: asyncio.Event | None = None,
        calling: set[asyncio.Task[Any]] | None = None,
        answers: dict[str, str] | None = None,
    ) -> None:
        self.writer = writer
        self.connector = connector
        self.api = api
        self.machine = machine
        self._typed: tuple[Document, Integration] | None = None
        #: What ``updateFunction`` returned, written with the update's last act.
        self.held: list[tuple[Call, Any]] = []
        self.log = structlog.get_logger("smartconnector.run").bind(integration_id=writer.id)
        self.calls = Caller(
            writer=writer,
            connector=connector,
            api=api,
            journal=journal,
            stop=stop,
            abandon=abandon or asyncio.Event(),
            calling=calling if calling is not None else set(),
            observe=observe,
            default_policy=default_policy,
            integration=self.integration,
            log=self.log,
            answers=answers,
            held=self._held_ops,
        )

    @property
    def doc(self) -> Document:
        return self.writer.doc

    def integration(self, doc: Document | None = None) -> Integration:
        """The current document (or ``doc``), typed. It was validated when the run began and
        every write since is checked, so this skips :func:`parse`'s size checks; cached per
        document, which each write replaces rather than changes."""
        doc = self.doc if doc is None else doc
        if self._typed is None or self._typed[0] is not doc:
            self._typed = (doc, Integration.model_validate(doc))
        return self._typed[1]

    # -- the plan -------------------------------------------------------------------------

    async def execute(self, actions: list[Action]) -> None:
        """Do ``actions`` in order: the local executor (a Temporal activity runs a slice).

        ``updateFunction``'s result is written with the update's last act rather than on its
        own, so an update costs a PATCH less; until then it is in :attr:`held` (and the
        journal has it, or Temporal's history when a slice ends before that act).
        """
        for action in actions:
            match action:
                case Call() if self._shows_done(action):
                    continue  # an earlier try of this plan did it (a retried activity)
                case Call(kind="updateFunction"):
                    self.held.append((action, await self.call(action)))
                case Call():
                    await self.record(action, await self.call(action))
                case _:
                    await self.apply(action)

    def _shows_done(self, action: Call) -> bool:
        """Whether the document records ``action``'s success already."""
        progress = Progress(self.doc)
        if action.step is None:
            return action.kind in progress.run.done
        index = progress.index(action.step)
        return index is not None and progress.completed(index) is action.completes

    async def call(self, action: Call) -> Any:
        """Run the action's function (once per success) and return what it returned."""
        step = self._step(action.step) if action.step is not None else None

        def checked(raw: Any, function: str) -> Any:  # a result of the wrong shape fails it
            normalise(raw, function)
            return raw

        return await self.calls.call(action.function, step, action.phase, checked)

    async def record(self, action: Call, raw: Any) -> None:
        """Write a function's success in one PATCH."""
        await self.writer.write(self.record_ops(action, raw))

    def record_ops(self, action: Call, raw: Any) -> list[Op]:
        """A function's success: the step marked (or the connector function done), with what
        its ``stepsToUpdate`` changed."""
        result = normalise(raw, action.function)
        if action.step is None:
            return [Progress.function_done(action.kind), *self._updates(result, exclude=None)]
        index = self._index(action.step)
        return self._step_ops(index, action.step, action.completes, result)

    async def apply(self, action: Action) -> None:
        """Do an action that calls no function; nothing if the document shows it done."""
        doc = self.doc
        progress = Progress(doc)
        match action:
            case Take(update=to, fresh=fresh):
                also = begin_update_ops(doc, self.connector.manifest, BeginUpdate(to)) if to else []
                if progress.run.lease_owner == self.writer.owner.run_id and not fresh:
                    if also:  # an earlier try took the lease (a retried activity)
                        await self.writer.write(also)
                else:
                    await self.writer.acquire(also, fresh=fresh)
            case SaveSettings(settings=pending):
                await self.save_settings(pending)
            case ChangeMode(to=target):
                if progress.mode is not target:
                    await self._change_mode(_MODE_TRIGGERS[target])
            case Delete():
                await self._change_mode(Trigger.REMOVE)
            case BeginUpdate():
                ops = begin_update_ops(doc, self.connector.manifest, action)
                if ops:  # nothing when the flag is set and the steps are there
                    await self.writer.write(ops)
            case FinishUpdate(to=version):
                await self.calls.stop_if_asked()
                if progress.update_in_progress or progress.version != version:
                    await self._finish_update(version)
            case Release():
                if progress.run.lease_owner == self.writer.owner.run_id:
                    await self.writer.write(Progress.end_run(), release=True)
            case Create() | Call():
                raise ValueError(f"{action.tag} is not done by apply")
            case _:
                assert_never(action)

    # -- writes ---------------------------------------------------------------------------

    async def _change_mode(self, trigger: Trigger) -> None:
        """Write a mode change the transition table allows, before it takes effect."""
        source = Progress(self.doc).mode
        assert source is not None, "the document was validated when the run took it"
        dest = self.machine.next(source, trigger)
        self.log.info("mode change", source=source.value, dest=dest.value)
        match trigger:
            case Trigger.FINISH_INSTALL:
                await self.writer.write(Progress.change_mode(dest), release=True)
            case Trigger.START_UNINSTALL:
                await self.writer.write(Progress.change_mode(dest))
            case Trigger.REMOVE:
                await self.api.delete("integrations", self.writer.id)
            case _:
                assert_never(trigger)

    async def _finish_update(self, version: str) -> None:
        """Record the version and clear the flag, freeing the lease: the update's last act."""
        await self.writer.write([*self._held_ops(), *Progress.finish_update(version)], release=True)
        self.held = []

    def _held_ops(self) -> list[Op]:
        """The writes of what :attr:`held` keeps, for the write that ends the run."""
        return [op for action, raw in self.held for op in self.record_ops(action, raw)]

    async def save_settings(self, pending: dict[str, Any]) -> None:
        """Run ``persistSettings`` (it may correct the settings), then write them."""
        function = self.connector.manifest.persist_settings_function
        if function:
            key = f"settings:{hashlib.sha256(repr(pending).encode()).hexdigest()[:16]}"
            pending = await self.calls.call(
                function,
                None,
                key,
                lambda raw, fn: settings_result(raw, fn, pending),
                pending=pending,
            )
        await self.writer.write(Progress.save_settings(pending), release=True)

    # -- patches --------------------------------------------------------------------------

    def _index(self, name: str) -> int:
        index = Progress(self.doc).index(name)
        if index is None:
            raise StepFailed(f"the document has no step {name!r}", integration_id=self.writer.id)
        return index

    def _step(self, name: str) -> InstallStep:
        """The step, typed on its own: the document was validated when the run took it, and
        typing all of it again for each step would make an N-step run O(N²)."""
        return InstallStep.model_validate(self.doc["install"][self._index(name)])

    def _step_ops(self, index: int, name: str, completed: bool, result: StepResult) -> list[Op]:
        updates = self._updates(result, exclude=name)
        return [*updates, *Progress(self.doc).step_done(index, completed)]

    def _updates(self, result: StepResult, *, exclude: str | None) -> list[Op]:
        """``stepsToUpdate`` as patch operations, each checked against the step model."""
        if not result.steps_to_update:
            return []
        steps = self.doc.get("install") or []
        index_of = {s.get("name"): i for i, s in enumerate(steps) if isinstance(s, dict)}
        ops: list[Op] = []
        for update in result.steps_to_update:
            name = update["name"]
            if name not in index_of:
                raise StepFailed(
                    f"stepsToUpdate names unknown step {name!r}", integration_id=self.writer.id
                )
            i = index_of[name]
            merged = {**steps[i], **update}
            parse(InstallStep, merged, what=f"stepsToUpdate for {name!r}", error=DocumentInvalid)
            ops += [
                Progress.set_step_field(i, field, value)
                for field, value in update.items()
                if field != "name" and not (name == exclude and field == "completed")
            ]
        return ops
