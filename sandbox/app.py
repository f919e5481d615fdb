"""The sandbox API: integrator.io's integration routes over SQLite (SPEC §5).

Bodies are read as raw JSON rather than through request models, because the default profile
keeps every field it is given exactly; the OpenAPI document still declares each body and every
status code a route can return. ``profile`` picks what is served (see :mod:`sandbox._profiles`):
``default`` (SPEC §5), ``platform`` (only what the platform's docs promise, SPEC §5a) or
``put-only`` (``platform`` with no PATCH of integrations).
"""

from __future__ import annotations

from fastapi import FastAPI

from sandbox._http import PAGE_SIZE, RESOURCES, ApiProblem, install_error_handlers
from sandbox._platform import writes_for
from sandbox._policy import LeakyBucket
from sandbox._profiles import PROFILES, profile_named
from sandbox._routes import Handling, add_application_routes, add_resource_routes
from sandbox._state import add_state_routes
from sandbox._store import Store


def create_app(
    store: Store,
    *,
    rate: float = 300,
    burst: float = 1000,
    page_size: int = PAGE_SIZE,
    profile: str = PROFILES[0],
) -> FastAPI:
    """The sandbox as an ASGI app over ``store``, serving ``profile`` (one of :data:`PROFILES`;
    any other name is a :class:`ValueError` naming them)."""
    served = profile_named(profile)
    app = FastAPI(
        title="smartconnector sandbox",
        description="An integrator.io-compatible Integration API over SQLite.",
        version="1",
    )
    install_error_handlers(app)
    api = Handling(store, LeakyBucket(capacity=burst, rate=rate), page_size)
    # Routes are matched in order, so the busiest come first: documents, then the rest.
    for resource in RESOURCES:
        add_resource_routes(app, api, resource, writes_for(api, resource, served))
    add_application_routes(app, api, served.integration_fields)
    add_state_routes(app, api, None)
    for resource in RESOURCES:
        add_state_routes(app, api, resource)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    return app


__all__ = ["PROFILES", "RESOURCES", "ApiProblem", "create_app"]
