"""Property-based contract test: the sandbox honours its own OpenAPI document (schemathesis)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from sandbox import Store, create_app

_store = Store(Path(tempfile.mkdtemp(prefix="schemathesis-")) / "sandbox.db")
_token = _store.create_token(["all.User"])
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_store))


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    """Every generated request gets a declared status, a declared body shape and never a 5xx."""
    case.call_and_validate(headers={"Authorization": f"Bearer {_token}"})
