"""smartconnector's engine: drives integrations through install → settings → uninstall.

Every name is imported on first use, so that ``smartconnector --help`` and
``import installers`` (which uses the engine's models and errors) stay light. The
``TYPE_CHECKING`` imports are for type checkers only; a test keeps them and :data:`_LAZY`
the same.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.client import ApiClient as ApiClient
    from engine.drivers.runner import (
        Engine as Engine,
    )
    from engine.errors import (
        ApiError as ApiError,
        ApiUnavailable as ApiUnavailable,
        AuthenticationFailed as AuthenticationFailed,
        BadInput as BadInput,
        BadRequest as BadRequest,
        Conflict as Conflict,
        ConnectorInvalid as ConnectorInvalid,
        DocumentInvalid as DocumentInvalid,
        IllegalTransition as IllegalTransition,
        Interrupted as Interrupted,
        LeaseHeld as LeaseHeld,
        NotFound as NotFound,
        PermissionDenied as PermissionDenied,
        RateLimited as RateLimited,
        ServerError as ServerError,
        SmartConnectorError as SmartConnectorError,
        StepFailed as StepFailed,
        Unprocessable as Unprocessable,
        WaitingForUser as WaitingForUser,
    )
    from engine.models import (
        ConnectorManifest as ConnectorManifest,
        InstallStep as InstallStep,
        Integration as Integration,
        Mode as Mode,
        StepPolicy as StepPolicy,
    )
    from engine.policy import RateLimit as RateLimit, RetryPolicy as RetryPolicy
    from engine.run.journal import (
        Journal as Journal,
    )
    from engine.run.machine import (
        ModeMachine as ModeMachine,
        Trigger as Trigger,
    )
    from engine.run.plan import (
        Plan as Plan,
    )

#: Each public name and the module it lives in; ``__all__`` and the imports below follow.
_LAZY = {
    "ApiClient": "engine.client",
    "ApiError": "engine.errors",
    "ApiUnavailable": "engine.errors",
    "AuthenticationFailed": "engine.errors",
    "BadInput": "engine.errors",
    "BadRequest": "engine.errors",
    "Conflict": "engine.errors",
    "ConnectorInvalid": "engine.errors",
    "ConnectorManifest": "engine.models",
    "DocumentInvalid": "engine.errors",
    "Engine": "engine.drivers.runner",
    "IllegalTransition": "engine.errors",
    "InstallStep": "engine.models",
    "Integration": "engine.models",
    "Interrupted": "engine.errors",
    "Journal": "engine.run.journal",
    "LeaseHeld": "engine.errors",
    "Mode": "engine.models",
    "ModeMachine": "engine.run.machine",
    "NotFound": "engine.errors",
    "PermissionDenied": "engine.errors",
    "Plan": "engine.run.plan",
    "RateLimit": "engine.policy",
    "RateLimited": "engine.errors",
    "RetryPolicy": "engine.policy",
    "ServerError": "engine.errors",
    "SmartConnectorError": "engine.errors",
    "StepFailed": "engine.errors",
    "StepPolicy": "engine.models",
    "Trigger": "engine.run.machine",
    "Unprocessable": "engine.errors",
    "WaitingForUser": "engine.errors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")


__all__ = sorted(_LAZY)
