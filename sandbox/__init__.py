"""An integrator.io-compatible API server (FastAPI + SQLite): the engine's embedded default."""

from sandbox._faults import AccessLog, FaultInjector, FaultSpecError, parse_faults
from sandbox._policy import KNOWN_SCOPES
from sandbox._profiles import INTEGRATION_FIELDS, INTEGRATION_PATCH_FIELDS, PROFILES
from sandbox._store import Store
from sandbox.app import RESOURCES, create_app

__all__ = [
    "INTEGRATION_FIELDS",
    "INTEGRATION_PATCH_FIELDS",
    "KNOWN_SCOPES",
    "PROFILES",
    "RESOURCES",
    "AccessLog",
    "FaultInjector",
    "FaultSpecError",
    "Store",
    "create_app",
    "parse_faults",
]
