"""``check``: crash-test a connector's own functions on throwaway sandboxes."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from engine.check._calls import Call, calls_of
from engine.check._runs import CleanRun, CrashedRun, Load, clean_run, crashed_run
from engine.check._verdicts import Report, judge, leaks_of
from engine.check._workspace import Sandbox, Workspace
from engine.run.functions.resolve import check_functions
from installers import Connector, load_connector

T = TypeVar("T")

#: Runs going at once, each on a sandbox of its own: most of their time is the CPU's, so
#: a few are enough to fill the time one spends waiting (a dead run's lease, a slow API).
CONCURRENCY = 4


async def check_connector(
    target: Connector | str | Path, *, input: dict[str, str] | None = None
) -> Report:
    """Crash-test ``target`` (a connector directory, or a loaded :class:`Connector`).

    A clean install and uninstall, and for every call they make, a run in which that
    call's success is lost once and the run resumed, each in a throwaway home with an
    embedded sandbox of its own. ``input`` answers the fields of steps that wait for a
    person. A connector that does not load, or names a function it does not define,
    raises :class:`~engine.errors.ConnectorInvalid` before anything runs.

    A directory is loaded again for every process a run simulates (module state starts
    afresh, as after a real crash); a :class:`Connector` is shared by all of them.
    """
    load = _loader(target)
    connector = load()
    check_functions(connector)  # every function it names is defined, or nothing runs
    calls = list(dict.fromkeys(calls_of(connector.manifest)))
    answers = dict(input or {})
    began = time.monotonic()
    try:
        clean, crashed = await _run_all(load, calls, answers)
    except BaseExceptionGroup as failed:  # a run that could not go on at all
        raise _first(failed) from None
    manifest = connector.manifest
    waiting = next(
        (e for e in (clean.install, clean.uninstall) if e is not None and e.kind == "waiting"),
        None,
    )
    return Report(
        manifest.name,
        manifest.version,
        [judge(call, clean, case) for call, case in zip(calls, crashed, strict=True)],
        leaks_of(clean),
        waiting,
        time.monotonic() - began,
    )


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


def _loader(target: Connector | str | Path) -> Load:
    if isinstance(target, Connector):
        return lambda: target
    directory = Path(target)
    return lambda: load_connector(directory)


async def _run_all(
    load: Load, calls: list[Call], answers: dict[str, str]
) -> tuple[CleanRun, list[CrashedRun]]:
    """The clean run and every crashed one, a few at once, each on a sandbox of its own."""
    with tempfile.TemporaryDirectory(
        prefix="smartconnector-check-", ignore_cleanup_errors=True
    ) as temporary:
        home = Path(temporary) / "home"
        free: asyncio.Queue[Sandbox] = asyncio.Queue()
        sandboxes = [Sandbox() for _ in range(min(CONCURRENCY, 1 + len(calls)))]
        for sandbox in sandboxes:
            free.put_nowait(sandbox)

        async def in_workspace(job: Callable[[Workspace], Awaitable[T]]) -> T:
            sandbox = await free.get()
            workspace = Workspace(sandbox, home)
            try:
                return await job(workspace)
            finally:
                await workspace.close()
                await sandbox.empty()
                free.put_nowait(sandbox)

        try:
            async with asyncio.TaskGroup() as group:
                clean = group.create_task(in_workspace(lambda w: clean_run(w, load, answers)))
                crashed = [
                    group.create_task(in_workspace(_crashing(load, answers, call)))
                    for call in calls
                ]
        finally:
            for sandbox in sandboxes:
                await sandbox.close()
    return clean.result(), [task.result() for task in crashed]


def _crashing(
    load: Load, answers: dict[str, str], call: Call
) -> Callable[[Workspace], Awaitable[CrashedRun]]:
    return lambda workspace: crashed_run(workspace, load, answers, call)
