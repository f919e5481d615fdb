"""Serve a Python connector registry over the integrator.io extension protocol.

Answers as the ``integrator-extension`` SDK does behind its HTTP wrapper: ``GET /healthCheck``
→ ``{"success": true}``; ``POST /function`` → 200 with the function's JSON result (an empty
body when it returns nothing), 422 ``{"errors": [{code, message}]}`` when it fails or cannot
be found, 401 when the extension token is wrong. The token is taken from the
``Authorization`` header, else ``access_token`` in the body, else in the query.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
from typing import Any

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from engine.client import ApiClient
from engine.models import InstallStep, Integration
from installers._loading import Connector
from installers._registry import RegisteredFunction
from installers._types import StepContext, StepResult, UserActionRequired
from installers.remote import function_type

#: The SDK's default limit on a function's serialised result.
MAX_RESPONSE_BYTES = 5 * 1024 * 1024
#: Where a function's ``ctx.api`` points when the caller sends no ``apiUrl``.
DEFAULT_API_URL = "https://api.integrator.io/v1"
FUNCTION_TYPES = ("installer", "uninstaller", "settings", "setting")

log = structlog.get_logger("smartconnector.extension")


def _errors(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"errors": [{"code": code, "message": message, **extra}]}, status)


def _token_of(request: Request, body: Any) -> str | None:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, credentials = header.partition(" ")
        return credentials if scheme.lower() == "bearer" and credentials else None
    if isinstance(body, dict) and isinstance(body.get("access_token"), str):
        return str(body["access_token"])
    return request.query_params.get("access_token")


def _invalid(body: Any, connector: Connector) -> JSONResponse | None:
    """The SDK's checks of a call, in its order, with its codes and messages: first every
    error of the call's shape together (as the SDK lists them), then the function's."""
    body = body if isinstance(body, dict) else {}
    errors = _shape_errors(body, connector)
    if errors:
        return JSONResponse({"errors": errors}, 422)
    kind = body.get("type")
    if kind is not None and kind not in FUNCTION_TYPES:
        return _errors(422, "object_not_found", f"The object {kind} doesn't exist in the module.")
    declared = _declared_types(connector).get(body["function"])
    mismatch = kind is not None and declared is not None and _type(kind) not in declared
    if body["function"] not in connector.registry or mismatch:
        return _errors(
            422,
            "invalid_function",
            "The function passed in the extension options doesn't map to a function.",
        )
    return None


def _shape_errors(body: dict[str, Any], connector: Connector) -> list[dict[str, str]]:
    errors = []
    if _given(body.get("diy")):  # this server serves one connector, as the SDK's connector-only
        errors.append(_error("missing_required_field", DIY_MISSING))
    elif not _given(body.get("_connectorId")):
        errors.append(_error("missing_required_field", CONNECTOR_OR_DIY))
    elif body["_connectorId"] != connector.manifest.connector_id:
        errors.append(_error("invalid_field", UNKNOWN_CONNECTOR))
    if not _given(body.get("function")):
        errors.append(_error("missing_required_field", NO_FUNCTION))
    elif not isinstance(body["function"], str):
        errors.append(_error("invalid_field", FUNCTION_NOT_STRING))
    if not isinstance(body.get("options"), dict):
        errors.append(_error("missing_required_field", NO_OPTIONS))
    return errors


def _given(value: Any) -> bool:
    """JavaScript's truthiness, which the SDK's checks use: ``{}`` and ``[]`` are given."""
    if isinstance(value, bool):
        return value
    return value is not None and value != "" and not (isinstance(value, int | float) and value == 0)


def _error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


CONNECTOR_OR_DIY = "Need to set either the diy or _connectorId field in extension options."
DIY_MISSING = "DIY is not configured in the extension configuration."
UNKNOWN_CONNECTOR = (
    "The _connectorId set in the extension options does't match any of the _connectorId's"
    " present in extension configuration."
)
NO_FUNCTION = "Missing required field function in the extension options."
FUNCTION_NOT_STRING = "The function field in the extension options must be of type string."
NO_OPTIONS = "Function options haven't been provided."


def _type(kind: str) -> str:
    return "settings" if kind == "setting" else kind


def _declared_types(connector: Connector) -> dict[str, set[str]]:
    """The SDK finds a function under its type's object; the manifest says which that is."""
    types: dict[str, set[str]] = {}
    for path, name in connector.manifest.function_names():
        types.setdefault(name, set()).add(function_type(path))
    return types


async def _context(connector: Connector, options: dict[str, Any], api: ApiClient) -> StepContext:
    integration_id = options.get("_integrationId")
    integration: Integration | None = None
    if options.get("apiUrl") and isinstance(integration_id, str):
        integration = Integration.model_validate(await api.get("integrations", integration_id))
    if integration is None:
        integration = Integration.model_validate(
            {
                "_id": integration_id,
                "_connectorId": connector.manifest.connector_id,
                "mode": "install",
                "install": [s.to_wire() for s in connector.manifest.install],
            }
        )
    step: InstallStep | None = next(
        (s for s in integration.install if s.name == options.get("stepName")), None
    )
    key = options.get("idempotencyKey") or secrets.token_hex(16)
    return StepContext(
        integration=integration,
        step=step,
        api=api,
        idempotency_key=str(key),
        log=log.bind(integration_id=integration_id, step=options.get("stepName")),
        options=options,  # exactly as the caller sent them, as the SDK hands them on
        settings=dict(integration.settings or {}),
        input={k: str(v) for k, v in (options.get("input") or {}).items()},
    )


async def _run(function: RegisteredFunction, ctx: StepContext) -> Any:
    if function.is_async:
        return await function.func(ctx)  # type: ignore[misc]
    return await asyncio.to_thread(function.func, ctx)


def create_extension_app(connector: Connector, token: str) -> FastAPI:
    """The extension protocol for ``connector``'s registry, guarded by ``token``."""
    app = FastAPI(title=f"{connector.manifest.name} extension", openapi_url=None, docs_url=None)

    @app.get("/")
    @app.get("/healthCheck")
    async def health() -> dict[str, bool]:
        return {"success": True}

    @app.post("/function")
    async def call_function(request: Request) -> Response:
        body = await _json_body(request)
        if not _token_matches(_token_of(request, body), token):
            return _unauthorized()
        problem = _invalid(body, connector)
        if problem is not None:
            return problem
        function = connector.registry.get(body["function"])
        assert function is not None
        return await _answer(connector, function, body["options"])

    return app


async def _json_body(request: Request) -> Any:
    """The body as JSON (``{}`` when empty), or ``None`` when it is not JSON."""
    try:
        return json.loads(await request.body() or b"{}")
    except ValueError:
        return None


def _token_matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def _unauthorized() -> JSONResponse:
    response = _errors(401, "unauthorized", "Invalid system token.")
    response.headers["WWW-Authenticate"] = "invalid system token"
    return response


async def _answer(
    connector: Connector, function: RegisteredFunction, options: dict[str, Any]
) -> Response:
    """Run ``function`` with ``ctx.api`` on the caller's API; its result, or why it failed."""
    api_url = str(options.get("apiUrl") or DEFAULT_API_URL)
    async with ApiClient(api_url, str(options.get("bearerToken") or "")) as api:
        try:
            result = await _run(function, await _context(connector, options, api))
        except UserActionRequired as exc:
            fields = [f.to_wire() for f in exc.fields]
            extra = {"fields": fields} if fields else {}
            return _errors(422, "user_action_required", exc.message, url=exc.url, **extra)
        except Exception as exc:
            log.info("function failed", function=function.name, error=str(exc))
            code = getattr(exc, "code", None) or type(exc).__name__
            return _errors(422, str(code), str(exc))
    return _result_response(result)


def _result_response(result: Any) -> Response:
    """A function's result as the SDK answers it: JSON, within its size limit."""
    if result is None:
        return Response(b"", 200, media_type="application/json")
    if isinstance(result, StepResult):
        result = {"success": True, **result.to_wire()}
    try:
        payload = json.dumps(result).encode()
    except (TypeError, ValueError):
        return _errors(422, "invalid_extension_response", "Extension response is not serializable.")
    if len(payload) > MAX_RESPONSE_BYTES:
        return _errors(
            422,
            "response_size_exceeded",
            f"response stream exceeded limit of {MAX_RESPONSE_BYTES} bytes.",
        )
    return Response(payload, 200, media_type="application/json")
