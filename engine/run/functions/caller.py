"""Calling a run's connector functions: once per success, stoppable, and recorded.

A function whose success is in the journal is not run again (its result is replayed); a
first Ctrl-C stops the run before the next call, a second abandons the call running; a
function that raises or waits for a person is recorded, in the journal and the document,
and ends the run with the error the CLI reports (naming the file and line it raised at).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from engine import telemetry
from engine.client import ApiClient, Document
from engine.errors import (
    AuthenticationFailed,
    BadInput,
    Interrupted,
    PermissionDenied,
    StepFailed,
    WaitingForUser,
)
from engine.logs import redactor, routine_level
from engine.models import InstallStep, Integration, StepPolicy
from engine.run.functions.invoke import invoke, raised_at
from engine.run.journal import Call, Journal
from engine.run.progress import Op, RunState
from engine.run.writer import DocumentWriter
from installers import Connector, RegisteredFunction, StepContext, UserActionRequired

T = TypeVar("T")

#: Called with (event, step name or None, function name, seconds or None) as a run goes.
StepObserver = Callable[[str, str | None, str, float | None], None]


def idempotency_key(integration_id: str, phase: str, function: str, step: str | None) -> str:
    """Stable for every retry and resume of the same call, unique across integrations."""
    raw = "\x1f".join((integration_id, phase, function, step or ""))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def keep_secret_answers(doc: Document, answers: dict[str, str]) -> None:
    """The answers to secret fields go to the function and nowhere else: scrubbed from
    every log line and error message from now on."""
    from engine.logs import redactor

    waiting = RunState.of(doc).waiting or {}
    for asked in waiting.get("fields") or []:
        answer = answers.get(str(asked.get("name"))) if isinstance(asked, dict) else None
        if answer and asked.get("secret"):
            redactor.add(answer)


class Caller:
    """Calls the functions of one run, under its writer's lease."""

    def __init__(
        self,
        *,
        writer: DocumentWriter,
        connector: Connector,
        api: ApiClient,
        journal: Journal,
        stop: asyncio.Event,
        abandon: asyncio.Event,
        calling: set[asyncio.Task[Any]],
        observe: StepObserver,
        default_policy: StepPolicy | None,
        integration: Callable[[Document], Integration],
        log: Any,
        answers: dict[str, str] | None = None,
        held: Callable[[], list[Op]] = list,
    ) -> None:
        self.writer = writer
        self.connector = connector
        self.api = api
        self.journal = journal
        self.stop = stop
        #: Set by a second Ctrl-C: the functions running (their tasks in ``calling``) are
        #: cancelled and not recorded, so resume runs them again.
        self.abandon = abandon
        self.calling = calling
        self.observe = observe
        self.default_policy = default_policy
        self.integration = integration
        self.log = log
        #: Writes a run holds for its last act (an update's ``updateFunction`` result): they
        #: go with the write that stops it early instead, so they are never lost.
        self.held = held
        #: The person's answers, for the try of the call that asked for them (once).
        waiting = RunState.of(writer.doc).waiting or {}
        self._answers = (waiting.get("step"), waiting.get("function"), dict(answers or {}))

    @property
    def doc(self) -> Document:
        return self.writer.doc

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
            input=self._input_for(step.name if step else None, function),
        )

    def _input_for(self, step: str | None, function: str) -> dict[str, str]:
        """The answers, if this is the call that asked for them; nobody else sees them."""
        asked_step, asked_function, answers = self._answers
        if not answers or (step, function) != (asked_step, asked_function):
            return {}
        self._answers = (None, None, {})
        return answers

    async def stop_if_asked(self) -> None:
        """After Ctrl-C: free the lease (progress is already written), then exit 130."""
        if self.stop.is_set():
            await self.writer.write(self.held(), release=True)
            raise Interrupted(
                f"integration {self.writer.id} stopped; its progress is saved",
                integration_id=self.writer.id,
            )

    async def call(
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
        await self.stop_if_asked()
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
        call = Call(key, self.writer.id, name, function, time.time(), phase)
        with telemetry.function_call(self.writer.id, name, function, phase):
            return await self._called(registered, ctx, step, call, interpret)

    async def _called(
        self,
        registered: RegisteredFunction,
        ctx: StepContext,
        step: InstallStep | None,
        call: Call,
        interpret: Callable[[Any, str], T],
    ) -> T:
        """The call itself: its success journalled, or why it stopped recorded."""
        name, function, log = call.step, call.function, ctx.log
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
        log.log(routine_level(), "function succeeded", seconds=round(seconds, 3))
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
            fields = [f.to_wire() for f in exc.fields]
            await self._stop_for(
                call, "waiting", redactor.scrub(exc.message), url=exc.url, fields=fields
            )
            raise WaitingForUser(
                f"step {name or '(connector)'!r} waits for you: {exc.message}",
                url=exc.url,
                fields=fields,
                **where,
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
        fields: list[dict[str, Any]] | None = None,
    ) -> None:
        """Record why the run stops, in the journal and the document, and free the lease."""
        self.journal.record(call, status, message=message)
        self.observe(status, call.step, call.function, None)
        record: dict[str, Any] = {"step": call.step, "function": call.function, "message": message}
        if url is not None:
            record["url"] = url
        if at is not None:
            record["raisedAt"] = at
        if fields:  # what is asked, never what was answered
            record["fields"] = fields
        await self.writer.write([RunState.stop(status, record), *self.held()], release=True)
