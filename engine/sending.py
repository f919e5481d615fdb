"""One logical request to the API: rate-limited, retried where it is safe, errors mapped.

The API client (:mod:`engine.client`) says what to send; this is how it goes out, once:

- a 429 slows every request of the client down, not only the one refused;
- 5xx, 429, timeouts and resets are tried again as the :class:`~engine.policy.RetryPolicy`
  says, unless the request may have been applied and repeating it is not safe;
- an HTTP status becomes the :mod:`engine.errors` exception for it here, and nowhere else.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from typing import Any

import httpx
import structlog

from engine import telemetry
from engine.errors import (
    AnswerLost,
    ApiError,
    ApiUnavailable,
    RateLimited,
    ServerError,
    error_for_status,
)
from engine.policy import RateLimit, RetryPolicy

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


def _maybe_applied(exc: Exception) -> bool:
    """Whether a failed request may have reached the server and been applied: not when the
    connection was never made, nor when the server said it refused (429)."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return False
    return not isinstance(exc, RateLimited)


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


class Sender:
    """Sends the API client's requests over one transport with one token."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        rate_limit: RateLimit | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url
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

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(
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
