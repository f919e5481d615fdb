"""smartconnector's engine: drives integrations through install → settings → uninstall.

The names a user needs are here; the runner's are imported on first use, so that
``import installers`` (which uses the engine's models and errors) never imports the runner.
"""

from typing import TYPE_CHECKING, Any

from engine.client import ApiClient, RateLimit, RetryPolicy
from engine.errors import (
    ApiError,
    ApiUnavailable,
    AuthenticationFailed,
    BadInput,
    BadRequest,
    Conflict,
    ConnectorInvalid,
    DocumentInvalid,
    IllegalTransition,
    Interrupted,
    LeaseHeld,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    SmartConnectorError,
    StepFailed,
    Unprocessable,
    WaitingForUser,
)
from engine.models import ConnectorManifest, InstallStep, Integration, StepPolicy

if TYPE_CHECKING:
    from engine.journal import Journal
    from engine.machine import Mode, ModeMachine, Trigger
    from engine.runner import Engine, Plan

_LAZY = {
    "Engine": "engine.runner",
    "Plan": "engine.runner",
    "Journal": "engine.journal",
    "Mode": "engine.machine",
    "ModeMachine": "engine.machine",
    "Trigger": "engine.machine",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")


__all__ = [
    "ApiClient",
    "ApiError",
    "ApiUnavailable",
    "AuthenticationFailed",
    "BadInput",
    "BadRequest",
    "Conflict",
    "ConnectorInvalid",
    "ConnectorManifest",
    "DocumentInvalid",
    "Engine",
    "IllegalTransition",
    "InstallStep",
    "Integration",
    "Interrupted",
    "Journal",
    "LeaseHeld",
    "Mode",
    "ModeMachine",
    "NotFound",
    "PermissionDenied",
    "Plan",
    "RateLimit",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "SmartConnectorError",
    "StepFailed",
    "StepPolicy",
    "Trigger",
    "Unprocessable",
    "WaitingForUser",
]
