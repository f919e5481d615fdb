"""The ``smartconnector`` command."""

import gc
import os
import signal
import sys
from types import FrameType
from typing import Any


def _interrupted_before_any_run(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C outside a run (runs install their own handler): say so, then stop."""
    print("interrupted; nothing was changed", file=sys.stderr)
    raise KeyboardInterrupt


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    signal.signal(signal.SIGINT, _interrupted_before_any_run)
    try:
        # Imported here, not at module level: a Ctrl-C while they load is handled below
        # like any other, instead of ending in a traceback.
        from engine.cli._startup import lighten

        lighten()  # before the libraries load: what they leave out
        from engine.cli._app import app
        from engine.cli._order import register_commands
        from engine.cli._telemetry import traced

        register_commands()
        with traced(sys.argv[1:]):  # exported before _leave: it skips every finaliser
            app()
    except KeyboardInterrupt:  # before any run began (runs handle Ctrl-C themselves)
        _leave(130)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if "temporalio" in sys.modules:
            _leave(code)
        raise
    finally:
        # The interpreter ends with a full collection over every object alive, most of them
        # made by imports (~30 ms of every command); frozen, they are skipped. What is left
        # at exit needs no collecting: the process is about to give all of it back.
        gc.freeze()


def _leave(code: int) -> None:
    """Leave without interpreter teardown, which the Temporal client's runtime threads can
    crash (temporalio/sdk-python#300: a fatal PyGILState_Release while finalizing), and which
    would wait for an abandoned function's thread."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def __getattr__(name: str) -> Any:
    if name == "app":
        from engine.cli._app import app
        from engine.cli._order import register_commands

        register_commands()
        return app
    raise AttributeError(f"module 'engine.cli' has no attribute {name!r}")


__all__ = ["app", "main"]
