"""The sandbox API: integrator.io's integration routes over SQLite (SPEC §5).

Bodies are read as raw JSON rather than through request models, because the default profile
keeps every field it is given exactly; the OpenAPI document still declares each body and every
status code a route can return. ``profile`` picks what is served (see :mod:`sandbox._profiles`):
``default`` (SPEC §5), ``platform`` (only what the platform's docs promise, SPEC §5a) or
``put-only`` (``platform`` with no PATCH of integrations).

The routes are served by a plain router; FastAPI's app over the same routes is built when
something only it serves is asked for (see :mod:`sandbox._router`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sandbox._applications import application_routes
from sandbox._http import PAGE_SIZE, RESOURCES, ApiProblem
from sandbox._platform import writes_for
from sandbox._policy import LeakyBucket
from sandbox._profiles import PROFILES, profile_named
from sandbox._router import Route, SandboxApp
from sandbox._routes import Handling, resource_routes
from sandbox._state import state_routes
from sandbox._store import Store

if TYPE_CHECKING:
    from fastapi import FastAPI


def create_app(
    store: Store,
    *,
    rate: float = 300,
    burst: float = 1000,
    page_size: int = PAGE_SIZE,
    profile: str = PROFILES[0],
) -> SandboxApp:
    """The sandbox as an ASGI app over ``store``, serving ``profile`` (one of :data:`PROFILES`;
    any other name is a :class:`ValueError` naming them)."""
    served = profile_named(profile)
    api = Handling(store, LeakyBucket(capacity=burst, rate=rate), page_size)
    # The OpenAPI document lists the routes in this order: documents, then the rest.
    routes: list[Route] = []
    for resource in RESOURCES:
        routes += resource_routes(api, resource, writes_for(api, resource, served))
    routes += application_routes(api, served.integration_fields)
    routes += state_routes(api, None)
    for resource in RESOURCES:
        routes += state_routes(api, resource)
    return SandboxApp(routes, _framework)


def _framework(routes: Sequence[Route]) -> FastAPI:
    from sandbox._framework import build_framework

    return build_framework(routes)


__all__ = ["PROFILES", "RESOURCES", "ApiProblem", "SandboxApp", "create_app"]
