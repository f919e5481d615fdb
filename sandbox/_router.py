"""The sandbox as an ASGI app: a plain router for its routes, FastAPI's app for the rest.

Every route is one :class:`Route`: the same handler serves a request whether the router or
FastAPI's app matched it, so a behaviour is written once. The router answers what a route
serves; FastAPI's app (built on first use, as importing it costs more than a command that
reads one document) answers everything else: its OpenAPI document and docs, ``/healthz``,
unknown paths (404), methods a path does not serve (405) and query parameters that need
checking (400). No two routes match the same method and path, so which of the two matched a
request never changes the answer.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from sandbox._http import ApiProblem, Receive, Scope, Send, problem_response

if TYPE_CHECKING:
    from fastapi import FastAPI

Endpoint = Callable[..., Awaitable[Response]]
#: How the router calls a route's handler: ``None`` leaves the request to FastAPI's app.
Direct = Callable[[Request, dict[str, str]], Awaitable[Response | None]]


@dataclass(frozen=True)
class Route:
    """One method on one path: its handler, and what the OpenAPI document says of it."""

    path: str
    method: str
    #: Called with the request and the path's parameters by name.
    endpoint: Endpoint
    #: ``add_api_route``'s keyword arguments: what the OpenAPI document declares.
    options: dict[str, Any] = field(default_factory=dict)
    #: What FastAPI's app calls instead of ``endpoint``, when it must declare query
    #: parameters for FastAPI to check (made when that app is built).
    declared: Callable[[], Endpoint] | None = None
    #: How the router calls the handler, when not with the path's parameters alone.
    direct: Direct | None = None

    def pattern(self) -> re.Pattern[str]:
        """The path as a regular expression; a parameter is one segment, as in Starlette."""
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path) + "$")

    async def call(self, request: Request, params: dict[str, str]) -> Response | None:
        if self.direct is not None:
            return await self.direct(request, params)
        return await self.endpoint(request, **params)


class SandboxApp:
    """The sandbox's ASGI app over ``routes``; ``framework`` builds FastAPI's app over them."""

    def __init__(
        self, routes: Sequence[Route], framework: Callable[[Sequence[Route]], FastAPI]
    ) -> None:
        self.routes = tuple(routes)
        self._build = framework
        self._framework: FastAPI | None = None
        self._table: dict[str, list[tuple[re.Pattern[str], Route]]] = {}
        for route in self.routes:
            self._table.setdefault(route.method, []).append((route.pattern(), route))

    @property
    def framework(self) -> FastAPI:
        """FastAPI's app over the same routes (built on first use)."""
        if self._framework is None:
            self._framework = self._build(self.routes)
        return self._framework

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI document, as FastAPI's app serves it at ``/openapi.json``."""
        return self.framework.openapi()

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for pattern, route in self._table.get(method, ()):
            found = pattern.match(path)
            if found is not None:
                return route, found.groupdict()
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = None
        if scope["type"] == "http" and not scope.get("root_path"):
            found = self.match(scope["method"], scope["path"])
        if found is not None:
            route, params = found
            try:
                response = await route.call(Request(scope, receive, send), params)
            except ApiProblem as exc:
                response = problem_response(exc)
            if response is not None:
                await response(scope, receive, send)
                return
        await self.framework(scope, receive, send)
