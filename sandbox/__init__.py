"""An integrator.io-compatible API server (FastAPI + SQLite): the engine's embedded default."""

from sandbox._faults import AccessLog, FaultInjector, FaultSpecError, parse_faults
from sandbox._policy import KNOWN_SCOPES
from sandbox._store import Store
from sandbox.app import RESOURCES, create_app

__all__ = [
    "KNOWN_SCOPES",
    "RESOURCES",
    "AccessLog",
    "FaultInjector",
    "FaultSpecError",
    "Store",
    "create_app",
    "parse_faults",
]
