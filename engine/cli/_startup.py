"""What a command leaves out at start-up: parts of its libraries that no command here uses,
and Typer's checks of values that need none. Each was measured (benchmarks/RESULTS.md).

- While a library loads, modules it imports only for features this CLI does not use are
  missing (the library has a fallback) or stand-ins that import the real module when used:
  Typer's help module takes ``rich.markdown`` (markdown-it, pygments) for a markup mode
  this CLI does not use, and ``rich.traceback`` (pygments) for pretty exceptions it turns
  off; httpx imports its own command line (click, rich); structlog imports rich for
  tracebacks that the engine's logs never ask for (``format_exc_info`` renders each
  exception as plain text first).
- Typer checks every value through a pydantic ``TypeAdapter`` it builds for the parameter,
  which alone imports pydantic (~60 ms of reading one document). A value that is already
  what the parameter holds is taken as it is: none given, the parameter's own default, text
  for a text parameter; a path goes through Typer's own path checks. Anything else (a number
  typed on the command line, a choice) is checked by Typer as before.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: While the module named first loads, each module named after it is missing (``None``)
#: or the stand-in that the function makes. A module imported already is left as it is.
LEFT_OUT: dict[str, dict[str, Callable[[], types.ModuleType] | None]] = {
    "typer.rich_utils": {
        "rich.markdown": lambda: _stand_in("rich.markdown", "Markdown"),
        "rich.traceback": lambda: _stand_in("rich.traceback", "Traceback"),
    },
    "httpx": {"httpx._main": None},
    "structlog": {"rich": None},
}


def lighten() -> None:
    """Install what this module describes, once per process."""
    if any(isinstance(finder, _LeavingOut) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, _LeavingOut())
    _no_type_after_flags()
    _plain_values_as_they_are()


class _LeavingOut:
    """A meta path finder for the libraries of :data:`LEFT_OUT`: it finds each where the
    import system would, and loads it with what it leaves out in place."""

    def find_spec(
        self, fullname: str, path: Any = None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in LEFT_OUT:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _Without(spec.loader, LEFT_OUT[fullname])  # type: ignore[assignment]
        return spec


class _Without:
    """A module's loader that executes it with some modules missing or stood in for, then
    puts ``sys.modules`` back as it was, so a later import of them gets the real ones."""

    def __init__(
        self, loader: Any, left_out: dict[str, Callable[[], types.ModuleType] | None]
    ) -> None:
        self._loader = loader
        self._left_out = left_out

    def __getattr__(self, name: str) -> Any:  # resources, source: as the real loader
        return getattr(self._loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: types.ModuleType) -> None:
        placed = {}
        for name, make in self._left_out.items():
            if name not in sys.modules:
                placed[name] = sys.modules[name] = make() if make else None  # type: ignore[assignment]
        try:
            self._loader.exec_module(module)
        finally:
            for name, stand_in in placed.items():
                if sys.modules.get(name, stand_in) is stand_in:
                    del sys.modules[name]


def _stand_in(module: str, name: str) -> types.ModuleType:
    """A module whose ``name`` is a class standing for ``module.name``: calling it, or any
    attribute of it, imports the real one (a class, so annotations such as ``Markdown |
    Text`` still work)."""

    def real() -> Any:
        return getattr(importlib.import_module(module), name)

    class OnDemand(type):
        def __getattr__(cls, attribute: str) -> Any:
            return getattr(real(), attribute)

    stand_in = types.ModuleType(module)
    setattr(stand_in, name, OnDemand(name, (), {"__new__": lambda cls, *a, **k: real()(*a, **k)}))
    return stand_in


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


def _plain_values_as_they_are() -> None:
    """Typer's parameters check a value that needs no checking without pydantic (above)."""
    try:  # Typer's own modules, as of 0.29: another Typer checks every value as it will
        from typer import core
        from typer._coercion import RuntimeParam, build_runtime_param
        from typer._param_types import coerce_cli_path
    except ImportError:
        return
    if not hasattr(core._TyperParameter, "get_runtime_param"):
        return

    class PlainFirst(RuntimeParam):
        """Takes a plain value as it is; hands anything else to the parameter's own check,
        built (and kept) only then."""

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            annotation, info = self.annotation, self.parameter_info
            unparsed = info.parser is None
            if unparsed and annotation is Path and info.path_type is None:
                if isinstance(value, str | Path):  # checked as Typer checks a path
                    return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)
            elif unparsed and (
                value is param.default or (annotation is str and isinstance(value, str))
            ):
                return value
            param._runtime_param = build_runtime_param(param.type_descriptor)
            return param._runtime_param._coerce_value(value, param=param, ctx=ctx)

    def get_runtime_param(self: Any) -> RuntimeParam:
        if self._runtime_param is None:
            described = self.type_descriptor
            plain = described.file_annotation is None and not (self.multiple or self.nargs != 1)
            self._runtime_param = (
                PlainFirst(described.parameter_info, described.annotation)
                if plain
                else build_runtime_param(described)
            )
        return self._runtime_param  # type: ignore[no-any-return]

    core._TyperParameter.get_runtime_param = get_runtime_param  # type: ignore[method-assign]
