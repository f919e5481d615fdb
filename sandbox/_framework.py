"""FastAPI's app over the sandbox's routes: the OpenAPI document, docs, and what the router
leaves to it (unknown paths, other methods, query parameters to check)."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox._http import ApiProblem, error_body, problem_response
from sandbox._router import Route


def build_framework(routes: Sequence[Route]) -> FastAPI:
    """FastAPI's app serving ``routes`` in order, then ``/healthz``."""
    app = FastAPI(
        title="smartconnector sandbox",
        description="An integrator.io-compatible Integration API over SQLite.",
        version="1",
    )
    install_error_handlers(app)
    for route in routes:
        endpoint = route.declared() if route.declared is not None else route.endpoint
        app.add_api_route(route.path, endpoint, methods=[route.method], **route.options)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    return app


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiProblem)
    async def problem(request: Request, exc: ApiProblem) -> Response:
        return problem_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, "error")
        message = f"{request.method} {request.url.path}: {exc.detail}"
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(app, request.url.path))
        return JSONResponse(error_body(code, message), exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def bad_params(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return JSONResponse(error_body("malformed_request", f"{where}: {first['msg']}"), 400)


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route serves at ``path`` (one route is registered per method)."""
    methods: set[str] = set()
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path_regex.match(path):
            methods |= route.methods or set()
    return sorted(methods)
