"""The mode state machine and its facade."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import IllegalTransition
from engine.machine import TRANSITIONS, ModeMachine, Trigger, mermaid
from engine.models import Mode


class Recorder:
    state: Any

    def __init__(self) -> None:
        self.persisted: list[tuple[Trigger, Mode, Mode]] = []

    async def persist(self, trigger: Trigger, source: Mode, dest: Mode) -> None:
        self.persisted.append((trigger, source, dest))


class Refuser(Recorder):
    async def persist(self, trigger: Trigger, source: Mode, dest: Mode) -> None:
        raise RuntimeError("API down")


async def test_lifecycle_persists_every_transition() -> None:
    """install → settings → uninstall → removed, each written before it takes effect."""
    machine, run = ModeMachine(), Recorder()
    machine.add(run, Mode.INSTALL)
    for trigger in (Trigger.FINISH_INSTALL, Trigger.START_UNINSTALL, Trigger.REMOVE):
        await machine.fire(run, trigger)
    assert machine.mode(run) is Mode.REMOVED
    assert [p[2] for p in run.persisted] == [Mode.SETTINGS, Mode.UNINSTALL, Mode.REMOVED]


@pytest.mark.parametrize(
    ("start", "trigger"),
    [
        (Mode.SETTINGS, Trigger.FINISH_INSTALL),
        (Mode.INSTALL, Trigger.REMOVE),
        (Mode.REMOVED, Trigger.START_UNINSTALL),
        (Mode.UNINSTALL, Trigger.START_UNINSTALL),
    ],
)
async def test_illegal_transitions_name_the_mode(start: Mode, trigger: Trigger) -> None:
    """A trigger the current mode does not allow is an error naming that mode."""
    machine, run = ModeMachine(), Recorder()
    machine.add(run, start)
    with pytest.raises(IllegalTransition, match=f"'{start.value}'"):
        await machine.fire(run, trigger)
    assert run.persisted == [] and machine.mode(run) is start


async def test_failed_write_leaves_the_mode() -> None:
    """When persisting fails, the transition does not happen."""
    machine, run = ModeMachine(), Refuser()
    machine.add(run, Mode.INSTALL)
    with pytest.raises(RuntimeError):
        await machine.fire(run, Trigger.FINISH_INSTALL)
    assert machine.mode(run) is Mode.INSTALL


async def test_one_machine_serves_many_runs() -> None:
    """Runs share one machine and each keeps its own mode; removed runs are forgotten."""
    machine = ModeMachine()
    runs = [Recorder() for _ in range(3)]
    for run in runs:
        machine.add(run, Mode.INSTALL)
    await machine.fire(runs[1], Trigger.FINISH_INSTALL)
    assert [machine.mode(r) for r in runs] == [Mode.INSTALL, Mode.SETTINGS, Mode.INSTALL]
    for run in runs:
        machine.remove(run)


def test_mermaid_is_generated_from_the_table() -> None:
    """The diagram has one edge per (source, trigger) in the table."""
    diagram = mermaid()
    assert diagram.startswith("stateDiagram-v2")
    edges = [line for line in diagram.splitlines() if ": " in line]
    assert len(edges) == sum(len(sources) for _, sources, _ in TRANSITIONS)
