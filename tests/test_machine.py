"""The mode state machine and its facade."""

from __future__ import annotations

import pytest

from engine.errors import IllegalTransition
from engine.models import Mode
from engine.run.machine import TRANSITIONS, ModeMachine, Trigger, mermaid


def test_lifecycle_follows_the_table() -> None:
    """install → settings → uninstall → removed, each step the table's."""
    machine, mode = ModeMachine(), Mode.INSTALL
    for trigger in (Trigger.FINISH_INSTALL, Trigger.START_UNINSTALL, Trigger.REMOVE):
        mode = machine.next(mode, trigger)
    assert mode is Mode.REMOVED


@pytest.mark.parametrize(
    ("start", "trigger"),
    [
        (Mode.SETTINGS, Trigger.FINISH_INSTALL),
        (Mode.INSTALL, Trigger.REMOVE),
        (Mode.REMOVED, Trigger.START_UNINSTALL),
        (Mode.UNINSTALL, Trigger.START_UNINSTALL),
    ],
)
def test_illegal_transitions_name_the_mode(start: Mode, trigger: Trigger) -> None:
    """A trigger the current mode does not allow is an error naming that mode."""
    with pytest.raises(IllegalTransition, match=f"'{start.value}'"):
        ModeMachine().next(start, trigger)


def test_every_allowed_transition_is_in_the_table_and_no_other() -> None:
    """next() answers exactly the table: each (mode, trigger) pair either leads where the
    table says or is refused."""
    machine = ModeMachine()
    allowed = {(s, t): d for t, sources, d in TRANSITIONS for s in sources}
    for mode in Mode:
        for trigger in Trigger:
            if (mode, trigger) in allowed:
                assert machine.next(mode, trigger) is allowed[(mode, trigger)]
            else:
                with pytest.raises(IllegalTransition):
                    machine.next(mode, trigger)


def test_mermaid_is_generated_from_the_table() -> None:
    """The diagram has one edge per (source, trigger) in the table."""
    diagram = mermaid()
    assert diagram.startswith("stateDiagram-v2")
    edges = [line for line in diagram.splitlines() if ": " in line]
    assert len(edges) == sum(len(sources) for _, sources, _ in TRANSITIONS)
