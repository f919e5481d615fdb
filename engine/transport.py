"""The API client's network transport: httpx's transport interface over aiohttp's pool.

httpcore's pool examines every pooled connection, asking its socket whether it is
readable, for each request it sends and each response it closes, and writes a request's
head and body in two sends: in a rollout of 1,200 integrations that was over half of the
engine's CPU (benchmarks/NOTES.md). aiohttp keeps idle connections in a queue per host,
parses responses in C and writes a request in one send. The client above keeps httpx's
API; only the bytes on the wire go through aiohttp.

Failures come out as httpx's exceptions, chosen for what the client's retries need to
know: a connection that was never made (:class:`httpx.ConnectError`,
:class:`httpx.ConnectTimeout`) cannot have been applied; after any other failure the
request may have been.
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpx

#: aiohttp's failures, most specific first, and what each is to the client.
_FAILURES: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),  # waiting for or making one
    (aiohttp.ClientConnectorError, httpx.ConnectError),  # refused, DNS, TLS handshake
    (aiohttp.ServerFingerprintMismatch, httpx.ConnectError),
    (TimeoutError, httpx.ReadTimeout),  # sent, then no answer in time
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # not HTTP that parses
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientError, httpx.ReadError),  # a reset, or a write to a closed connection
)


#: Seconds an idle connection is kept (aiohttp's default is 15): under the 5 s a server
#: commonly keeps one (uvicorn's; httpx's own expiry was 5), so that the server is seldom
#: the side closing it just as a request goes out on it.
KEEPALIVE = 4.0


@contextmanager
def _as_httpx(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except aiohttp.ClientError as exc:
        for failure, ours in _FAILURES:
            if isinstance(exc, failure):
                raise ours(f"{type(exc).__name__}: {exc}", request=request) from exc
        raise  # pragma: no cover - ClientError is the last entry


def _proxy_for(url: httpx.URL) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``ALL_PROXY``, less ``NO_PROXY``), as httpx's own transport would use it."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if proxy is None or urllib.request.proxy_bypass(url.host):
        return None
    return proxy


class AiohttpTransport(httpx.AsyncBaseTransport):
    """At most ``connections`` connections to the API, kept alive between requests.

    ``verify`` is what :func:`engine.client.tls_for` gives: a context, or ``True`` for the
    CA bundle httpx would use (certifi's, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``). Proxies
    come from the environment, as with httpx. The session is opened on the first request,
    in the loop that sends it.
    """

    def __init__(self, *, verify: ssl.SSLContext | bool, connections: int) -> None:
        self._tls = (
            verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)
        )
        self._proxies: dict[tuple[str, str], str | None] = {}
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._connections,
            ssl=self._tls,
            keepalive_timeout=KEEPALIVE,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,  # httpx decodes, from the headers it hands on
        )
        # aiohttp sends a GET, PUT or DELETE again by itself when a kept-alive connection
        # fails: unseen by the client, a DELETE applied the first time would then read as
        # never applied (its 404 taken for the first answer). The client decides retries.
        session._retry_connection = False
        self._session = session
        return session

    def _proxy(self, url: httpx.URL) -> str | None:
        origin = (url.scheme, url.host)
        if origin not in self._proxies:
            self._proxies[origin] = _proxy_for(url)
        return self._proxies[origin]

    def _timeout(self, request: httpx.Request) -> aiohttp.ClientTimeout:
        """httpx's timeouts of ``request`` as aiohttp's: ``pool`` bounds waiting for a
        connection and making it, ``connect`` the connecting alone, ``read`` each read."""
        given = request.extensions.get("timeout", {})
        key = (given.get("pool"), given.get("connect"), given.get("read"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(
                total=None, connect=key[0], sock_connect=key[1], sock_read=key[2]
            )
            self._timeouts[key] = timeout
        return timeout

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        body = request.content or None  # the client's requests are bytes, never streamed
        with _as_httpx(request):
            async with session.request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=body,
                allow_redirects=False,
                timeout=self._timeout(request),
                proxy=self._proxy(request.url),
            ) as response:
                content = await response.read()
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=httpx.ByteStream(content),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
