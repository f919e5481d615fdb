"""One integration's run: calls its functions in order and writes after every transition."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import structlog

from engine.client import ApiClient, Document
from engine.documents import new_steps
from engine.errors import (
    AuthenticationFailed,
    BadInput,
    DocumentInvalid,
    Interrupted,
    PermissionDenied,
    StepFailed,
    WaitingForUser,
)
from engine.invoke import invoke, normalise, raised_at, settings_result
from engine.journal import Call, Journal
from engine.logs import redactor
from engine.machine import Mode, ModeMachine, Trigger
from engine.models import InstallStep, Integration, StepPolicy, parse
from engine.writer import RUN_FIELD, DocumentWriter, Op, pointer
from installers import (
    Connector,
    RegisteredFunction,
    StepContext,
    StepResult,
    UserActionRequired,
)

T = TypeVar("T")

#: Called with (event, step name or None, function name, seconds or None) as a run goes.
StepObserver = Callable[[str, str | None, str, float | None], None]


def idempotency_key(integration_id: str, phase: str, function: str, step: str | None) -> str:
    """Stable for every retry and resume of the same call, unique across integrations."""
    raw = "\x1f".join((integration_id, phase, function, step or ""))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


class IntegrationRun:
    """Drives one integration; the shared :class:`ModeMachine` holds its ``state``."""

    state: Any

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
    ) -> None:
        self.writer = writer
        self.connector = connector
        self.api = api
        self.journal = journal
        self.machine = machine
        self.stop = stop
        #: Set by a second Ctrl-C: the functions running (their tasks in ``calling``) are
        #: cancelled and not recorded, so resume runs them again.
        self.abandon = abandon or asyncio.Event()
        self.calling = calling if calling is not None else set()
        self.observe = observe
        self.default_policy = default_policy
        self._typed: tuple[Document, Integration] | None = None
        self.log = structlog.get_logger("smartconnector.run").bind(integration_id=writer.id)

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

    # -- transitions ----------------------------------------------------------------------

    async def persist(self, trigger: Trigger, source: Mode, dest: Mode) -> None:
        """Write a mode change before it takes effect (called by the machine)."""
        self.log.info("mode change", source=source.value, dest=dest.value)
        if trigger is Trigger.FINISH_INSTALL:
            await self.writer.write(
                [
                    {"op": "replace", "path": "/mode", "value": dest.value},
                    {"op": "remove", "path": pointer(RUN_FIELD)},
                ],
                release=True,
            )
        elif trigger is Trigger.START_UNINSTALL:
            await self.writer.write(
                [
                    {"op": "replace", "path": "/mode", "value": dest.value},
                    {"op": "add", "path": pointer(RUN_FIELD, "done"), "value": {}},
                ]
            )
        else:
            await self.api.delete("integrations", self.writer.id)

    # -- the two directions -----------------------------------------------------------------

    async def install(self) -> None:
        manifest = self.connector.manifest
        if manifest.installer_function:
            await self._connector_function(
                "installerFunction", manifest.installer_function, "installer"
            )
        for index, step in enumerate(self.integration().install):
            if not step.completed:
                result = await self._call(step.installer_function, step, "install", normalise)
                await self.writer.write(self._step_ops(index, step, True, result))
        await self.machine.fire(self, Trigger.FINISH_INSTALL)

    async def uninstall(self) -> None:
        if self.machine.mode(self) is not Mode.UNINSTALL:
            await self.machine.fire(self, Trigger.START_UNINSTALL)
        manifest = self.connector.manifest
        if manifest.pre_uninstall_function:
            await self._connector_function(
                "preUninstallFunction", manifest.pre_uninstall_function, "uninstall"
            )
        steps = self.integration().install
        for index in reversed(range(len(steps))):
            step = self.integration().install[index]
            if step.completed:
                result = await self._call(step.uninstaller_function, step, "uninstall", normalise)
                await self.writer.write(self._step_ops(index, step, False, result))
        if manifest.uninstaller_function:
            await self._connector_function(
                "uninstallerFunction", manifest.uninstaller_function, "uninstall"
            )
        await self.machine.fire(self, Trigger.REMOVE)

    async def update(self, version: str) -> None:
        """Flag the update, run ``updateFunction`` and the steps the version adds, then
        record the new version and clear the flag as the last act."""
        phase = f"update:{version}"
        await self.begin_update(version)
        manifest = self.connector.manifest
        if manifest.update_function:
            await self._connector_function("updateFunction", manifest.update_function, phase)
        await self.add_new_steps()
        for index, step in enumerate(self.integration().install):
            if not step.completed:
                result = await self._call(step.installer_function, step, phase, normalise)
                await self.writer.write(self._step_ops(index, step, True, result))
        await self._stop_if_asked()
        await self.finish_update(version)

    async def begin_update(self, version: str) -> None:
        """Set ``updateInProgress`` (once) and note the version it is for."""
        if not self.doc.get("updateInProgress"):
            await self.writer.write(
                [
                    {"op": "add", "path": "/updateInProgress", "value": True},
                    {"op": "add", "path": pointer(RUN_FIELD, "update"), "value": {"to": version}},
                ]
            )

    async def add_new_steps(self) -> None:
        """Append the new version's steps, not completed, in one tested write."""
        steps = list(self.doc.get("install") or [])
        added = [
            {**s.to_wire(), "completed": False}
            for s in new_steps(self.doc, self.connector.manifest)
        ]
        if added:  # the whole list, tested: a retried write cannot add the steps twice
            await self.writer.write(
                [
                    {"op": "test", "path": "/install", "value": steps},
                    {"op": "replace", "path": "/install", "value": steps + added},
                ]
            )

    async def finish_update(self, version: str) -> None:
        """Record the version and clear the flag, freeing the lease: the update's last act."""
        await self.writer.write(
            [
                {"op": "add", "path": "/version", "value": version},
                {"op": "add", "path": "/updateInProgress", "value": False},
                {"op": "remove", "path": pointer(RUN_FIELD)},
            ],
            release=True,
        )

    async def save_settings(self, pending: dict[str, Any]) -> None:
        """Run ``persistSettings`` (it may correct the settings), then write them."""
        function = self.connector.manifest.persist_settings_function
        if function:
            key = f"settings:{hashlib.sha256(repr(pending).encode()).hexdigest()[:16]}"
            pending = await self._call(
                function,
                None,
                key,
                lambda raw, fn: settings_result(raw, fn, pending),
                pending=pending,
            )
        await self.writer.write(
            [
                {"op": "add", "path": "/settings", "value": pending},
                {"op": "remove", "path": pointer(RUN_FIELD)},
            ],
            release=True,
        )

    # -- calling functions ----------------------------------------------------------------

    async def _connector_function(self, kind: str, function: str, phase: str) -> None:
        if self.writer.state.get("done", {}).get(kind):
            return
        result = await self._call(function, None, phase, normalise)
        ops = [{"op": "add", "path": pointer(RUN_FIELD, "done", kind), "value": True}]
        await self.writer.write(ops + self._updates(result, exclude=None))

    def context(
        self,
        function: str,
        step: InstallStep | None,
        key: str,
        pending: dict[str, Any] | None = None,
    ) -> StepContext:
        """What ``function`` gets: the document as it is now (typed when first read)."""
        return StepContext(
            integration=functools.partial(self.integration, self.doc),
            step=step,
            api=self.api,
            idempotency_key=key,
            log=self.log.bind(
                step=step.name if step else None, function=function, mode=self.doc.get("mode")
            ),
            settings=pending if pending is not None else dict(self.doc.get("settings") or {}),
            options={} if pending is None else {"pending": pending},
        )

    async def _stop_if_asked(self) -> None:
        """After Ctrl-C: free the lease (progress is already written), then exit 130."""
        if self.stop.is_set():
            await self.writer.write([], release=True)
            raise Interrupted(
                f"integration {self.writer.id} stopped; its progress is saved",
                integration_id=self.writer.id,
            )

    async def _call(
        self,
        function: str,
        step: InstallStep | None,
        phase: str,
        interpret: Callable[[Any, str], T],
        *,
        pending: dict[str, Any] | None = None,
    ) -> T:
        """Run ``function`` once per success: replay a journalled result instead of rerunning.

        ``interpret`` turns what the function returned into what the caller needs; a result
        it rejects fails the step and is not journalled as a success.
        """
        await self._stop_if_asked()
        name = step.name if step else None
        key = idempotency_key(self.writer.id, phase, function, name)
        recorded = self.journal.succeeded(key)
        if recorded is not None:
            self.log.info("replaying journalled result", step=name, function=function)
            return interpret(recorded.result, function)
        registered = self.connector.registry.get(function)
        if registered is None:  # validated before the run; a changed document can still miss
            raise BadInput(
                f"function {function!r} is not in registry {self.connector.registry.name!r}",
                field=function,
            )
        ctx = self.context(function, step, key, pending)
        log = ctx.log
        call = Call(key, self.writer.id, name, function, time.time())
        self.observe("started", name, function, None)
        began = time.monotonic()
        try:
            raw = await self._invoke(registered, ctx, step)
            result = interpret(raw, function)
        except asyncio.CancelledError:
            if not self.abandon.is_set():
                raise
            await self._abandoned(call)
        except Exception as exc:
            await self._stopped_by(call, exc)
        self.journal.record(call, "succeeded", result=raw)
        seconds = time.monotonic() - began
        self.observe("succeeded", name, function, seconds)
        log.info("function succeeded", seconds=round(seconds, 3))
        return result

    async def _invoke(
        self, registered: RegisteredFunction, ctx: StepContext, step: InstallStep | None
    ) -> Any:
        """Call the function; while it runs, a second Ctrl-C may cancel this task."""
        policy = (step.policy if step else None) or self.default_policy
        task = asyncio.current_task()
        if task is not None:
            self.calling.add(task)
        try:
            return await invoke(registered, ctx, policy)
        finally:
            if task is not None:
                self.calling.discard(task)

    async def _abandoned(self, call: Call) -> NoReturn:
        """A second Ctrl-C cut ``call`` off: nothing is recorded, so resume runs it again."""
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        self.log.warning("function abandoned", step=call.step, function=call.function)
        await self.writer.write([], release=True)
        raise Interrupted(
            f"integration {self.writer.id} stopped; function {call.function!r} was abandoned"
            " and runs again on resume",
            integration_id=self.writer.id,
            step=call.step,
            function=call.function,
            abandoned=True,
        )

    async def _stopped_by(self, call: Call, exc: Exception) -> NoReturn:
        """Record why a function did not succeed, free the lease, raise what the CLI reports."""
        name, function = call.step, call.function
        where: dict[str, Any] = {
            "integration_id": self.writer.id,
            "step": name,
            "function": function,
        }
        if isinstance(exc, UserActionRequired):
            await self._stop_for(call, "waiting", redactor.scrub(exc.message), url=exc.url)
            raise WaitingForUser(
                f"step {name or '(connector)'!r} waits for you: {exc.message}", url=exc.url, **where
            ) from None
        message = redactor.scrub(f"{type(exc).__name__}: {exc}")
        registered = self.connector.registry.get(function)
        at = raised_at(exc, registered, self.connector.directory) if registered else None
        await self._stop_for(call, "error", message, at=at)
        if isinstance(exc, AuthenticationFailed | PermissionDenied):
            exc.context.update(where)
            raise exc
        raise StepFailed(
            f"step {name or '(connector)'!r}: function {function!r} failed: {message}",
            raised_at=at,
            **where,
        ) from exc

    async def _stop_for(
        self,
        call: Call,
        status: str,
        message: str,
        *,
        url: str | None = None,
        at: str | None = None,
    ) -> None:
        """Record why the run stops, in the journal and the document, and free the lease."""
        self.journal.record(call, status, message=message)
        self.observe(status, call.step, call.function, None)
        record = {"step": call.step, "function": call.function, "message": message}
        if url is not None:
            record["url"] = url
        if at is not None:
            record["raisedAt"] = at
        await self.writer.write(
            [{"op": "add", "path": pointer(RUN_FIELD, status), "value": record}], release=True
        )

    # -- patches --------------------------------------------------------------------------

    def _step_ops(
        self, index: int, step: InstallStep, completed: bool, result: StepResult
    ) -> list[Op]:
        ops: list[Op] = [
            {"op": "test", "path": pointer("install", index, "name"), "value": step.name},
            *self._updates(result, exclude=step.name),
            {"op": "replace", "path": pointer("install", index, "completed"), "value": completed},
        ]
        for stale in ("waiting", "error"):
            if stale in self.writer.state:
                ops.append({"op": "remove", "path": pointer(RUN_FIELD, stale)})
        return ops

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
                {"op": "add", "path": pointer("install", i, field), "value": value}
                for field, value in update.items()
                if field != "name" and not (name == exclude and field == "completed")
            ]
        return ops
