"""Connector functions that live on an integrator.io extension server (SPEC §6).

``POST {url}/function`` with ``Authorization: Bearer <extension token>`` and
``{"_connectorId", "type", "function", "options"}``, answered as the ``integrator-extension``
SDK behind its HTTP wrapper answers: 200 with a JSON result or an empty body, 422 with
``errors[]``, 401 for a bad token, 500 with an HTML page when the function threw, and no
answer at all when an asynchronous function never calls back.

A remote call may have had effects even when it failed, so 5xx answers and silences are
retried only under the step's retry policy (as :class:`RetryableError`), with the same
``idempotencyKey``.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx

from engine import telemetry
from engine.defaults import FUNCTION_TIMEOUT
from engine.errors import ApiUnavailable, AuthenticationFailed
from installers._loading import Connector
from installers._registry import Registry
from installers._types import Field, RetryableError, StepContext, UserActionRequired

#: How long a remote function may take when its step sets no timeout.
DEFAULT_REMOTE_TIMEOUT = FUNCTION_TIMEOUT


class RemoteUnavailable(RetryableError):
    """The extension server failed (5xx) or did not answer; retried under the step policy."""


class RemoteFunctionFailed(Exception):
    """The function answered that it failed (422 ``errors[]``, or an unexpected status)."""


def function_type(field_path: str) -> str:
    """The SDK ``type`` for the manifest field that names a function."""
    if "ninstaller" in field_path or field_path.startswith("preUninstall"):
        return "uninstaller"
    if "ettings" in field_path:
        return "settings"
    return "installer"


def _text_of(response: httpx.Response) -> str:
    """A short, readable form of an error page (the SDK's 500s are HTML)."""
    text = re.sub(r"<[^>]+>", " ", response.text)
    text = html.unescape(re.sub(r"\s+", " ", text)).strip()
    return text[:300] or response.reason_phrase


def _messages(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        return [{"code": str(response.status_code), "message": _text_of(response)}]
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


@dataclass
class ExtensionServer:
    """An extension server the engine calls; open it with ``async with``."""

    url: str
    token: str = field(repr=False)
    _http: httpx.AsyncClient | None = field(default=None, init=False, repr=False)

    async def __aenter__(self) -> Self:
        self._http = httpx.AsyncClient(base_url=self.url.rstrip("/"), timeout=None)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._http is not None:
            await self._http.aclose()

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            raise RuntimeError("ExtensionServer is used outside `async with`")
        return self._http

    async def check_health(self) -> None:
        """``GET /healthCheck`` must answer 200: the protocol cannot list functions."""
        try:
            request = self.http.build_request("GET", "/healthCheck", timeout=10)
            response = await telemetry.send(self.http, request)
        except httpx.TransportError as exc:
            raise ApiUnavailable(
                f"extension server {self.url} is unreachable ({type(exc).__name__})",
                url=self.url,
            ) from None
        if response.status_code != 200:
            raise ApiUnavailable(
                f"extension server {self.url}: GET /healthCheck → {response.status_code}",
                url=self.url,
            )

    async def call(self, body: dict[str, Any], timeout: float) -> Any:
        """One ``POST /function``; the function's result, or an exception saying why not."""
        what = f"remote {body['type']} function {body['function']!r}"
        response = await self._post_function(body, timeout, what)
        if response.status_code == 200:
            return response.json() if response.content.strip() else None
        if response.status_code == 401:
            raise AuthenticationFailed(
                f"{what}: the extension server refused the extension token (401)",
                method="POST",
                path=f"{self.url}/function",
                status=401,
            )
        raise _failure(response, what)

    async def _post_function(
        self, body: dict[str, Any], timeout: float, what: str
    ) -> httpx.Response:
        """The server's answer, whatever its status; :class:`RemoteUnavailable` when none."""
        try:
            request = self.http.build_request(
                "POST",
                "/function",
                json=body,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            )
            return await telemetry.send(self.http, request)  # with its traceparent
        except httpx.TimeoutException:
            raise RemoteUnavailable(f"{what}: no answer within {timeout:g} s") from None
        except httpx.TransportError as exc:
            raise RemoteUnavailable(f"{what}: {type(exc).__name__}: {exc}") from None


def _failure(response: httpx.Response, what: str) -> Exception:
    """Why a call answered neither 200 nor 401 failed: the server threw (retried, as
    :class:`RemoteUnavailable`), the function asks the user for fields, or it failed."""
    errors = _messages(response)
    detail = "; ".join(str(e.get("message") or e.get("code")) for e in errors)
    if response.status_code >= 500:
        return RemoteUnavailable(f"{what} threw (HTTP {response.status_code}): {detail}")
    for error in errors:
        if error.get("code") == "user_action_required":
            return UserActionRequired(str(error.get("message")), error.get("url"), _fields(error))
    return RemoteFunctionFailed(f"{what} failed (HTTP {response.status_code}): {detail}")


def _fields(error: dict[str, Any]) -> list[Field]:
    """The fields a ``user_action_required`` error asks the user for."""
    return [
        Field(str(f.get("name")), str(f.get("label") or f.get("name")), f.get("secret") is True)
        for f in error.get("fields") or []
        if isinstance(f, dict) and f.get("name")
    ]


@dataclass
class RemoteFunction:
    """A registry entry that calls a function on an :class:`ExtensionServer`."""

    server: ExtensionServer
    connector_id: str
    name: str
    type: str

    async def __call__(self, ctx: StepContext) -> Any:
        options: dict[str, Any] = {
            "bearerToken": ctx.api.bearer_token(),
            "_integrationId": ctx.integration.id,
            "_connectorId": self.connector_id,
            "opts": ctx.options.get("opts", {}),
            "idempotencyKey": ctx.idempotency_key,
        }
        if ctx.step is not None:
            options["stepName"] = ctx.step.name
        if "pending" in ctx.options:  # persistSettings (SDK: options.pending)
            options["pending"] = ctx.options["pending"]
        if ctx.api.public_url is not None:
            options["apiUrl"] = ctx.api.public_url
        if ctx.input:  # the answers to the fields the step's last try asked for
            options["input"] = dict(ctx.input)
        body = {
            "_connectorId": self.connector_id,
            "type": self.type,
            "function": self.name,
            "options": options,
        }
        timeout = float(ctx.options.get("timeout") or DEFAULT_REMOTE_TIMEOUT)
        return await self.server.call(body, timeout)


def with_remote(
    connector: Connector, server: ExtensionServer, names: list[tuple[str, str]]
) -> Connector:
    """``connector`` with every function of ``names`` it lacks resolved on ``server``.

    ``names`` are ``(field path, function name)`` pairs; local functions win.
    """
    registry = Registry(connector.registry.name)
    for local in connector.registry:
        registry.add(local.name, local.func, origin=local.origin)
    for path, name in names:
        if name not in registry:
            remote = RemoteFunction(
                server, connector.manifest.connector_id, name, function_type(path)
            )
            registry.add(name, remote, origin=f"{server.url}/function ({remote.type})", remote=True)
    return Connector(connector.manifest, registry, connector.directory, connector.provenance)
