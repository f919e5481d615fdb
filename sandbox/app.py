"""The sandbox API: integrator.io's integration routes over SQLite (SPEC §5).

Bodies are read as raw JSON rather than through request models, because the platform keeps
every field it is given exactly; the OpenAPI document still declares each body and every
status code a route can return.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandbox._patching import PatchError, apply_patch
from sandbox._policy import LeakyBucket, accepted_scopes, allows, required_scope, retry_after_header
from sandbox._store import Document, Store, hash_token

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


_ERROR_SCHEMA = {
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
_DOC_SCHEMA: dict[str, Any] = {"type": "object", "additionalProperties": True}


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
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
            "content": {"application/json": {"schema": _ERROR_SCHEMA}},
        }
        for s in (*statuses, 401, 403, 429)
    }
    return table


def _body_spec(*content_types: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {ct: {"schema": schema} for ct in content_types},
        }
    }


_PATCH_SCHEMA: dict[str, Any] = {
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
_PATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json-patch+json": {"schema": _PATCH_SCHEMA},
            "application/merge-patch+json": {"schema": _DOC_SCHEMA},
            "application/json": {"schema": {"anyOf": [_PATCH_SCHEMA, _DOC_SCHEMA]}},
        },
    }
}


def create_app(
    store: Store,
    *,
    rate: float = 300,
    burst: float = 1000,
    page_size: int = PAGE_SIZE,
) -> FastAPI:
    """The sandbox as an ASGI app over ``store``."""
    app = FastAPI(
        title="smartconnector sandbox",
        description="An integrator.io-compatible Integration API over SQLite.",
        version="1",
    )
    bucket = LeakyBucket(capacity=burst, rate=rate)
    _install_error_handlers(app)

    def authorize(request: Request, resource: str, *, item: bool) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiProblem(401, "unauthorized", "missing bearer token")
        scopes = store.token_scopes(token.strip())
        if scopes is None:
            raise ApiProblem(401, "unauthorized", "invalid bearer token")
        key = hash_token(token.strip())
        wait = bucket.admit(key)
        if wait is not None:
            raise ApiProblem(
                429,
                "rate_limited",
                f"rate limit of {rate:g}/s exceeded",
                {"Retry-After": retry_after_header(wait)},
            )
        needed = required_scope(resource, request.method, item=item)
        if not allows(scopes, needed, request.method):
            raise ApiProblem(
                403,
                "forbidden",
                f"token lacks scope {needed} (any of: {', '.join(accepted_scopes(needed))})",
            )
        return key

    async def read_json(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise ApiProblem(413, "payload_too_large", f"body over {MAX_BODY_BYTES} bytes")
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise ApiProblem(413, "payload_too_large", f"body over {MAX_BODY_BYTES} bytes")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiProblem(400, "malformed_request", f"body is not valid JSON: {exc}") from None

    async def read_document(request: Request) -> Document:
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ApiProblem(
                422, "invalid_document", f"expected a JSON object, got {type(body).__name__}"
            )
        return body

    def missing(resource: str, id: str) -> ApiProblem:
        return ApiProblem(404, "not_found", f"{resource[:-1]} {id} not found")

    def patch_document(resource: str, id: str, body: Any, content_type: str) -> Document:
        def change(doc: Document) -> Document:
            try:
                return apply_patch(doc, body, content_type)
            except PatchError as exc:
                raise ApiProblem(exc.status, exc.code, str(exc)) from None

        doc = store.update(resource, id, change)
        if doc is None:
            raise missing(resource, id)
        return doc

    for resource in RESOURCES:
        _add_resource_routes(
            app,
            resource,
            authorize,
            read_document,
            read_json,
            missing,
            patch_document,
            store,
            page_size,
        )
    _add_application_routes(app, authorize, read_json, missing, patch_document, store)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    return app


def _install_error_handlers(app: FastAPI) -> None:
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
            headers["Allow"] = ", ".join(_allowed_methods(app, request.url.path))
        return JSONResponse(error_body(code, message), exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def bad_params(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return JSONResponse(error_body("malformed_request", f"{where}: {first['msg']}"), 400)


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route serves at ``path`` (one route is registered per method)."""
    methods: set[str] = set()
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path_regex.match(path):
            methods |= route.methods or set()
    return sorted(methods)


Authorize = Callable[..., str]


def _add_resource_routes(
    app: FastAPI,
    resource: str,
    authorize: Authorize,
    read_document: Callable[[Request], Awaitable[Document]],
    read_json: Callable[[Request], Awaitable[Any]],
    missing: Callable[[str, str], ApiProblem],
    patch_document: Callable[[str, str, Any, str], Document],
    store: Store,
    page_size: int,
) -> None:
    base = f"{API_PREFIX}/{resource}"

    async def list_documents(
        request: Request,
        limit: int = Query(page_size, ge=1, le=page_size),
        after: int = Query(0, ge=0, le=2**63 - 1, description="cursor from the Link header"),
        connector_id: str | None = Query(None, alias="_connectorId"),
    ) -> Response:
        authorize(request, resource, item=False)
        filters = {k: v for k, v in request.query_params.items() if k not in ("limit", "after")}
        page, cursor = store.list(resource, after=after, limit=limit, filters=filters)
        headers = {}
        if cursor is not None:
            next_url = request.url.include_query_params(after=cursor, limit=limit)
            headers["Link"] = f'<{next_url}>; rel="next"'
        return JSONResponse(page, headers=headers)

    async def create_document(request: Request) -> Response:
        token_key = authorize(request, resource, item=False)
        body = await read_document(request)
        key = request.headers.get("idempotency-key")
        doc, created = store.create(resource, body, idempotency=(token_key, key) if key else None)
        return JSONResponse(doc, 201 if created else 200)

    async def get_document(request: Request, id: str) -> Response:
        authorize(request, resource, item=True)
        doc = store.get(resource, id)
        if doc is None:
            raise missing(resource, id)
        return JSONResponse(doc)

    async def replace_document(request: Request, id: str) -> Response:
        authorize(request, resource, item=True)
        body = await read_document(request)
        doc = store.update(resource, id, lambda _old: body)
        if doc is None:
            raise missing(resource, id)
        return JSONResponse(doc)

    async def patch(request: Request, id: str) -> Response:
        authorize(request, resource, item=True)
        body = await read_json(request)
        content_type = request.headers.get("content-type", "application/json")
        return JSONResponse(patch_document(resource, id, body, content_type))

    async def delete_document(request: Request, id: str) -> Response:
        authorize(request, resource, item=True)
        if not store.delete(resource, id):
            raise missing(resource, id)
        return Response(status_code=204)

    singular = resource[:-1]
    doc_body = _body_spec("application/json", schema=_DOC_SCHEMA)
    app.add_api_route(
        base,
        list_documents,
        methods=["GET"],
        operation_id=f"list_{resource}",
        responses=_responses(400),
        summary=f"List {resource}",
    )
    app.add_api_route(
        base,
        create_document,
        methods=["POST"],
        status_code=201,
        operation_id=f"create_{singular}",
        responses=_responses(400, 413, 422),
        openapi_extra=doc_body,
        summary=f"Create a {singular}",
    )
    item = f"{base}/{{id}}"
    app.add_api_route(
        item,
        get_document,
        methods=["GET"],
        operation_id=f"get_{singular}",
        responses=_responses(404),
        summary=f"Get a {singular}",
    )
    app.add_api_route(
        item,
        replace_document,
        methods=["PUT"],
        operation_id=f"replace_{singular}",
        responses=_responses(400, 404, 413, 422),
        openapi_extra=doc_body,
        summary=f"Replace a {singular}",
    )
    app.add_api_route(
        item,
        patch,
        methods=["PATCH"],
        operation_id=f"patch_{singular}",
        responses=_responses(400, 404, 409, 413, 422),
        openapi_extra=_PATCH_BODY,
        summary=f"Patch a {singular} (JSON Patch or merge patch)",
    )
    app.add_api_route(
        item,
        delete_document,
        methods=["DELETE"],
        status_code=204,
        operation_id=f"delete_{singular}",
        responses=_responses(404),
        summary=f"Delete a {singular}",
    )


def _add_application_routes(
    app: FastAPI,
    authorize: Authorize,
    read_json: Callable[[Request], Awaitable[Any]],
    missing: Callable[[str, str], ApiProblem],
    patch_document: Callable[[str, str, Any, str], Document],
    store: Store,
) -> None:
    path = f"{API_PREFIX}/applications/{{applicationId}}/integrations/{{integrationId}}"

    async def get_app_integration(
        request: Request, applicationId: str, integrationId: str
    ) -> Response:
        authorize(request, "integrations", item=True)
        doc = store.get("integrations", integrationId)
        if doc is None:
            raise missing("integrations", integrationId)
        return JSONResponse(doc)

    async def patch_app_integration(
        request: Request, applicationId: str, integrationId: str
    ) -> Response:
        authorize(request, "integrations", item=True)
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ApiProblem(400, "malformed_request", "expected an integration patch object")
        doc = patch_document("integrations", integrationId, body, "application/merge-patch+json")
        return JSONResponse(doc)

    async def delete_app_integration(
        request: Request, applicationId: str, integrationId: str
    ) -> Response:
        authorize(request, "integrations", item=True)
        if not store.delete("integrations", integrationId):
            raise missing("integrations", integrationId)
        return JSONResponse({"success": True})

    merge_body = _body_spec("application/json", "application/merge-patch+json", schema=_DOC_SCHEMA)
    app.add_api_route(
        path,
        get_app_integration,
        methods=["GET"],
        operation_id="application_get_integration",
        responses=_responses(400, 404),
    )
    app.add_api_route(
        path,
        patch_app_integration,
        methods=["PATCH"],
        operation_id="application_patch_integration",
        responses=_responses(400, 404, 413, 422),
        openapi_extra=merge_body,
    )
    app.add_api_route(
        path,
        delete_app_integration,
        methods=["DELETE"],
        operation_id="application_delete_integration",
        responses=_responses(400, 404),
    )


__all__ = ["RESOURCES", "ApiProblem", "create_app"]
