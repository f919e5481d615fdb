"""The runs of a check: one clean install and uninstall, and one crashed-and-resumed run
per call. Each runs in a workspace of its own, so they all go at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.check._calls import Attribution, Call, CrashAfter, Phase, SimulatedCrash, watched
from engine.check._workspace import Snapshot, Workspace
from engine.drivers.runner import Engine
from engine.errors import LeaseHeld, SmartConnectorError, StepFailed, WaitingForUser
from installers import Connector

#: The lease a crashed run leaves names this very process, which is alive: a resume takes
#: it over only once it expires. The runs that will crash hold leases this short, so the
#: run that resumes them waits no longer than this (a real one would wait its 30 s).
DEAD_LEASE_TTL = 0.05

TAKE_OVER_TRIES = 10

#: Loads the connector as a new process would: module state starts afresh each time.
Load = Callable[[], Connector]


@dataclass(frozen=True)
class Ending:
    """How a run, resumed as a person would answer its waiting steps, ended: ``done``,
    ``waiting`` (for answers nobody gave) or ``failed``; ``call`` is where it stopped."""

    kind: Literal["done", "waiting", "failed"]
    integration_id: str | None
    call: Call | None = None
    message: str | None = None
    #: The names of the answers a step that waits asks for.
    asked: tuple[str, ...] = ()


async def finish(
    engine: Engine,
    connector: Connector,
    start: Callable[[], Awaitable[Any]],
    phase: Phase,
    answers: dict[str, str],
    integration_id: str | None = None,
) -> Ending:
    """Run ``start``; resume each step that waits, with the answers it asks for, until
    the run ends. A step that waits again after its answers (or asks for one that is not
    in ``answers``) ends it: nobody else will answer."""
    resumed: set[Call | None] = set()
    while True:
        try:
            doc = await start()
        except WaitingForUser as waiting:
            call = _where(waiting, phase)
            given = _answers_for(waiting.fields, answers)
            integration_id = waiting.integration_id
            if given is None or call in resumed or integration_id is None:
                asked = tuple(str(f.get("name")) for f in waiting.fields)
                return Ending("waiting", integration_id, call, waiting.message, asked)
            resumed.add(call)
            start = _resuming(engine, integration_id, connector, given)
        except SmartConnectorError as failure:
            return Ending("failed", failure.integration_id, _where(failure, phase), _said(failure))
        else:
            found = doc.get("_id") if isinstance(doc, dict) else None
            return Ending("done", str(found) if found else integration_id)


def _resuming(
    engine: Engine, integration_id: str, connector: Connector, given: dict[str, str]
) -> Callable[[], Awaitable[Any]]:
    return lambda: engine.resume(integration_id, connector, input=given or None)


def _said(failure: SmartConnectorError) -> str:
    """The error as the CLI says it: the message, and where in the connector it raised."""
    at = failure.raised_at if isinstance(failure, StepFailed) else None
    return f"{failure} (at {at})" if at else str(failure)


def _where(error: SmartConnectorError, phase: Phase) -> Call | None:
    function = error.context.get("function")
    return Call(str(function), error.context.get("step"), phase) if function else None


def _answers_for(fields: list[dict[str, Any]], answers: dict[str, str]) -> dict[str, str] | None:
    """The answers to the fields asked, or ``None`` when one is missing."""
    names = [str(f.get("name")) for f in fields]
    if any(name not in answers for name in names):
        return None
    return {name: answers[name] for name in names}


@dataclass
class CleanRun:
    """An install and an uninstall that nothing interrupts, and what each call made."""

    install: Ending
    uninstall: Ending | None
    installed: Snapshot
    remaining: Snapshot
    made: dict[tuple[str, str], Call] = field(default_factory=dict)
    returned: set[Call] = field(default_factory=set)

    def ending(self, phase: Phase) -> Ending | None:
        return self.install if phase == "install" else self.uninstall


async def clean_run(workspace: Workspace, load: Load, answers: dict[str, str]) -> CleanRun:
    attribution = Attribution(workspace)
    connector = watched(load(), attribution)
    engine = await workspace.engine()
    install = await finish(engine, connector, lambda: engine.install(connector), "install", answers)
    installed = await workspace.snapshot()
    uninstall = None
    if install.integration_id is not None:
        uninstall = await _uninstall(engine, connector, install.integration_id, answers)
    remaining = await workspace.snapshot()
    return CleanRun(
        install, uninstall, installed, remaining, attribution.made, attribution.returned
    )


async def _uninstall(
    engine: Engine, connector: Connector, integration_id: str, answers: dict[str, str]
) -> Ending:
    return await finish(
        engine,
        connector,
        lambda: engine.uninstall(integration_id, connector),
        "uninstall",
        answers,
        integration_id,
    )


@dataclass
class CrashedRun:
    """A run in which ``target``'s success was lost once, then resumed."""

    target: Call
    #: Whether the target returned, so the run crashed; ``False``: no run reached it.
    crashed: bool = False
    ending: Ending | None = None
    #: What existed when the uninstall began (for uninstall-side targets).
    installed: Snapshot = field(default_factory=dict)
    final: Snapshot = field(default_factory=dict)


async def crashed_run(
    workspace: Workspace, load: Load, answers: dict[str, str], target: Call
) -> CrashedRun:
    """Install (and uninstall, for an uninstall-side ``target``) until ``target`` returns,
    then crash; a new process resumes the integration from what the crash left."""
    dead = await workspace.engine(lease_ttl=DEAD_LEASE_TTL)
    connector = watched(load(), CrashAfter(target))
    outcome = CrashedRun(target)
    try:
        install = await finish(dead, connector, lambda: dead.install(connector), "install", answers)
        if target.phase == "uninstall" and install.integration_id is not None:
            outcome.installed = await workspace.snapshot()
            await _uninstall(dead, connector, install.integration_id, answers)
        return outcome  # the target never returned: there was nothing to lose
    except SimulatedCrash as crash:
        died = crash
    await asyncio.to_thread(dead.journal.close)  # the dead process's connection goes too
    again, fresh = load(), await workspace.engine()
    outcome.crashed = True
    outcome.ending = await finish(
        fresh,
        again,
        lambda: _taking_over(fresh, died.integration_id, again, died.answers),
        target.phase,
        answers,
        died.integration_id,
    )
    outcome.final = await workspace.snapshot()
    return outcome


async def _taking_over(
    engine: Engine, integration_id: str, connector: Connector, answers: dict[str, str]
) -> Any:
    """Resume once the dead run's lease has expired. A renewal it had in flight when it
    died may still land and push the expiry on, once: a refused resume changed nothing
    and called nothing, so it is tried again."""
    for _ in range(TAKE_OVER_TRIES - 1):
        await asyncio.sleep(DEAD_LEASE_TTL)
        try:
            return await engine.resume(integration_id, connector, input=answers or None)
        except LeaseHeld:
            continue
    await asyncio.sleep(DEAD_LEASE_TTL)
    return await engine.resume(integration_id, connector, input=answers or None)
