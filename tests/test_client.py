"""The API client: error mapping, safe retries, lost answers, rate limiting."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from benchmarks._common import CountingTransport
from engine.client import ApiClient, tls_for
from engine.errors import (
    AnswerLost,
    ApiUnavailable,
    AuthenticationFailed,
    BadRequest,
    Conflict,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    Unprocessable,
)
from engine.policy import RateLimit, RetryPolicy
from engine.pytest_plugin import fast_retry
from engine.writes import WriteWay, WriteWays
from sandbox import FaultInjector, Store, create_app

TOKEN = "tok-very-secret-value"
Handler = Callable[[httpx.Request], httpx.Response]


def mock_client(handler: Handler, retry: RetryPolicy | None = None) -> ApiClient:
    return ApiClient(
        "http://api.test/v1",
        TOKEN,
        transport=httpx.MockTransport(handler),
        retry=retry or fast_retry(),
    )


def error(status: int, message: str = "nope", **headers: str) -> httpx.Response:
    return httpx.Response(
        status, json={"errors": [{"code": "x", "message": message}]}, headers=headers
    )


@pytest.mark.parametrize(
    ("status", "exc", "exit_code"),
    [
        (400, BadRequest, 2),
        (401, AuthenticationFailed, 3),
        (403, PermissionDenied, 3),
        (404, NotFound, 6),
        (409, Conflict, 4),
        (422, Unprocessable, 2),
    ],
)
async def test_statuses_map_to_the_error_tree(
    status: int, exc: type[Exception], exit_code: int
) -> None:
    """Each status becomes its exception with method, path, status and the server's errors."""
    async with mock_client(lambda request: error(status, "server says no")) as api:
        with pytest.raises(exc) as info:
            await api.get("integrations", "i1")
    err = info.value
    assert (err.method, err.path, err.status) == ("GET", "/integrations/i1", status)  # type: ignore[attr-defined]
    assert err.exit_code == exit_code  # type: ignore[attr-defined]
    assert "server says no" in str(err)
    assert TOKEN not in str(err) and TOKEN not in repr(err.__dict__)


async def test_html_error_body_still_maps() -> None:
    """A non-JSON error body (a proxy's HTML page) still gives a typed error."""
    async with mock_client(
        lambda r: httpx.Response(502, text="<html>bad gateway</html>"),
        RetryPolicy(attempts=2, wait_initial=0, wait_max=0, wait_jitter=0),
    ) as api:
        with pytest.raises(ServerError, match="502"):
            await api.get("flows", "f")


async def test_5xx_and_429_are_retried_honouring_retry_after() -> None:
    """Server errors and 429 are retried; Retry-After is honoured; the answer comes through."""
    answers = [error(503), error(429, **{"Retry-After": "0"}), httpx.Response(200, json={"ok": 1})]
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return answers.pop(0)

    sent = CountingTransport(httpx.MockTransport(handler))
    async with ApiClient("http://api.test/v1", TOKEN, transport=sent, retry=fast_retry()) as api:
        assert await api.get("flows", "f") == {"ok": 1}
    assert len(seen) == 3 and sent.sent == 3


async def test_a_429_holds_back_every_request_of_the_client() -> None:
    """A 429 is a signal to slow down for the whole client: no other request goes out
    before its Retry-After has passed, not only the refused one's retry."""
    sent: list[tuple[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append((request.url.path, time.monotonic()))
        if len(sent) == 1:
            return error(429, **{"Retry-After": "0.3"})
        return httpx.Response(200, json={})

    async with mock_client(handler) as api:
        first = asyncio.ensure_future(api.get("flows", "a"))
        while not sent:
            await asyncio.sleep(0)
        await asyncio.gather(first, api.get("flows", "b"), api.get("flows", "c"))
    refused_at = sent[0][1]
    assert len(sent) == 4
    assert all(at >= refused_at + 0.3 for _, at in sent[1:]), sent


async def test_unreachable_api_gives_up_after_the_budget() -> None:
    """Connection failures are retried at least 8 times, then ApiUnavailable (exit 5)."""
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused")

    async with mock_client(handler) as api:
        with pytest.raises(ApiUnavailable) as info:
            await api.list("integrations")
    assert calls >= 8
    assert info.value.exit_code == 5


async def test_client_errors_are_not_retried() -> None:
    """A 4xx other than 429 is answered once: repeating it cannot help."""
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return error(422)

    async with mock_client(handler) as api:
        with pytest.raises(Unprocessable):
            await api.create("flows", {})
    assert len(calls) == 1


def losing_first_answer(app: Any, method: str) -> Any:
    """An ASGI app that applies the first ``method`` request, then loses its answer."""
    lost = False

    async def wrapper(scope: Any, receive: Any, send: Any) -> None:
        nonlocal lost
        if scope["type"] == "http" and scope["method"] == method and not lost:
            lost = True

            async def swallow(message: Any) -> None:
                pass

            await app(scope, receive, swallow)
            raise httpx.RemoteProtocolError("connection reset after the change was made")
        await app(scope, receive, send)

    return wrapper


def sandbox_client(
    store: Store, token: str, wrap: Callable[[Any], Any] = lambda a: a, **client_options: Any
) -> ApiClient:
    transport = client_options.pop("transport", None)
    transport = transport or httpx.ASGITransport(app=wrap(create_app(store)))
    url = "http://sandbox.test/v1"
    client_options.setdefault("writes", WriteWays(url, forced=WriteWay.JSON_PATCH_TEST))
    return ApiClient(
        url,
        token,
        transport=transport,
        retry=client_options.pop("retry", None) or fast_retry(),
        **client_options,
    )


async def test_lost_post_answer_creates_one_document(
    sandbox_store: Store, sandbox_token: str
) -> None:
    """A POST applied but unanswered is retried without creating a second document."""
    wrap = lambda app: losing_first_answer(app, "POST")  # noqa: E731
    async with sandbox_client(sandbox_store, sandbox_token, wrap) as api:
        created = await api.create("connections", {"name": "NetSuite"})
        assert await api.list("connections") == [created]


async def test_lost_patch_answer_is_recognised_as_applied(
    sandbox_store: Store, sandbox_token: str
) -> None:
    """A retried PATCH whose test now fails (409) is recognised as already applied."""
    wrap = lambda app: losing_first_answer(app, "PATCH")  # noqa: E731
    async with sandbox_client(sandbox_store, sandbox_token, wrap) as api:
        doc = await api.create("integrations", {"mode": "install", "step": False})
        ops = [
            {"op": "test", "path": "/step", "value": False},
            {"op": "replace", "path": "/step", "value": True},
        ]
        patched = await api.patch("integrations", doc["_id"], ops)
    assert patched["step"] is True


async def test_real_conflict_after_retry_is_still_a_conflict(
    sandbox_store: Store, sandbox_token: str
) -> None:
    """A 409 on a retry whose change is not in the document stays a Conflict."""
    wrap = lambda app: losing_first_answer(app, "PATCH")  # noqa: E731
    async with sandbox_client(sandbox_store, sandbox_token, wrap) as api:
        doc = await api.create("integrations", {"a": 1})
        ops = [
            {"op": "test", "path": "/a", "value": 1},
            {"op": "replace", "path": "/a", "value": 2},
            {"op": "add", "path": "/b/-", "value": 0},
        ]
        with pytest.raises(Conflict):
            await api.patch("integrations", doc["_id"], ops)


async def test_lost_delete_answer_is_success(sandbox_store: Store, sandbox_token: str) -> None:
    """A DELETE whose answer was lost and whose retry finds nothing has succeeded."""
    wrap = lambda app: losing_first_answer(app, "DELETE")  # noqa: E731
    async with sandbox_client(sandbox_store, sandbox_token, wrap) as api:
        doc = await api.create("flows", {})
        await api.delete("flows", doc["_id"])
        assert await api.list("flows") == []
        with pytest.raises(NotFound):
            await api.delete("flows", doc["_id"])


async def test_faults_never_duplicate_or_lose_writes(
    sandbox_store: Store, sandbox_token: str
) -> None:
    """Under 500s, resets and timeouts (before or after applying), every write lands once."""

    def wrap(app: Any) -> Any:
        return FaultInjector(app, {"500": 0.15, "reset": 0.15, "timeout": 0.1}, seed=7, delay=0.001)

    retry = RetryPolicy(
        attempts=30, budget=30, wait_initial=0.001, wait_max=0.002, wait_jitter=0.001
    )
    sent = CountingTransport(httpx.ASGITransport(app=wrap(create_app(sandbox_store))))
    async with sandbox_client(sandbox_store, sandbox_token, transport=sent, retry=retry) as api:
        docs = [await api.create("connections", {"i": i, "done": False}) for i in range(30)]
        for doc in docs:
            await api.patch(
                "connections",
                doc["_id"],
                [
                    {"op": "test", "path": "/done", "value": False},
                    {"op": "replace", "path": "/done", "value": True},
                ],
            )
        stored = await api.list("connections")
    assert sorted(d["i"] for d in stored) == list(range(30))
    assert all(d["done"] for d in stored)
    assert sent.sent > 60  # faults did strike and were retried


async def test_client_stays_under_the_rate_limit(sandbox_store: Store, sandbox_token: str) -> None:
    """With the client's bucket matching the server's, the server never answers 429."""
    statuses: list[int] = []

    def count(app: Any) -> Any:
        async def wrapper(scope: Any, receive: Any, send: Any) -> None:
            async def noting(message: Any) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])
                await send(message)

            await app(scope, receive, noting)

        return wrapper

    # 10% headroom on a 100-request bucket is 100 ms at 100/s: what absorbs the gap between
    # the client's clock (departure) and the server's (arrival). The platform's own
    # 1000/300 gives 333 ms.
    limit = RateLimit(rate=100, burst=100)
    transport = httpx.ASGITransport(app=count(create_app(sandbox_store, rate=100, burst=100)))
    async with ApiClient(
        "http://s/v1", sandbox_token, transport=transport, rate_limit=limit
    ) as api:
        for _ in range(160):
            await api.list("flows")
    assert statuses.count(429) == 0 and len(statuses) == 160


async def test_list_follows_pages(sandbox_store: Store, sandbox_token: str) -> None:
    """list() gathers every page through the Link header."""
    sent = CountingTransport(httpx.ASGITransport(app=create_app(sandbox_store, page_size=2)))
    async with ApiClient("http://s/v1", sandbox_token, transport=sent) as api:
        for i in range(5):
            await api.create("exports", {"i": i})
        assert [d["i"] for d in await api.list("exports")] == [0, 1, 2, 3, 4]
        assert sent.sent == 5 + 3


async def test_application_scoped_calls(sandbox_api: ApiClient) -> None:
    """The second seed's get, patch and delete are on the client too."""
    doc = await sandbox_api.create("integrations", {"mode": "install"})
    assert (await sandbox_api.application_get("app", doc["_id"]))["mode"] == "install"
    patched = await sandbox_api.application_patch("app", doc["_id"], {"mode": "settings"})
    assert patched["mode"] == "settings"
    await sandbox_api.application_delete("app", doc["_id"])
    with pytest.raises(NotFound):
        await sandbox_api.get("integrations", doc["_id"])


async def test_rate_limited_error_carries_retry_after() -> None:
    """When 429s outlast the budget, the RateLimited error says how long to wait."""
    async with mock_client(
        lambda r: error(429, **{"Retry-After": "0"}),
        RetryPolicy(attempts=2, wait_initial=0, wait_max=0, wait_jitter=0),
    ) as api:
        with pytest.raises(RateLimited) as info:
            await api.get("flows", "x")
    assert info.value.retry_after == 0 and info.value.exit_code == 5


def test_plain_http_skips_the_ca_bundle_but_trusts_no_one() -> None:
    """An http API's client loads no CA certificates; an https one keeps httpx's default."""
    plain = tls_for("http://127.0.0.1:8700/v1")
    assert isinstance(plain, ssl.SSLContext)
    assert plain.cert_store_stats()["x509_ca"] == 0
    assert plain.verify_mode == ssl.CERT_REQUIRED and plain.check_hostname
    assert tls_for("https://api.integrator.io/v1") is True


async def test_a_lost_post_answer_is_not_resent_where_keys_are_not_honoured(
    sandbox_store: Store, sandbox_token: str
) -> None:
    """On an API whose way keeps no idempotency key, a POST whose answer was lost after it
    was applied raises AnswerLost instead of making a second document."""
    platform = WriteWays("http://sandbox.test/v1", forced=WriteWay.REPLACE_ONLY)
    async with sandbox_client(
        sandbox_store, sandbox_token, lambda app: losing_first_answer(app, "POST"), writes=platform
    ) as api:
        with pytest.raises(AnswerLost):
            await api.create("connections", {"name": "once"})
    assert len(sandbox_store.list("connections", after=0, limit=10, filters={})[0]) == 1


async def test_a_put_answered_with_no_body_reads_the_document_again() -> None:
    """Some deployments answer a PUT with 204: replace reads the document back, and the
    writer's replace_applied says there was no body."""
    stored = {"_id": "i1", "name": "after"}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            return httpx.Response(204)
        return httpx.Response(200, json=stored)

    async with mock_client(handler) as api:
        assert await api.replace_applied("integrations", "i1", {"name": "after"}) is None
        assert await api.replace("integrations", "i1", {"name": "after"}) == stored
