"""The integration's modes as a state machine, behind a small typed facade over ``transitions``.

The transition table is :data:`TRANSITIONS`; :func:`mermaid` draws it. A run asks
:meth:`ModeMachine.next` whether a mode change is allowed where it applies it, and writes it
itself: the machine calls nothing back.
"""

from __future__ import annotations

from enum import StrEnum

from transitions import Machine

from engine.errors import IllegalTransition
from engine.models import Mode


class Trigger(StrEnum):
    FINISH_INSTALL = "finish_install"
    START_UNINSTALL = "start_uninstall"
    REMOVE = "remove"


#: trigger, source modes, destination mode
TRANSITIONS: tuple[tuple[Trigger, tuple[Mode, ...], Mode], ...] = (
    (Trigger.FINISH_INSTALL, (Mode.INSTALL,), Mode.SETTINGS),
    (Trigger.START_UNINSTALL, (Mode.INSTALL, Mode.SETTINGS), Mode.UNINSTALL),
    (Trigger.REMOVE, (Mode.UNINSTALL,), Mode.REMOVED),
)


class ModeMachine:
    """Which mode a trigger leads to from a mode; an illegal trigger names the mode.

    Pure: it keeps no state per run (a run's mode is its document's). The table lives in a
    ``transitions`` machine, asked for the transition and never fired.
    """

    def __init__(self) -> None:
        self._machine = Machine(
            model=None,
            states=[m.value for m in Mode],
            initial=None,
            auto_transitions=False,
        )
        for trigger, sources, dest in TRANSITIONS:
            self._machine.add_transition(trigger.value, [s.value for s in sources], dest.value)

    def next(self, mode: Mode, trigger: Trigger) -> Mode:
        """The mode ``trigger`` leads to from ``mode``."""
        found = self._machine.get_transitions(trigger=trigger.value, source=mode.value)
        if not found:
            raise IllegalTransition(
                f"cannot {trigger.value.replace('_', ' ')} from mode {mode.value!r}",
                mode=mode.value,
                trigger=trigger.value,
            )
        return Mode(str(found[0].dest))


def mermaid() -> str:
    """The machine as a Mermaid state diagram, generated from :data:`TRANSITIONS`."""
    lines = ["stateDiagram-v2", f"    [*] --> {Mode.INSTALL.value}"]
    for trigger, sources, dest in TRANSITIONS:
        lines += [f"    {source.value} --> {dest.value}: {trigger.value}" for source in sources]
    lines.append(f"    {Mode.REMOVED.value} --> [*]")
    return "\n".join(lines)
