"""Registries of connector functions: instances, never module globals filled by imports."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from installers._types import StepContext, StepResult

FunctionResult = StepResult | dict[str, Any] | None
ConnectorFunction = Callable[[StepContext], FunctionResult | Awaitable[FunctionResult]]
F = TypeVar("F", bound=ConnectorFunction)


class DuplicateFunction(ValueError):
    """A second function registered under a name already taken."""


@dataclass(frozen=True)
class RegisteredFunction:
    """A function and where it was defined (``file:line``)."""

    name: str
    func: ConnectorFunction
    origin: str
    #: Runs on an extension server, which keeps its own timeout.
    remote: bool = False

    @property
    def is_async(self) -> bool:
        call = vars(type(self.func)).get("__call__")  # callable objects, e.g. fakes
        return inspect.iscoroutinefunction(self.func) or inspect.iscoroutinefunction(call)


def _origin(func: Callable[..., Any]) -> str:
    code = getattr(inspect.unwrap(func), "__code__", None)
    if code is not None:  # a plain function: no need to read and tokenize its file
        return f"{code.co_filename}:{code.co_firstlineno}"
    try:
        file = inspect.getsourcefile(func) or "?"
        line = inspect.getsourcelines(func)[1]
    except (OSError, TypeError):
        return getattr(func, "__qualname__", repr(func))
    return f"{file}:{line}"


class Registry:
    """Named connector functions.

    >>> registry = Registry("demo")
    >>> @registry.function("verifyConnection")
    ... def verify(ctx): return None
    >>> "verifyConnection" in registry
    True
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._functions: dict[str, RegisteredFunction] = {}

    def function(self, name: str | None = None) -> Callable[[F], F]:
        """Register the decorated sync or async function under ``name`` (default: its own)."""

        def register(func: F) -> F:
            self.add(name or func.__name__, func)
            return func

        return register

    def add(
        self,
        name: str,
        func: ConnectorFunction,
        *,
        origin: str | None = None,
        remote: bool = False,
    ) -> None:
        """Register ``func`` as ``name``; ``origin`` says where it is defined (default: file)."""
        if not name:
            raise ValueError(f"registry {self.name!r}: a function name must not be empty")
        new = RegisteredFunction(name, func, origin or _origin(func), remote)
        if name in self._functions:
            old = self._functions[name]
            raise DuplicateFunction(
                f"registry {self.name!r}: function {name!r} defined twice:"
                f" at {old.origin} and at {new.origin}"
            )
        self._functions[name] = new

    def get(self, name: str) -> RegisteredFunction | None:
        return self._functions.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._functions

    def __iter__(self) -> Iterator[RegisteredFunction]:
        return iter(self._functions.values())

    def __len__(self) -> int:
        return len(self._functions)

    def __repr__(self) -> str:
        return f"Registry({self.name!r}, {len(self)} functions)"
