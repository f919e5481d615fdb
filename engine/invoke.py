"""Calling one connector function: its timeout, its retry policy, its result's shape."""

from __future__ import annotations

import asyncio
from typing import Any

from engine.models import StepPolicy
from installers import RegisteredFunction, RetryableError, StepContext, StepResult

#: Timeout for a function whose step sets none (SPEC §6: 300 s for remote calls).
DEFAULT_TIMEOUT = 300.0


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


async def invoke(function: RegisteredFunction, ctx: StepContext, policy: StepPolicy | None) -> Any:
    """Run ``function`` once, or again on :class:`RetryableError` as ``policy`` allows.

    Returns what the function returned, as JSON (a :class:`StepResult` as its wire form);
    ``{"success": false}`` raises :class:`FunctionFailed`.
    """
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


async def _invoke_once(function: RegisteredFunction, ctx: StepContext, timeout: float) -> Any:
    try:
        # a remote function keeps its own timeout: its silence is retryable
        async with asyncio.timeout(None if function.remote else timeout):
            if function.is_async:
                raw = await function.func(ctx)  # type: ignore[misc]
            else:
                raw = await asyncio.to_thread(function.func, ctx)
    except TimeoutError:
        raise FunctionFailed(f"{function.name} timed out after {timeout:g} s") from None
    if isinstance(raw, StepResult):
        return raw.to_wire()
    if isinstance(raw, dict) and raw.get("success") is False:
        detail = raw.get("message") or raw.get("errors") or "success: false"
        raise FunctionFailed(f"{function.name} reported failure: {detail}")
    return raw
