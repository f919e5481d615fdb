"""The sandbox's routes and the request handling they share (auth, rate limit, bodies)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox._http import (
    API_PREFIX,
    DOC_SCHEMA,
    MAX_BODY_BYTES,
    PATCH_BODY,
    ApiProblem,
    body_spec,
    responses,
)
from sandbox._patching import PatchError, apply_patch
from sandbox._policy import LeakyBucket, accepted_scopes, allows, required_scope, retry_after_header
from sandbox._router import Direct, Endpoint, Route
from sandbox._store import Document, Store, hash_token


@dataclass
class Handling:
    """What every route does before its own work: authenticate, rate-limit, read the body."""

    store: Store
    bucket: LeakyBucket
    page_size: int

    def authorize(self, request: Request, resource: str, *, item: bool) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiProblem(401, "unauthorized", "missing bearer token")
        scopes = self.store.token_scopes(token.strip())
        if scopes is None:
            raise ApiProblem(401, "unauthorized", "invalid bearer token")
        key = hash_token(token.strip())
        wait = self.bucket.admit(key)
        if wait is not None:
            raise ApiProblem(
                429,
                "rate_limited",
                f"rate limit of {self.bucket.rate:g}/s exceeded",
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

    async def read_json(self, request: Request) -> Any:
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

    async def read_document(self, request: Request) -> Document:
        body = await self.read_json(request)
        if not isinstance(body, dict):
            raise ApiProblem(
                422, "invalid_document", f"expected a JSON object, got {type(body).__name__}"
            )
        return body

    def fetch(self, resource: str, id: str) -> Document:
        """The stored document, or a 404."""
        doc = self.store.get(resource, id)
        if doc is None:
            raise self.missing(resource, id)
        return doc

    def remove(self, resource: str, id: str) -> None:
        """Delete the document, or a 404."""
        if not self.store.delete(resource, id):
            raise self.missing(resource, id)

    def missing(self, resource: str, id: str) -> ApiProblem:
        return ApiProblem(404, "not_found", f"{resource[:-1]} {id} not found")

    def patch_document(self, resource: str, id: str, body: Any, content_type: str) -> Document:
        def change(doc: Document) -> Document:
            try:
                return apply_patch(doc, body, content_type, in_place=True)
            except PatchError as exc:
                raise ApiProblem(exc.status, exc.code, str(exc)) from None

        doc = self.store.update(resource, id, change)
        if doc is None:
            raise self.missing(resource, id)
        return doc


@dataclass(frozen=True)
class Writes:
    """The handlers that write one resource's documents, chosen once, when the app is built."""

    create: Endpoint
    replace: Endpoint
    #: ``None``: no PATCH route, so a PATCH is answered 405 naming the methods there are.
    patch: Endpoint | None
    #: What the OpenAPI document declares for the PATCH route.
    patch_body: dict[str, Any] = field(default_factory=lambda: PATCH_BODY)
    patch_status: int = 200
    patch_errors: tuple[int, ...] = (400, 404, 409, 413, 422)
    patch_summary: str = "(JSON Patch or merge patch)"


def default_writes(api: Handling, resource: str) -> Writes:
    """POST, PUT and PATCH as SPEC §5 has them: every field kept, Idempotency-Key honoured."""
    store = api.store

    async def create_document(request: Request) -> Response:
        token_key = api.authorize(request, resource, item=False)
        body = await api.read_document(request)
        key = request.headers.get("idempotency-key")
        doc, created = store.create(resource, body, idempotency=(token_key, key) if key else None)
        return JSONResponse(doc, 201 if created else 200)

    async def replace_document(request: Request, id: str) -> Response:
        api.authorize(request, resource, item=True)
        body = await api.read_document(request)
        doc = store.update(resource, id, lambda _old: body)
        if doc is None:
            raise api.missing(resource, id)
        return JSONResponse(doc)

    async def patch(request: Request, id: str) -> Response:
        api.authorize(request, resource, item=True)
        body = await api.read_json(request)
        content_type = request.headers.get("content-type", "application/json")
        return JSONResponse(api.patch_document(resource, id, body, content_type))

    return Writes(create_document, replace_document, patch)


def resource_routes(api: Handling, resource: str, writes: Writes) -> list[Route]:
    """GET/POST on the collection, GET/PUT/PATCH/DELETE on each document."""
    store = api.store
    base = f"{API_PREFIX}/{resource}"

    async def list_documents(request: Request, limit: int, after: int) -> Response:
        api.authorize(request, resource, item=False)
        filters = {k: v for k, v in request.query_params.items() if k not in ("limit", "after")}
        page, cursor = store.list(resource, after=after, limit=limit, filters=filters)
        headers = {}
        if cursor is not None:
            next_url = request.url.include_query_params(after=cursor, limit=limit)
            headers["Link"] = f'<{next_url}>; rel="next"'
        return JSONResponse(page, headers=headers)

    async def get_document(request: Request, id: str) -> Response:
        api.authorize(request, resource, item=True)
        return JSONResponse(api.fetch(resource, id))

    async def delete_document(request: Request, id: str) -> Response:
        api.authorize(request, resource, item=True)
        api.remove(resource, id)
        return Response(status_code=204)

    collection = Route(
        base,
        "GET",
        list_documents,
        dict(operation_id=f"list_{resource}", responses=responses(400), summary=f"List {resource}"),
        declared=lambda: declared_list(list_documents, api.page_size),
        direct=plain_list(list_documents, api.page_size),
    )
    return [collection, *_document_routes(resource, writes, get_document, delete_document)]


def _document_routes(
    resource: str, writes: Writes, get_document: Endpoint, delete_document: Endpoint
) -> list[Route]:
    """POST on the collection, then GET/PUT/PATCH/DELETE on each document."""
    base, singular = f"{API_PREFIX}/{resource}", resource[:-1]
    item = f"{base}/{{id}}"
    routes = [
        _create_route(base, singular, writes.create),
        _get_route(item, singular, get_document),
        _replace_route(item, singular, writes.replace),
    ]
    if writes.patch is not None:
        routes.append(_patch_route(item, singular, writes.patch, writes))
    routes.append(_delete_route(item, singular, delete_document))
    return routes


def _create_route(base: str, singular: str, create: Endpoint) -> Route:
    return Route(
        base,
        "POST",
        create,
        dict(
            status_code=201,
            operation_id=f"create_{singular}",
            responses=responses(400, 413, 422),
            openapi_extra=body_spec("application/json", schema=DOC_SCHEMA),
            summary=f"Create a {singular}",
        ),
    )


def _get_route(item: str, singular: str, get_document: Endpoint) -> Route:
    return Route(
        item,
        "GET",
        get_document,
        dict(
            operation_id=f"get_{singular}",
            responses=responses(404),
            summary=f"Get a {singular}",
        ),
    )


def _replace_route(item: str, singular: str, replace: Endpoint) -> Route:
    return Route(
        item,
        "PUT",
        replace,
        dict(
            operation_id=f"replace_{singular}",
            responses=responses(400, 404, 413, 422),
            openapi_extra=body_spec("application/json", schema=DOC_SCHEMA),
            summary=f"Replace a {singular}",
        ),
    )


def _patch_route(item: str, singular: str, patch: Endpoint, writes: Writes) -> Route:
    """The PATCH route as ``writes`` declares it (its body, status and errors)."""
    return Route(
        item,
        "PATCH",
        patch,
        dict(
            status_code=writes.patch_status,
            operation_id=f"patch_{singular}",
            responses=responses(*writes.patch_errors),
            openapi_extra=writes.patch_body,
            summary=f"Patch a {singular} {writes.patch_summary}",
        ),
    )


def _delete_route(item: str, singular: str, delete_document: Endpoint) -> Route:
    return Route(
        item,
        "DELETE",
        delete_document,
        dict(
            status_code=204,
            operation_id=f"delete_{singular}",
            responses=responses(404),
            summary=f"Delete a {singular}",
        ),
    )


_DIGITS = re.compile(r"[0-9]{1,19}")


def plain_list(list_page: Endpoint, page_size: int) -> Direct:
    """The list as the router calls it: with ``limit`` and ``after`` as plain digits in
    range, or absent; any other value is left to FastAPI's app, which answers it 400."""

    async def direct(request: Request, params: dict[str, str]) -> Response | None:
        query = request.query_params
        limit = _number(query.get("limit"), page_size, 1, page_size)
        after = _number(query.get("after"), 0, 0, 2**63 - 1)
        if limit is None or after is None:
            return None
        return await list_page(request, limit, after)

    return direct


def _number(given: str | None, default: int, low: int, high: int) -> int | None:
    if given is None:
        return default
    if not _DIGITS.fullmatch(given) or not low <= int(given) <= high:
        return None
    return int(given)


def declared_list(list_page: Endpoint, page_size: int) -> Endpoint:
    """The list as FastAPI's app calls it: its query parameters declared, and checked."""
    from fastapi import Query

    async def list_documents(
        request: Request,
        limit: int = Query(page_size, ge=1, le=page_size),
        after: int = Query(0, ge=0, le=2**63 - 1, description="cursor from the Link header"),
        connector_id: str | None = Query(None, alias="_connectorId"),
    ) -> Response:
        return await list_page(request, limit, after)

    return list_documents
