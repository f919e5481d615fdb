"""Connector functions: the registry, what a function receives and returns, loading, fakes."""

from installers._loading import Connector, find_installed, load_connector
from installers._registry import DuplicateFunction, RegisteredFunction, Registry
from installers._types import Field, RetryableError, StepContext, StepResult, UserActionRequired

__all__ = [
    "Connector",
    "DuplicateFunction",
    "Field",
    "RegisteredFunction",
    "Registry",
    "RetryableError",
    "StepContext",
    "StepResult",
    "UserActionRequired",
    "find_installed",
    "load_connector",
]
