"""The network transport: what a lost connection means to the client's retries, at the wire."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest

from engine.client import ApiClient
from engine.errors import AnswerLost, ApiUnavailable, NotFound
from engine.policy import RetryPolicy
from engine.transport import AiohttpTransport
from engine.writes import WriteWay, WriteWays

TOKEN = "tok-very-secret-value"
FAST = RetryPolicy(attempts=4, budget=2.0, wait_initial=0.001, wait_max=0.01, wait_jitter=0.001)
#: What the server does with a request: answer it (status, JSON body) or ``None``: close the
#: connection unanswered, after the request was read (and, for all the client knows, applied).
Answer = Callable[[str, str], tuple[int, object] | None]


@dataclass
class RawServer:
    """An HTTP/1.1 server on a loopback port that answers as ``answer`` says, keeping
    connections alive, and records each request's method and path."""

    answer: Answer
    seen: list[tuple[str, str]] = field(default_factory=list)
    connections: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                lines = head.decode().split("\r\n")
                method, path, _ = lines[0].split(" ")
                headers = dict(line.split(": ", 1) for line in lines[1:] if line)
                lengths = [v for k, v in headers.items() if k.lower() == "content-length"]
                await reader.readexactly(int(lengths[0]) if lengths else 0)
                self.seen.append((method, path))
                answer = self.answer(method, path)
                if answer is None:
                    return
                status, doc = answer
                body = json.dumps(doc).encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def raw_server(answer: Answer) -> AsyncIterator[tuple[RawServer, str]]:
    raw = RawServer(answer)
    server = await asyncio.start_server(raw.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield raw, f"http://127.0.0.1:{port}/v1"
    finally:
        server.close()


def client(url: str, **options: object) -> ApiClient:
    keeps_keys = WriteWays(url, forced=WriteWay.REPLACE_ONLY)  # POST keys not honoured
    return ApiClient(url, TOKEN, retry=FAST, writes=keeps_keys, **options)  # type: ignore[arg-type]


async def test_requests_go_over_one_kept_alive_connection() -> None:
    """Successive requests reuse the connection, and documents come back as sent."""
    echo: Answer = lambda method, path: (200, {"_id": "a", "path": path})  # noqa: E731
    async with raw_server(echo) as (raw, url), client(url) as api:
        for _ in range(3):
            assert (await api.get("flows", "a")) == {"_id": "a", "path": "/v1/flows/a"}
    assert raw.connections == 1 and len(raw.seen) == 3


async def test_an_answer_lost_after_the_request_was_read_may_have_been_applied() -> None:
    """A POST whose connection closes after the server read it raises AnswerLost where the
    API keeps no idempotency key: it is sent once, never again."""
    async with raw_server(lambda m, p: None) as (raw, url), client(url) as api:
        with pytest.raises(AnswerLost):
            await api.create("connections", {"name": "once"})
    assert raw.seen == [("POST", "/v1/connections")]


async def test_a_lost_delete_on_a_kept_alive_connection_is_retried_by_the_client_alone() -> None:
    """A DELETE applied, whose kept-alive connection then drops, is sent again only by the
    client's own retry: its 404 is read as a second answer, so the delete succeeded."""
    deleted = False

    def answer(method: str, path: str) -> tuple[int, object] | None:
        nonlocal deleted
        if method == "DELETE":
            if deleted:
                return 404, {"errors": [{"code": "not_found", "message": "gone"}]}
            deleted = True
            return None
        return 200, {"_id": "a"}

    async with raw_server(answer) as (raw, url), client(url) as api:
        await api.get("flows", "a")  # the connection is now kept alive
        await api.delete("flows", "a")
        with pytest.raises(NotFound):
            await api.delete("flows", "a")
    assert [m for m, _ in raw.seen] == ["GET", "DELETE", "DELETE", "DELETE"]


async def test_a_refused_connection_was_not_applied_and_is_retried() -> None:
    """Nothing listening: the POST is retried (it cannot have been applied) until the budget
    is spent, then the API is named unreachable."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with client(f"http://127.0.0.1:{port}/v1") as api:
        with pytest.raises(ApiUnavailable) as info:
            await api.create("connections", {"name": "once"})
    assert f"127.0.0.1:{port}/v1" in str(info.value)
    assert TOKEN not in str(info.value)


async def test_an_answer_that_never_comes_is_a_read_timeout() -> None:
    """A server that reads the request and says nothing times out as a read, not a connect."""
    stalled = asyncio.Event()

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await stalled.wait()
        writer.close()

    server = await asyncio.start_server(stall, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = AiohttpTransport(verify=False, connections=2)
    request = httpx.Request(
        "GET",
        f"http://127.0.0.1:{port}/v1/flows",
        extensions={"timeout": {"connect": 1.0, "read": 0.1, "pool": 1.0}},
    )
    try:
        with pytest.raises(httpx.ReadTimeout):
            await transport.handle_async_request(request)
    finally:
        stalled.set()
        await transport.aclose()
        server.close()


async def test_a_proxy_named_by_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY is honoured as httpx's own transport honours it: the request goes to the
    proxy, for the API's URL."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with raw_server(lambda m, p: (200, {"_id": "a", "via": p})) as (raw, proxy):
        monkeypatch.setenv("HTTP_PROXY", proxy.removesuffix("/v1"))
        async with client("http://api.test/v1") as api:
            assert (await api.get("flows", "a"))["via"] == "http://api.test/v1/flows/a"
    assert raw.seen == [("GET", "http://api.test/v1/flows/a")]


def test_https_uses_the_ca_bundle_httpx_would() -> None:
    """An https API's transport trusts what httpx's default context trusts."""
    transport = AiohttpTransport(verify=True, connections=1)
    assert isinstance(transport._tls, ssl.SSLContext)
    expected = httpx.create_ssl_context().cert_store_stats()["x509_ca"]
    assert transport._tls.cert_store_stats()["x509_ca"] == expected > 0
