"""The calls a check makes happen, and how it watches them: each function of the connector
is wrapped, so the check sees which call is running, what appeared while it ran, and can
make the process "die" right after one returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from engine.check._workspace import Snapshot, Workspace
from engine.models import ConnectorManifest, Mode
from installers import Connector, RegisteredFunction, Registry, StepContext

Phase = Literal["install", "uninstall"]


@dataclass(frozen=True)
class Call:
    """One call a run makes: a function, for a step (``None``: connector-level), on a side."""

    function: str
    step: str | None
    phase: Phase


def calls_of(manifest: ConnectorManifest) -> list[Call]:
    """Every call an install and then an uninstall make, in the order they make them."""
    install: list[Call] = [
        Call(step.installer_function, step.name, "install") for step in manifest.install
    ]
    if manifest.installer_function:
        install.insert(0, Call(manifest.installer_function, None, "install"))
    uninstall: list[Call] = [
        Call(step.uninstaller_function, step.name, "uninstall")
        for step in reversed(manifest.install)
    ]
    if manifest.pre_uninstall_function:
        uninstall.insert(0, Call(manifest.pre_uninstall_function, None, "uninstall"))
    if manifest.uninstaller_function:
        uninstall.append(Call(manifest.uninstaller_function, None, "uninstall"))
    return install + uninstall


#: Called around each call with the call, its context and the function to run.
Around = Callable[[Call, StepContext, Callable[[], Awaitable[Any]]], Awaitable[Any]]


def watched(connector: Connector, around: Around) -> Connector:
    """``connector`` with every function run through ``around`` (each keeps its origin, so
    a failure still names the connector's own file and line)."""
    registry = Registry(connector.registry.name)
    for registered in connector.registry:
        registry.add(
            registered.name,
            _through(registered, around),
            origin=registered.origin,
            remote=registered.remote,
        )
    return Connector(connector.manifest, registry, connector.directory, connector.provenance)


def _through(registered: RegisteredFunction, around: Around) -> Callable[[StepContext], Any]:
    async def run(ctx: StepContext) -> Any:
        phase: Phase = "uninstall" if ctx.integration.mode is Mode.UNINSTALL else "install"
        call = Call(registered.name, ctx.step.name if ctx.step else None, phase)
        return await around(call, ctx, lambda: _invoke(registered, ctx))

    return run


async def _invoke(registered: RegisteredFunction, ctx: StepContext) -> Any:
    """The function itself: awaited, or in a thread when it is synchronous (as the engine
    runs it: a sync function must not hold up the other runs)."""
    if registered.is_async:
        return await cast(Awaitable[Any], registered.func(ctx))
    return await asyncio.to_thread(registered.func, ctx)


class SimulatedCrash(BaseException):
    """The process died right after a function returned: before the journal recorded its
    success and before the PATCH. A ``BaseException``, as a kill is: the engine does not
    record it as the function's failure, it just stops."""

    def __init__(self, call: Call, integration_id: str, answers: dict[str, str]) -> None:
        super().__init__(f"crashed after {call.function} returned")
        self.call = call
        self.integration_id = integration_id
        #: The answers the call was given: a person resuming would give them again.
        self.answers = answers


@dataclass
class CrashAfter:
    """Lets ``target`` run and return once, then kills the run."""

    target: Call
    fired: bool = False

    async def __call__(
        self, call: Call, ctx: StepContext, run: Callable[[], Awaitable[Any]]
    ) -> Any:
        result = await run()
        if call == self.target and not self.fired:
            self.fired = True
            raise SimulatedCrash(call, str(ctx.integration.id), dict(ctx.input))
        return result


@dataclass
class Attribution:
    """Notes what appeared in the sandbox while each call ran, and which calls returned."""

    workspace: Workspace
    made: dict[tuple[str, str], Call] = field(default_factory=dict)
    returned: set[Call] = field(default_factory=set)

    async def __call__(
        self, call: Call, ctx: StepContext, run: Callable[[], Awaitable[Any]]
    ) -> Any:
        before = await self.workspace.snapshot()
        try:
            result = await run()
        except Exception:
            await self._note(call, before)
            raise
        await self._note(call, before)
        self.returned.add(call)
        return result

    async def _note(self, call: Call, before: Snapshot) -> None:
        for key in (await self.workspace.snapshot()).keys() - before.keys():
            self.made.setdefault(key, call)
