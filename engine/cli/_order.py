"""Which modules define the commands, in the order ``--help`` lists them."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import sys
import types
from typing import Any


def register_commands() -> None:
    """Import each command module once; Typer lists commands in the order they register."""
    from engine.cli import _runs, _fleet, _rollouts, _kit, _doctor, _check, _servers  # noqa: F401, I001 - the order is the help's
    from engine.cli._app import app

    _as_paragraphs(app)
    _no_type_after_flags()
    if _RichHelpWithoutMarkdown not in map(type, sys.meta_path):
        sys.meta_path.insert(0, _RichHelpWithoutMarkdown())


def _as_paragraphs(group: Any) -> None:
    """Docstrings are wrapped for the source; ``--help`` rewraps them to the terminal, so
    each paragraph becomes one line (Typer's Markdown mode would, at ~25 ms of imports)."""
    for command in group.registered_commands:
        text = command.help or inspect.getdoc(command.callback) or ""
        paragraphs = [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]
        command.help = "\n\n".join(paragraphs)
    for sub in group.registered_groups:
        _as_paragraphs(sub.typer_instance)


def _no_type_after_flags() -> None:
    """A flag takes no value, yet Typer's help shows ``<bool>`` after it: show nothing."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "flags_bare", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    display_type_rich.flags_bare = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


class _RichHelpWithoutMarkdown(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Typer's help module imports ``rich.markdown`` (markdown-it and pygments: ~25 ms of
    every ``--help`` and usage error) for a markup mode this CLI does not use. While it
    loads, ``rich.markdown`` is a stand-in whose ``Markdown`` imports the real one when
    called; the stand-in is gone once Typer's module is loaded, so anything else importing
    ``rich.markdown`` gets the real module."""

    _target = "typer.rich_utils"

    def find_spec(
        self, fullname: str, path: Any = None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self._target:
            return None
        sys.meta_path.remove(self)  # once: the real finders locate the module
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        self._loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        if "rich.markdown" in sys.modules:
            self._loader.exec_module(module)
            return
        stand_in = types.ModuleType("rich.markdown")
        stand_in.Markdown = _MarkdownOnDemand  # type: ignore[attr-defined]
        sys.modules["rich.markdown"] = stand_in
        try:
            self._loader.exec_module(module)
        finally:
            if sys.modules.get("rich.markdown") is stand_in:
                del sys.modules["rich.markdown"]


class _MarkdownOnDemand:
    """Stands for ``rich.markdown.Markdown`` in Typer's help module: makes the real one."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        from rich.markdown import Markdown

        return Markdown(*args, **kwargs)
