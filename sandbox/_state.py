"""The platform's State API: small JSON values by key, for the account or under a document.

``GET /state`` lists the account's keys (not those kept under documents); ``GET|PUT|DELETE
/state/{key}`` reads, writes and removes one. ``/{resource}/{id}/state`` and
``/{resource}/{id}/state/{key}`` do the same under a document, which must exist; deleting
the document deletes its state.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox._http import API_PREFIX, ApiProblem, body_spec, responses
from sandbox._router import Endpoint, Route
from sandbox._routes import Handling
from sandbox._store import state_scope

#: Longest key the sandbox keeps (a key names a cursor or a flag, not data).
MAX_KEY = 512
ANY_JSON = body_spec("application/json", schema={})


@dataclass(frozen=True)
class StateHandlers:
    """The State API's handlers at one level: the account's, or under one resource."""

    list_keys: Endpoint
    get_value: Endpoint
    put_value: Endpoint
    delete_value: Endpoint


def state_routes(api: Handling, resource: str | None) -> list[Route]:
    """The State API at the account's level (``resource`` None) or under ``resource``."""
    base = f"{API_PREFIX}/{resource}/{{id}}/state" if resource else f"{API_PREFIX}/state"
    name = f"{resource[:-1]}_state" if resource else "state"
    handlers = state_handlers(api, resource)
    missing = responses(404) if resource else {}
    routes = [
        Route(
            base,
            "GET",
            handlers.list_keys,
            dict(operation_id=f"list_{name}_keys", responses=missing, summary="List state keys"),
        )
    ]
    item = f"{base}/{{key}}"
    for handler, method, extra, statuses in (
        (handlers.get_value, "GET", {}, (400, 404)),
        (handlers.put_value, "PUT", ANY_JSON, (400, 404, 413)),
        (handlers.delete_value, "DELETE", {}, (400, 404)),
    ):
        options = dict(
            status_code=204 if method == "DELETE" else 200,
            operation_id=f"{method.lower()}_{name}_value",
            responses=responses(*statuses),
            openapi_extra=extra or None,
            summary=f"{method} a state value",
        )
        routes.append(Route(item, method, handler, options))
    return routes


def state_handlers(api: Handling, resource: str | None) -> StateHandlers:
    """The handlers of the State API at the account's level, or under ``resource``."""
    store = api.store

    def scope_of(request: Request, id: str | None, *, item: bool) -> str:
        api.authorize(request, resource or "state", item=item or resource is not None)
        if resource is not None and id is not None:
            api.fetch(resource, id)  # state lives under a document that exists
        return state_scope(resource, id)

    async def list_keys(request: Request, id: str | None = None) -> Response:
        return JSONResponse({"keys": store.state_keys(scope_of(request, id, item=False))})

    async def get_value(request: Request, key: str, id: str | None = None) -> Response:
        found, value = store.state_get(scope_of(request, id, item=True), _checked(key))
        if not found:
            raise ApiProblem(404, "not_found", f"state key {key!r} not found")
        return JSONResponse(value)

    async def put_value(request: Request, key: str, id: str | None = None) -> Response:
        scope = scope_of(request, id, item=True)
        value = await api.read_json(request)
        store.state_put(scope, _checked(key), value)
        return JSONResponse(value)

    async def delete_value(request: Request, key: str, id: str | None = None) -> Response:
        if not store.state_delete(scope_of(request, id, item=True), _checked(key)):
            raise ApiProblem(404, "not_found", f"state key {key!r} not found")
        return Response(status_code=204)

    return StateHandlers(list_keys, get_value, put_value, delete_value)


def _checked(key: str) -> str:
    if not key or len(key) > MAX_KEY:
        raise ApiProblem(400, "malformed_request", f"a state key is 1 to {MAX_KEY} characters")
    return key
