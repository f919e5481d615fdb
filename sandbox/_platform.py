"""The write handlers of the platform profiles (SPEC §5a), next to the default ones.

Each resource's handlers are chosen once, when the app is built: the default profile gets
:func:`~sandbox._routes.default_writes` itself, so its requests do no profile work at all.
"""

from __future__ import annotations

import dataclasses

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox._http import ApiProblem, replace_patch_body
from sandbox._patching import PatchError, apply_replacements, replace_operations
from sandbox._profiles import INTEGRATION_PATCH_FIELDS, IntegrationPatch, Profile, keep_fields
from sandbox._router import Endpoint
from sandbox._routes import Handling, Writes, default_writes
from sandbox._store import Document


def writes_for(api: Handling, resource: str, profile: Profile) -> Writes:
    """The POST, PUT and PATCH handlers ``profile`` serves for ``resource``."""
    writes = default_writes(api, resource)
    fields = profile.integration_fields if resource == "integrations" else None
    if not profile.honours_idempotency_key:
        writes = dataclasses.replace(writes, create=_create_every_time(api, resource, fields))
    if fields is not None:
        writes = dataclasses.replace(writes, replace=_replace_keeping(api, resource, fields))
    if resource != "integrations" or profile.integration_patch is IntegrationPatch.ANY:
        return writes
    if profile.integration_patch is IntegrationPatch.NONE:
        return dataclasses.replace(writes, patch=None)
    return dataclasses.replace(
        writes,
        patch=_replace_only_patch(api, resource, fields),
        patch_body=replace_patch_body(INTEGRATION_PATCH_FIELDS),
        patch_status=204,
        patch_errors=(400, 404, 413),
        patch_summary="(replace operations only)",
    )


def _create_every_time(api: Handling, resource: str, fields: frozenset[str] | None) -> Endpoint:
    """POST with no Idempotency-Key: a retried POST creates a second document."""

    async def create_document(request: Request) -> Response:
        api.authorize(request, resource, item=False)
        body = await api.read_document(request)
        if fields is not None:
            body = keep_fields(body, fields)
        doc, _ = api.store.create(resource, body)
        return JSONResponse(doc, 201)

    return create_document


def _replace_keeping(api: Handling, resource: str, fields: frozenset[str]) -> Endpoint:
    """PUT of the whole document, keeping only the schema's top-level ``fields``."""

    async def replace_document(request: Request, id: str) -> Response:
        api.authorize(request, resource, item=True)
        body = keep_fields(await api.read_document(request), fields)
        doc = api.store.update(resource, id, lambda _old: body)
        if doc is None:
            raise api.missing(resource, id)
        return JSONResponse(doc)

    return replace_document


def _replace_only_patch(api: Handling, resource: str, fields: frozenset[str] | None) -> Endpoint:
    """PATCH of ``replace`` operations on the documented fields, answered 204 with no body."""

    async def patch(request: Request, id: str) -> Response:
        api.authorize(request, resource, item=True)
        body = await api.read_json(request)
        content_type = request.headers.get("content-type", "application/json")
        try:
            replacements = replace_operations(body, content_type, INTEGRATION_PATCH_FIELDS)
        except PatchError as exc:
            raise ApiProblem(exc.status, exc.code, str(exc)) from None

        def change(doc: Document) -> Document:
            try:
                doc = apply_replacements(doc, replacements)
            except PatchError as exc:
                raise ApiProblem(exc.status, exc.code, str(exc)) from None
            return keep_fields(doc, fields) if fields is not None else doc

        if api.store.update(resource, id, change) is None:
            raise api.missing(resource, id)
        return Response(status_code=204)

    return patch
