"""Property-based contract test: the platform profile honours its own OpenAPI document."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from sandbox import Store, create_app

_store = Store(Path(tempfile.mkdtemp(prefix="schemathesis-platform-")) / "sandbox.db")
_token = _store.create_token(["all.User"])
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_store, profile="platform"))


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_platform_profile_conforms_to_its_schema(case: schemathesis.Case) -> None:
    """Every generated request gets a declared status and body shape, never a 5xx; a PATCH
    the schema allows (replace on a documented field) is not refused."""
    case.call_and_validate(headers={"Authorization": f"Bearer {_token}"})
