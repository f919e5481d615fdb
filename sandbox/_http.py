"""The sandbox's HTTP shapes: ASGI types, error answers, and what its OpenAPI document
declares."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.responses import JSONResponse, Response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

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


def problem_response(exc: ApiProblem) -> Response:
    """The answer to an :class:`ApiProblem`, wherever it was raised."""
    return JSONResponse(error_body(exc.code, exc.message), exc.status, headers=exc.headers)
