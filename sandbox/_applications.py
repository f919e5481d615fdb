"""The second seed's application-scoped routes to one integration: get, merge patch, delete.

Each handler is made by its own function, over the :class:`~sandbox._routes.Handling` every
route shares; the handler keeps its name, which FastAPI's app makes the route's summary.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox._http import API_PREFIX, DOC_SCHEMA, ApiProblem, body_spec, responses
from sandbox._patching import merge_patch
from sandbox._profiles import keep_fields
from sandbox._router import Endpoint, Route
from sandbox._routes import Handling
from sandbox._store import Document

PATH = f"{API_PREFIX}/applications/{{applicationId}}/integrations/{{integrationId}}"


def application_routes(api: Handling, fields: frozenset[str] | None) -> list[Route]:
    """The second seed's application-scoped get, merge patch and delete.

    With ``fields`` (the platform's integration schema), what the merge patch leaves keeps
    only those top-level fields, as every other write of an integration does.
    """
    merge_body = body_spec("application/json", "application/merge-patch+json", schema=DOC_SCHEMA)
    return [
        Route(
            PATH,
            "GET",
            _get_handler(api),
            dict(operation_id="application_get_integration", responses=responses(400, 404)),
        ),
        Route(
            PATH,
            "PATCH",
            _merge_patch_handler(api, fields),
            dict(
                operation_id="application_patch_integration",
                responses=responses(400, 404, 413, 422),
                openapi_extra=merge_body,
            ),
        ),
        Route(
            PATH,
            "DELETE",
            _delete_handler(api),
            dict(operation_id="application_delete_integration", responses=responses(400, 404)),
        ),
    ]


def _get_handler(api: Handling) -> Endpoint:
    async def get_app_integration(
        request: Request, applicationId: str, integrationId: str
    ) -> Response:
        api.authorize(request, "integrations", item=True)
        return JSONResponse(api.fetch("integrations", integrationId))

    return get_app_integration


def _merge_patch_handler(api: Handling, fields: frozenset[str] | None) -> Endpoint:
    """A merge patch of the integration: as any patch of a document, unless ``fields`` say
    which top-level fields it may keep."""

    async def patch_app_integration(
        request: Request, applicationId: str, integrationId: str
    ) -> Response:
        api.authorize(request, "integrations", item=True)
        body = await api.read_json(request)
        if not isinstance(body, dict):
            raise ApiProblem(400, "malformed_request", "expected an integration patch object")
        if fields is None:
            return JSONResponse(
                api.patch_document(
                    "integrations", integrationId, body, "application/merge-patch+json"
                )
            )
        return JSONResponse(_merge_keeping(api, integrationId, body, fields))

    return patch_app_integration


def _merge_keeping(
    api: Handling, integration_id: str, patch: dict[str, Any], fields: frozenset[str]
) -> Document:
    """The integration with ``patch`` merged in, keeping only the top-level ``fields``."""

    def merge(doc: Document) -> Document:
        return keep_fields(merge_patch(doc, patch), fields)

    merged = api.store.update("integrations", integration_id, merge)
    if merged is None:
        raise api.missing("integrations", integration_id)
    return merged


def _delete_handler(api: Handling) -> Endpoint:
    async def delete_app_integration(
        request: Request, applicationId: str, integrationId: str
    ) -> Response:
        api.authorize(request, "integrations", item=True)
        api.remove("integrations", integrationId)
        return JSONResponse({"success": True})

    return delete_app_integration
