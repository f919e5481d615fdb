"""smartconnector's engine: drives integrations through install → settings → uninstall.

Every name is imported on first use, so that ``smartconnector --help`` and
``import installers`` (which uses the engine's models and errors) stay light.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.client import (
        ApiClient,
        RateLimit,
        RetryPolicy,
    )
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
    from engine.journal import (
        Journal,
    )
    from engine.machine import (
        Mode,
        ModeMachine,
        Trigger,
    )
    from engine.models import (
        ConnectorManifest,
        InstallStep,
        Integration,
        StepPolicy,
    )
    from engine.plan import (
        Plan,
    )
    from engine.runner import (
        Engine,
    )

_LAZY = {
    "ApiClient": "engine.client",
    "RateLimit": "engine.client",
    "RetryPolicy": "engine.client",
    "ApiError": "engine.errors",
    "ApiUnavailable": "engine.errors",
    "AuthenticationFailed": "engine.errors",
    "BadInput": "engine.errors",
    "BadRequest": "engine.errors",
    "Conflict": "engine.errors",
    "ConnectorInvalid": "engine.errors",
    "DocumentInvalid": "engine.errors",
    "IllegalTransition": "engine.errors",
    "Interrupted": "engine.errors",
    "LeaseHeld": "engine.errors",
    "NotFound": "engine.errors",
    "PermissionDenied": "engine.errors",
    "RateLimited": "engine.errors",
    "ServerError": "engine.errors",
    "SmartConnectorError": "engine.errors",
    "StepFailed": "engine.errors",
    "Unprocessable": "engine.errors",
    "WaitingForUser": "engine.errors",
    "ConnectorManifest": "engine.models",
    "InstallStep": "engine.models",
    "Integration": "engine.models",
    "StepPolicy": "engine.models",
    "Journal": "engine.journal",
    "Mode": "engine.machine",
    "ModeMachine": "engine.machine",
    "Trigger": "engine.machine",
    "Engine": "engine.runner",
    "Plan": "engine.plan",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
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
