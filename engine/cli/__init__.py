"""The ``smartconnector`` command."""

import os

from engine.cli import _fleet, _runs, _servers  # noqa: F401 - each registers its commands
from engine.cli._app import app


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


__all__ = ["app", "main"]
