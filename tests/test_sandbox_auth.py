"""Tokens and scopes (401 vs 403) and the per-token rate limit."""

from __future__ import annotations

import httpx
import pytest

from sandbox import Store, create_app


def client(store: Store, token: str | None, **app_options: float) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(store, **app_options)),
        base_url="http://sandbox.test/v1",
        headers=headers,
    )


async def test_missing_and_bad_tokens_are_401_without_echo(sandbox_store: Store) -> None:
    """No token or an unknown token is 401, and the bad token is never echoed back."""
    async with client(sandbox_store, None) as anonymous:
        assert (await anonymous.get("/integrations")).status_code == 401
    async with client(sandbox_store, "secret-guess-123") as guessing:
        response = await guessing.get("/integrations")
    assert response.status_code == 401
    assert "secret-guess-123" not in response.text


@pytest.mark.parametrize(
    ("scopes", "method", "path", "allowed"),
    [
        (["integration.get"], "GET", "/integrations/x", True),
        (["integration.get"], "PATCH", "/integrations/x", False),
        (["integration.get"], "GET", "/integrations", False),
        (["integrations.get"], "GET", "/integrations", True),
        (["integrations.post"], "POST", "/integrations", True),
        (["integration.patch"], "PATCH", "/applications/a/integrations/x", True),
        (["integration.delete"], "DELETE", "/applications/a/integrations/x", True),
        (["integration.delete"], "GET", "/applications/a/integrations/x", False),
        (["integration.put"], "PUT", "/integrations/x", True),
        (["integration.*"], "DELETE", "/integrations/x", True),
        (["integration.*"], "GET", "/connections", False),
        (["resources.*"], "POST", "/connections", True),
        (["all.Application"], "DELETE", "/flows/x", True),
        (["all.Organization"], "PATCH", "/integrations/x", True),
        (["all.User.read"], "GET", "/exports", True),
        (["all.User.read"], "POST", "/exports", False),
    ],
)
async def test_scopes(
    sandbox_store: Store, scopes: list[str], method: str, path: str, allowed: bool
) -> None:
    """Each action needs its own scope or a wider one; a 403 names the missing scope."""
    token = sandbox_store.create_token(scopes)
    async with client(sandbox_store, token) as http:
        response = await http.request(method, path, json={})
    if allowed:
        assert response.status_code != 403
    else:
        assert response.status_code == 403
        message = response.json()["errors"][0]["message"]
        assert "lacks scope" in message


async def test_rate_limit_answers_429_with_retry_after(sandbox_store: Store) -> None:
    """Past the bucket, requests are 429 with a Retry-After in whole seconds."""
    token = sandbox_store.create_token(["all.User"])
    async with client(sandbox_store, token, rate=1, burst=3) as http:
        statuses = [(await http.get("/flows")) for _ in range(5)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429, 429]
    assert int(statuses[3].headers["retry-after"]) >= 1
    assert statuses[3].json()["errors"][0]["code"] == "rate_limited"


def test_tokens_are_stored_hashed(sandbox_store: Store) -> None:
    """The token table holds hashes only, never the token."""
    token = sandbox_store.create_token(["all.User"])
    rows = sandbox_store._db.execute("SELECT * FROM tokens").fetchall()
    assert token not in repr(rows)
    assert sandbox_store.token_scopes(token) == frozenset({"all.User"})
