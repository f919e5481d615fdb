"""Calling one connector function: its timeout, its retry policy, its result's shape."""

from __future__ import annotations

import asyncio
from typing import Any

import stamina

from engine.models import StepPolicy
from installers import RegisteredFunction, RetryableError, StepContext, StepResult

#: Timeout for a function whose step sets none (SPEC §6: 300 s for remote calls).
DEFAULT_TIMEOUT = 300.0


class FunctionFailed(Exception):
    """A function reported failure in its result (``{"success": false}``) or returned junk."""


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


async def invoke(
    function: RegisteredFunction, ctx: StepContext, policy: StepPolicy | None
) -> StepResult:
    """Run ``function`` once, or again on :class:`RetryableError` as ``policy`` allows."""
    policy = policy or StepPolicy()
    timeout = policy.timeout or DEFAULT_TIMEOUT
    ctx.options["timeout"] = timeout
    async for attempt in stamina.retry_context(
        on=RetryableError,
        attempts=policy.retries + 1,
        timeout=None,
        wait_initial=policy.retry_delay,
        wait_max=max(policy.retry_delay * 16, policy.retry_delay),
        wait_jitter=policy.retry_delay / 2,
    ):
        with attempt:
            try:
                # a remote function keeps its own timeout: its silence is retryable
                async with asyncio.timeout(None if function.remote else timeout):
                    if function.is_async:
                        raw = await function.func(ctx)  # type: ignore[misc]
                    else:
                        raw = await asyncio.to_thread(function.func, ctx)
            except TimeoutError:
                raise FunctionFailed(f"{function.name} timed out after {timeout:g} s") from None
            return normalise(raw, function.name)
    raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover
