"""The integration's modes as a state machine, behind a small typed facade over ``transitions``.

The transition table is :data:`TRANSITIONS`; :func:`mermaid` draws it. One machine is shared by
every run (a ``transitions`` machine per integration is costly). Runs are not registered as
models either: the facade fires each event with its run explicitly, which is all
``transitions`` needs, and saves registering trigger methods on every run.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from enum import StrEnum
from typing import Any, Protocol

from transitions import MachineError
from transitions.extensions.asyncio import AsyncMachine

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


class Stateful(Protocol):
    """A run driven by the machine: ``persist`` writes a transition before it takes effect."""

    state: Any

    async def persist(self, trigger: Trigger, source: Mode, dest: Mode) -> None: ...


def _before(trigger: Trigger, dest: Mode) -> Callable[[Any], Coroutine[Any, Any, None]]:
    async def persist(event: Any) -> None:
        await event.model.persist(trigger, Mode(event.transition.source), dest)

    return persist


class ModeMachine:
    """Fires typed triggers on runs; an illegal trigger names the current mode."""

    def __init__(self) -> None:
        self._machine = AsyncMachine(
            model=None,
            states=[m.value for m in Mode],
            initial=None,
            auto_transitions=False,
            send_event=True,
            model_attribute="state",
        )
        for trigger, sources, dest in TRANSITIONS:
            self._machine.add_transition(
                trigger.value,
                [s.value for s in sources],
                dest.value,
                before=_before(trigger, dest),
            )

    def add(self, run: Stateful, mode: Mode) -> None:
        """Start driving ``run`` from ``mode``."""
        run.state = mode.value

    def remove(self, run: Stateful) -> None:
        """Stop driving ``run`` (nothing is kept per run)."""

    def mode(self, run: Stateful) -> Mode:
        return Mode(run.state)

    async def fire(self, run: Stateful, trigger: Trigger) -> None:
        try:
            await self._machine.events[trigger.value].trigger(run)
        except MachineError:
            raise IllegalTransition(
                f"cannot {trigger.value.replace('_', ' ')} from mode {run.state!r}",
                mode=run.state,
                trigger=trigger.value,
            ) from None


def mermaid() -> str:
    """The machine as a Mermaid state diagram, generated from :data:`TRANSITIONS`."""
    lines = ["stateDiagram-v2", f"    [*] --> {Mode.INSTALL.value}"]
    for trigger, sources, dest in TRANSITIONS:
        lines += [f"    {source.value} --> {dest.value}: {trigger.value}" for source in sources]
    lines.append(f"    {Mode.REMOVED.value} --> [*]")
    return "\n".join(lines)
