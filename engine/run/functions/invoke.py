"""Calling one connector function: its timeout, its retry policy, its result's shape."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.defaults import FUNCTION_TIMEOUT
from engine.errors import AnswerLost
from engine.models import StepPolicy
from installers import RegisteredFunction, RetryableError, StepContext, StepResult

DEFAULT_TIMEOUT = FUNCTION_TIMEOUT


class FunctionFailed(Exception):
    """A function reported failure in its result (``{"success": false}``) or returned junk."""


def settings_result(raw: Any, function: str, pending: dict[str, Any]) -> dict[str, Any]:
    """A ``persistSettings`` answer → the settings to save: its ``pending``, else the input."""
    if raw is None or (isinstance(raw, dict) and "pending" not in raw):
        return pending
    corrected = raw.get("pending") if isinstance(raw, dict) else None
    if not isinstance(corrected, dict):
        raise FunctionFailed(f"{function}: pending must be an object of settings")
    return corrected


def normalise(raw: Any, function: str) -> StepResult:
    """``None``, a :class:`StepResult` or ``{"stepsToUpdate": [...]}`` → :class:`StepResult`."""
    if raw is None:
        return StepResult()
    if isinstance(raw, StepResult):
        return raw
    if not isinstance(raw, dict):
        raise FunctionFailed(
            f"{function} returned {type(raw).__name__}; expected None, a StepResult"
            " or {'stepsToUpdate': [...]}"
        )
    if raw.get("success") is False:
        detail = raw.get("message") or raw.get("errors") or "success: false"
        raise FunctionFailed(f"{function} reported failure: {detail}")
    updates = raw.get("stepsToUpdate", [])
    if not isinstance(updates, list) or not all(
        isinstance(u, dict) and isinstance(u.get("name"), str) for u in updates
    ):
        raise FunctionFailed(f"{function}: stepsToUpdate must be a list of objects with a name")
    return StepResult(steps_to_update=updates)


#: Times a function is run again after it lost the answer to a create it made on an API
#: that does not honour ``Idempotency-Key`` (as resume would run it: with the same key).
LOST_ANSWER_RERUNS = 3


async def invoke(function: RegisteredFunction, ctx: StepContext, policy: StepPolicy | None) -> Any:
    """Run ``function`` once, or again on :class:`RetryableError` as ``policy`` allows.

    A function whose create lost its answer (:class:`~engine.errors.AnswerLost`: the API may
    have made the document) is run again at once with the same idempotency key, which it
    uses to find what that create made. Returns what the function returned, as JSON (a
    :class:`StepResult` as its wire form); ``{"success": false}`` raises
    :class:`FunctionFailed`.
    """
    for rerun in range(LOST_ANSWER_RERUNS):
        try:
            return await _invoke_by_policy(function, ctx, policy)
        except AnswerLost:
            if rerun == LOST_ANSWER_RERUNS - 1:
                raise
    raise AssertionError("unreachable: the last rerun returns or raises")  # pragma: no cover


async def _invoke_by_policy(
    function: RegisteredFunction, ctx: StepContext, policy: StepPolicy | None
) -> Any:
    policy = policy or StepPolicy()
    timeout = policy.timeout or DEFAULT_TIMEOUT
    ctx.options["timeout"] = timeout
    if policy.retries == 0:  # the common case: no retry machinery to set up
        return await _invoke_once(function, ctx, timeout)
    import stamina  # only here: most steps have no retries, and importing it is not free

    async for attempt in stamina.retry_context(
        on=RetryableError,
        attempts=policy.retries + 1,
        timeout=None,
        wait_initial=policy.retry_delay,
        wait_max=max(policy.retry_delay * 16, policy.retry_delay),
        wait_jitter=policy.retry_delay / 2,
    ):
        with attempt:
            return await _invoke_once(function, ctx, timeout)
    raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover


async def in_daemon_thread(func: Callable[[StepContext], Any], ctx: StepContext) -> Any:
    """``func(ctx)`` in a thread of its own, awaited.

    Unlike :func:`asyncio.to_thread`, the thread is a daemon outside the loop's executor: a
    function that was abandoned (a second Ctrl-C) or timed out does not hold the process
    open at exit while it runs on.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def settle(outcome: Any, failed: bool) -> None:
        if done.cancelled():
            return
        if failed:
            done.set_exception(outcome)
        else:
            done.set_result(outcome)

    def work() -> None:
        try:
            outcome, failed = context.run(func, ctx), False
        except BaseException as exc:  # handed to the awaiting task, which re-raises it
            outcome, failed = exc, True
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
            loop.call_soon_threadsafe(settle, outcome, failed)

    threading.Thread(target=work, name=f"function {ctx.idempotency_key}", daemon=True).start()
    return await done


async def _invoke_once(function: RegisteredFunction, ctx: StepContext, timeout: float) -> Any:
    try:
        # a remote function keeps its own timeout: its silence is retryable
        async with asyncio.timeout(None if function.remote else timeout):
            if function.is_async:
                raw = await function.func(ctx)  # type: ignore[misc]
            else:
                raw = await in_daemon_thread(function.func, ctx)
    except TimeoutError:
        raise FunctionFailed(f"{function.name} timed out after {timeout:g} s") from None
    if isinstance(raw, StepResult):
        return raw.to_wire()
    if isinstance(raw, dict) and raw.get("success") is False:
        detail = raw.get("message") or raw.get("errors") or "success: false"
        raise FunctionFailed(f"{function.name} reported failure: {detail}")
    return raw


def raised_at(exc: BaseException, function: RegisteredFunction, directory: Path) -> str | None:
    """Where in the connector's code ``exc`` was raised: ``file:line, in name``.

    The innermost frame in the function's own file or under the connector's directory;
    ``None`` when no frame is the connector's (a remote function, or the engine itself).
    """
    own_file = function.origin.rpartition(":")[0]
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        path = Path(frame.filename)
        if frame.filename == own_file or path.is_relative_to(directory):
            found = frame
    if found is None:
        return None
    return f"{_shown(Path(found.filename))}:{found.lineno}, in {found.name}"


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when under it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
