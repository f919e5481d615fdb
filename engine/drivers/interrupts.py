"""Ctrl-C, as a run sees it.

The first press asks the engine to stop after the function that is running: it finishes,
is recorded, and the run frees its lease and ends with :class:`~engine.errors.Interrupted`
(exit 130). The second abandons the functions still running (they run again on resume,
with the same idempotency key); while an integration is being created, it waits for its
id. A press with nothing left to wait for ends the process.

A press that comes before the engine exists is remembered, not lost: the engine then
refuses to start, so nothing is created or changed. This is what makes Ctrl-C safe at
every moment: the handler is installed before anything is created, and nothing but this
class decides what a press does.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.drivers.runner import Engine


class Interrupts:
    """Counts Ctrl-C presses and turns each into what the run should do."""

    def __init__(self, notify: Callable[[str], None] = lambda message: None) -> None:
        self.presses = 0
        self.notify = notify
        self._engine: Engine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, engine: Engine) -> None:
        """From now on presses act on ``engine``; one that came earlier stops it at once."""
        self._engine = engine
        self._loop = asyncio.get_running_loop()
        if self.presses:
            engine.stop.set()

    def detach(self) -> None:
        self._engine = self._loop = None

    def press(self) -> None:
        """One Ctrl-C. Safe from the signal handler and from any thread."""
        self.presses += 1
        engine, loop = self._engine, self._loop
        if engine is None or loop is None:
            if self.presses > 1:  # nothing has been created yet: the user insists
                raise KeyboardInterrupt
            return
        if self.presses == 1:
            self.notify("stopping after the function that is running (Ctrl-C again to abandon it)")
            loop.call_soon_threadsafe(engine.stop.set)
        elif self.presses == 2 and engine.running_functions():
            self.notify("abandoning the running function: it runs again on resume")
            loop.call_soon_threadsafe(engine.abandon_running)
        elif self.presses == 2 and engine.creating():
            self.notify(
                "the integration is being created: stopping right after (Ctrl-C again to quit)"
            )
        else:
            raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[Interrupts]:
        """Handle SIGINT with :meth:`press` for the duration (before any loop starts, so
        asyncio's own handler, which cancels whatever is running, is never installed)."""

        def handler(signum: int, frame: FrameType | None) -> None:
            self.press()

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)
