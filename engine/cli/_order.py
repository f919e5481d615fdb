"""Which modules define the commands, in the order ``--help`` lists them."""

from __future__ import annotations

import inspect
from typing import Any


def register_commands() -> None:
    """Import each command module once; Typer lists commands in the order they register."""
    from engine.cli._startup import lighten

    lighten()
    from engine.cli import _runs, _fleet, _rollouts, _kit, _doctor, _check, _servers  # noqa: F401, I001 - the order is the help's
    from engine.cli._app import app

    _as_paragraphs(app)


def _as_paragraphs(group: Any) -> None:
    """Docstrings are wrapped for the source; ``--help`` rewraps them to the terminal, so
    each paragraph becomes one line (Typer's Markdown mode would, at ~25 ms of imports)."""
    for command in group.registered_commands:
        text = command.help or inspect.getdoc(command.callback) or ""
        paragraphs = [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]
        command.help = "\n\n".join(paragraphs)
    for sub in group.registered_groups:
        _as_paragraphs(sub.typer_instance)
