"""The sandbox's HTTP shapes: error answers, and what its OpenAPI document declares."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

RESOURCES = ("integrations", "connections", "exports", "imports", "flows")
MAX_BODY_BYTES = 5 * 1024 * 1024
PAGE_SIZE = 1000
API_PREFIX = "/v1"


class ApiProblem(Exception):
    """An error answer: status, ``errors[]`` code and message, extra headers."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message}]}


ERROR_SCHEMA = {
    "type": "object",
    "required": ["errors"],
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            },
        }
    },
}
DOC_SCHEMA: dict[str, Any] = {"type": "object", "additionalProperties": True}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    names = {
        400: "Malformed request",
        401: "Missing or bad token",
        403: "Token lacks the scope",
        404: "Not found",
        409: "Conflict (a JSON Patch test failed)",
        413: "Body over 5 MB",
        422: "Invalid document",
        429: "Rate limited; see Retry-After",
    }
    table: dict[int | str, dict[str, Any]] = {
        s: {
            "description": names[s],
            "content": {"application/json": {"schema": ERROR_SCHEMA}},
        }
        for s in (*statuses, 401, 403, 429)
    }
    return table


def body_spec(*content_types: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {ct: {"schema": schema} for ct in content_types},
        }
    }


PATCH_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["op", "path"],
        "properties": {
            "op": {"enum": ["add", "remove", "replace", "move", "copy", "test"]},
            "path": {"type": "string"},
            "from": {"type": "string"},
            "value": {},
        },
    },
}
PATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json-patch+json": {"schema": PATCH_SCHEMA},
            "application/merge-patch+json": {"schema": DOC_SCHEMA},
            "application/json": {"schema": {"anyOf": [PATCH_SCHEMA, DOC_SCHEMA]}},
        },
    }
}


def replace_patch_body(fields: frozenset[str]) -> dict[str, Any]:
    """The platform profile's ``PATCH /integrations/{_id}``: ``replace`` operations only, on
    ``fields`` or paths under them."""
    # a JSON Pointer (RFC 6901: "~" only as ~0 or ~1) whose first token is one of ``fields``
    pointer = f"^/({'|'.join(sorted(fields))})(/([^~]|~[01])*)?$"
    path = {"type": "string", "pattern": pointer}
    operation = {
        "type": "object",
        "required": ["op", "path", "value"],
        "properties": {"op": {"enum": ["replace"]}, "path": path, "value": {}},
    }
    schema = {"type": "array", "items": operation}
    return body_spec("application/json-patch+json", "application/json", schema=schema)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiProblem)
    async def problem(request: Request, exc: ApiProblem) -> Response:
        return JSONResponse(error_body(exc.code, exc.message), exc.status, headers=exc.headers)

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
