"""The integrator.io API client: one ``httpx.AsyncClient``, retries, rate limit, error mapping.

Retrying is only done where repeating is safe:

- GET, PUT and DELETE are idempotent (a DELETE whose first answer was lost and whose retry
  finds nothing has succeeded).
- POST carries an ``Idempotency-Key`` that stays the same across its retries, so a retry
  after a lost answer returns the first document instead of creating a second.
- A PATCH with ``test`` operations whose retry fails its test (409) is checked against the
  document: if every change it makes is already there, the first attempt was applied.
"""

from __future__ import annotations

import asyncio
import builtins
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx
import jsonpointer
import structlog

from engine import telemetry
from engine.errors import (
    AnswerLost,
    ApiError,
    ApiUnavailable,
    AuthenticationFailed,
    Conflict,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    error_for_status,
)
from engine.policy import RateLimit, RetryPolicy
from engine.writes import WriteWays

Document = dict[str, Any]
Patch = list[dict[str, Any]] | dict[str, Any]

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
#: Connections to the API kept open, and requests in flight on them at most.
CONNECTIONS = 16

log = structlog.get_logger("smartconnector.api")


def tls_for(url: str) -> ssl.SSLContext | bool:
    """Certificate checking for ``url``: httpx's default (the CA bundle) for https.

    A plain-http API never uses TLS, so its client skips loading the CA bundle (15-30 ms of
    start-up); should anything try TLS on it all the same, a context trusting no one refuses.
    """
    if url.startswith("http://"):
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return True


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _gave_up(exc: Exception, method: str, url: str, attempts: int) -> Exception:
    """What a request that failed for good raises: an unreachable API is named as such,
    with the whole URL, so the message says which host did not answer."""
    if not isinstance(exc, httpx.TransportError):
        return exc
    return ApiUnavailable(
        f"{method} {url}: API unreachable after {attempts} attempts ({type(exc).__name__})",
        method=method,
        path=url,
    )


def _content_type(ops: Patch) -> dict[str, str]:
    return {"Content-Type": JSON_PATCH if isinstance(ops, list) else MERGE_PATCH}


def _maybe_applied(exc: Exception) -> bool:
    """Whether a failed request may have reached the server and been applied: not when the
    connection was never made, nor when the server said it refused (429)."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return False
    return not isinstance(exc, RateLimited)


def _state_path(key: str | None, resource: str | None, id: str | None) -> str:
    """``/state[/key]``, or the same under ``/resource/id``; keys are escaped."""
    if (resource is None) != (id is None):
        raise ValueError("state under a document needs both resource= and id=")
    base = f"/{resource}/{quote(str(id), safe='')}/state" if resource else "/state"
    return base if key is None else f"{base}/{quote(key, safe='')}"


def _already_applied(doc: Any, ops: list[dict[str, Any]]) -> bool:
    """Whether every change in ``ops`` is present in ``doc`` (tests are ignored)."""
    missing = object()
    for op in ops:
        kind, path = op.get("op"), op.get("path", "")
        if kind == "test":
            continue
        if kind in ("add", "replace"):
            if path.endswith("/-"):
                return False
            if jsonpointer.resolve_pointer(doc, path, missing) != op.get("value"):
                return False
        elif kind == "remove":
            if jsonpointer.resolve_pointer(doc, path, missing) is not missing:
                return False
        else:
            return False
    return True


def in_process(app: Any) -> httpx.ASGITransport:
    """A transport to an ASGI app in this process (the embedded sandbox) on which each
    request yields to the event loop once, as a request over a network does. Without that
    nothing in a run ever waits: one task of a rollout does every update in a single turn
    of the loop while the others never start, and the timers the runs cancel pile up
    (asyncio sweeps them between turns)."""

    async def over_the_loop(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0)
        await app(scope, receive, send)

    return httpx.ASGITransport(app=over_the_loop)


def _network(url: str) -> httpx.AsyncBaseTransport:
    """The transport to an API over the network (aiohttp's pool: engine.transport says why).
    Imported here: aiohttp takes ~0.1 s to import, which the embedded sandbox never needs."""
    from engine.transport import AiohttpTransport

    return AiohttpTransport(verify=tls_for(url), connections=CONNECTIONS)


class ApiClient:
    """Async client for the Integration API and the resources a connector creates.

    ``resource`` is one of ``integrations``, ``connections``, ``exports``, ``imports``,
    ``flows``. Documents are plain dicts; failures raise the :mod:`engine.errors` tree.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        rate_limit: RateLimit | None = None,
        timeout: float = 30.0,
        reachable: bool = True,
        writes: WriteWays | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        #: How this API takes a run's progress (found by a probe unless known).
        self.writes = writes or WriteWays(self.base_url)
        #: The URL another process can reach this API at; ``None`` for an in-process sandbox.
        self.public_url: str | None = self.base_url if reachable else None
        self._token = token
        self.retry = retry or RetryPolicy()
        self._limiter = (rate_limit or RateLimit()).limiter()
        self._transport = transport or _network(self.base_url)
        #: Requests go straight to the transport (:meth:`_send_direct`); the client is what
        #: telemetry sends them with, inside their spans, and it gives the default headers.
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            transport=self._transport,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        )
        self._headers = self._http.headers
        self._extensions = {"timeout": self._http.timeout.as_dict()}
        #: At most as many requests in the transport as the network one has connections.
        self._slots = asyncio.Semaphore(CONNECTIONS)
        #: After a 429 no request of this client goes out before this (``time.monotonic``):
        #: the server said the token is over its rate, so every caller slows down, not
        #: only the one that was refused.
        self._quiet_until = 0.0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def bearer_token(self) -> str:
        """The token, for handing on to a remote function (SPEC §6 ``bearerToken``) only."""
        return self._token

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- resources ------------------------------------------------------------------------

    async def list(self, resource: str, **filters: str) -> list[Document]:
        """Every document of ``resource`` matching ``filters``, following ``Link: rel=next``."""
        return [doc async for page in self.pages(resource, **filters) for doc in page]

    async def pages(self, resource: str, **filters: str) -> AsyncIterator[builtins.list[Document]]:
        """The documents of ``resource`` matching ``filters``, a page at a time: a fleet
        is read without holding all of it."""
        docs, cursor = await self.page(resource, None, **filters)
        yield docs
        while cursor is not None:
            docs, cursor = await self.page(resource, cursor)
            yield docs

    async def page(
        self, resource: str, cursor: str | None = None, **filters: str
    ) -> tuple[builtins.list[Document], str | None]:
        """One page of ``resource``: the first (matching ``filters``), or the one ``cursor``
        (the previous page's) names; with the cursor of the next, ``None`` after the last."""
        if cursor is None:
            response = await self._send("GET", f"/{resource}", params=filters or None)
        else:
            response = await self._send("GET", cursor)
        return response.json(), response.links.get("next", {}).get("url")

    async def get(self, resource: str, id: str) -> Document:
        return (await self._send("GET", f"/{resource}/{id}")).json()  # type: ignore[no-any-return]

    async def create(
        self, resource: str, doc: Document, *, repeatable: bool | None = None
    ) -> Document:
        """POST ``doc``. Its retries carry one ``Idempotency-Key``; on an API that does not
        honour it (``repeatable`` defaults to whether the API's write way does) an answer
        lost after the request may have been applied is not retried but raised as
        :class:`~engine.errors.AnswerLost`."""
        if repeatable is None:
            repeatable = self.writes.way is not None and self.writes.way.keeps_idempotency_keys
        key = secrets.token_hex(16)
        response = await self._send(
            "POST",
            f"/{resource}",
            json=doc,
            headers={"Idempotency-Key": key},
            repeatable=repeatable,
        )
        return response.json()  # type: ignore[no-any-return]

    async def replace(self, resource: str, id: str, doc: Document) -> Document:
        """PUT the whole document; the document as it is after it (read again when the API
        answers with no body)."""
        replaced = await self.replace_applied(resource, id, doc)
        return replaced if replaced is not None else await self.get(resource, id)

    async def replace_applied(self, resource: str, id: str, doc: Document) -> Document | None:
        """:meth:`replace`, or ``None`` when the API answers with no body (204)."""
        response = await self._send("PUT", f"/{resource}/{id}", json=doc)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()  # type: ignore[no-any-return]

    async def patch(self, resource: str, id: str, ops: Patch) -> Document:
        """A JSON Patch (a list of operations) or a merge patch (a dict); the document as it
        is after it (read again when the API answers 204, as the platform's docs say)."""
        changed = await self.patch_applied(resource, id, ops)
        return changed if changed is not None else await self.get(resource, id)

    async def patch_status(self, resource: str, id: str, ops: Patch) -> int:
        """The status a PATCH is answered with (retried as any request), success or not."""
        try:
            await self._send("PATCH", f"/{resource}/{id}", json=ops, headers=_content_type(ops))
        except (AuthenticationFailed, PermissionDenied):
            raise  # the token's, not the API's way
        except ApiError as exc:
            if exc.status is None or exc.status >= 500 or exc.status == 429:
                raise
            return exc.status
        return 200

    async def patch_applied(self, resource: str, id: str, ops: Patch) -> Document | None:
        """:meth:`patch`, or ``None`` when the API answers with no body (204): the caller
        applies the change to the document it holds."""
        path = f"/{resource}/{id}"
        try:
            response = await self._send("PATCH", path, json=ops, headers=_content_type(ops))
        except Conflict as exc:
            if not isinstance(ops, list) or exc.attempt == 1:
                raise
            current = await self.get(resource, id)
            if not _already_applied(current, ops):
                raise
            log.debug("patch already applied", path=path)
            return current
        if response.status_code == 204 or not response.content:
            return None
        return response.json()  # type: ignore[no-any-return]

    async def delete(self, resource: str, id: str) -> None:
        try:
            await self._send("DELETE", f"/{resource}/{id}")
        except NotFound as exc:
            if exc.attempt == 1:
                raise

    # -- the State API: small values by key, the account's or under a document -------------

    async def state_keys(
        self, *, resource: str | None = None, id: str | None = None
    ) -> builtins.list[str]:
        """The keys kept for the account (or under ``resource``/``id``)."""
        response = await self._send("GET", _state_path(None, resource, id))
        return list(response.json().get("keys", []))

    async def get_state(
        self, key: str, *, resource: str | None = None, id: str | None = None
    ) -> Any:
        """The value under ``key``; a missing key raises :class:`~engine.errors.NotFound`."""
        return (await self._send("GET", _state_path(key, resource, id))).json()

    async def put_state(
        self, key: str, value: Any, *, resource: str | None = None, id: str | None = None
    ) -> None:
        """Keep ``value`` (any JSON) under ``key``, replacing what was there."""
        await self._send("PUT", _state_path(key, resource, id), json=value)

    async def delete_state(
        self, key: str, *, resource: str | None = None, id: str | None = None
    ) -> None:
        """Remove ``key``; a missing key raises :class:`~engine.errors.NotFound`."""
        try:
            await self._send("DELETE", _state_path(key, resource, id))
        except NotFound as exc:
            if exc.attempt == 1:  # a retry finding nothing: the first try deleted it
                raise

    # -- application-scoped integration actions (second seed) -----------------------------

    async def application_get(self, application_id: str, integration_id: str) -> Document:
        path = f"/applications/{application_id}/integrations/{integration_id}"
        return (await self._send("GET", path)).json()  # type: ignore[no-any-return]

    async def application_patch(
        self, application_id: str, integration_id: str, changes: Document
    ) -> Document:
        path = f"/applications/{application_id}/integrations/{integration_id}"
        return (await self._send("PATCH", path, json=changes)).json()  # type: ignore[no-any-return]

    async def application_delete(self, application_id: str, integration_id: str) -> None:
        path = f"/applications/{application_id}/integrations/{integration_id}"
        await self._send("DELETE", path)

    # -- transport ------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        repeatable: bool = True,
    ) -> httpx.Response:
        """One logical request: rate-limited, retried where safe, errors mapped.

        5xx, 429, timeouts and resets are tried again as :meth:`RetryPolicy.wait_before`
        says; anything else, or a failure that outlasts the policy, is raised. Unless
        ``repeatable``, a failure after which the request may have been applied is raised at
        once as :class:`~engine.errors.AnswerLost`.
        """
        began = time.monotonic()
        attempt = 1
        while True:
            try:
                return await self._attempt(method, path, json, params, headers, attempt)
            except (ServerError, RateLimited, httpx.TransportError) as exc:
                if not repeatable and _maybe_applied(exc):
                    raise AnswerLost(
                        f"{method} {self.base_url}{path}: the answer was lost"
                        f" ({type(exc).__name__}); the request may have been applied",
                        method=method,
                        path=path,
                    ) from None
                wait = self.retry.wait_before(attempt + 1, exc, time.monotonic() - began)
                if isinstance(exc, RateLimited):
                    quiet = time.monotonic() + (exc.retry_after or wait or 0.0)
                    self._quiet_until = max(self._quiet_until, quiet)
                if wait is None:
                    raise _gave_up(exc, method, self.base_url + path, attempt) from None
            attempt += 1
            log.info("retrying request", method=method, path=path, attempt=attempt)
            await asyncio.sleep(wait)

    async def _attempt(
        self,
        method: str,
        path: str,
        json: Any,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        attempt_no: int,
    ) -> httpx.Response:
        probe = telemetry.probe  # None unless traces or metrics are on
        waiting_since = time.monotonic() if probe is not None else 0.0
        while (quiet := self._quiet_until - time.monotonic()) > 0:
            await asyncio.sleep(quiet)
        await self._limiter.acquire()
        if probe is not None:
            probe.rate_waited(time.monotonic() - waiting_since)
        request = self._request(method, path, json, params, headers)
        async with self._slots:
            if probe is None:
                response = await self._send_direct(request)
            else:
                response = await probe.send(self._http, request, resends=attempt_no - 1)
        if response.is_success:
            return response
        error = self._error(method, path, response)
        error.attempt = attempt_no
        raise error

    def _request(
        self,
        method: str,
        path: str,
        json: Any,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
    ) -> httpx.Request:
        """The request as ``httpx.AsyncClient.build_request`` makes it, for less: the URL
        is parsed once (the client parses a relative one, then the merged one again)."""
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        merged = self._headers
        if headers:
            merged = merged.copy()
            merged.update(headers)
        return httpx.Request(
            method, url, params=params, headers=merged, json=json, extensions=self._extensions
        )

    async def _send_direct(self, request: httpx.Request) -> httpx.Response:
        """``request`` through the transport, read whole. What ``AsyncClient.send`` adds on
        the way is for features this client does not use (cookies, auth flows, redirects,
        event hooks): in a rollout it was a tenth of the engine's CPU, twice an update."""
        response = await self._transport.handle_async_request(request)
        response.request = request
        await response.aread()
        return response

    @staticmethod
    def _error(method: str, path: str, response: httpx.Response) -> ApiError:
        try:
            body = response.json()
            errors = body.get("errors") if isinstance(body, dict) else None
        except ValueError:
            errors = None
        if not isinstance(errors, list):
            errors = [{"code": str(response.status_code), "message": response.reason_phrase}]
        return error_for_status(
            response.status_code,
            method=method,
            path=path,
            errors=[e for e in errors if isinstance(e, dict)],
            retry_after=_retry_after(response),
        )
