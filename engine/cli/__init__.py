"""The ``smartconnector`` command."""

import gc
import os
import sys

from engine.cli import _fleet, _runs, _servers  # noqa: F401 - each registers its commands
from engine.cli._app import app


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        app()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if "temporalio" in sys.modules:
            _exit_without_teardown(code)
        raise
    finally:
        # The interpreter ends with a full collection over every object alive, most of them
        # made by imports (~30 ms of every command); frozen, they are skipped. What is left
        # at exit needs no collecting: the process is about to give all of it back.
        gc.freeze()


def _exit_without_teardown(code: int) -> None:
    """Leave without interpreter teardown, which the Temporal client's runtime threads can
    crash (temporalio/sdk-python#300: a fatal PyGILState_Release while finalizing)."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:  # keep a measuring run's data, which teardown would have written
        import coverage

        current = coverage.Coverage.current()
        if current is not None:
            current.stop()
            current.save()
    except ImportError:
        pass
    os._exit(code)


__all__ = ["app", "main"]
