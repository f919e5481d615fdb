"""The State API: the sandbox serves it as the platform does, and ctx.api reaches it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.client import ApiClient
from engine.drivers.runner import Engine
from engine.errors import NotFound
from engine.run.journal import Journal
from installers import Registry
from installers.fakes import FakeConnector, MemoryApi
from sandbox import Store, create_app


@pytest.fixture
def raw(sandbox_store: Store, sandbox_token: str) -> httpx.Client:
    """Plain HTTP to the sandbox app, to check routes and statuses as a client sees them."""
    transport = httpx.ASGITransport(app=create_app(sandbox_store))
    return httpx.AsyncClient(  # type: ignore[return-value]
        transport=transport,
        base_url="http://sandbox.test/v1",
        headers={"Authorization": f"Bearer {sandbox_token}"},
    )


async def test_state_routes_as_the_platform_has_them(raw: Any) -> None:
    """Global keys, keys under a document (not listed globally), 404s, and deletion."""
    assert (await raw.get("/state")).json() == {"keys": []}
    assert (await raw.get("/state/cursor")).status_code == 404
    assert (await raw.put("/state/cursor", json={"since": 42})).status_code == 200
    assert (await raw.put("/state/flag", json=True)).status_code == 200
    assert (await raw.get("/state/cursor")).json() == {"since": 42}
    assert (await raw.get("/state")).json() == {"keys": ["cursor", "flag"]}

    doc = (await raw.post("/integrations", json={"name": "x"})).json()
    under = f"/integrations/{doc['_id']}/state"
    assert (await raw.put(f"{under}/page", json=[1, 2])).status_code == 200
    assert (await raw.get(under)).json() == {"keys": ["page"]}
    assert (await raw.get("/state")).json() == {"keys": ["cursor", "flag"]}
    assert (await raw.get(f"{under}/page")).json() == [1, 2]
    assert (await raw.get("/integrations/nope/state")).status_code == 404

    assert (await raw.delete("/state/flag")).status_code == 204
    assert (await raw.delete("/state/flag")).status_code == 404
    assert (await raw.delete(f"/integrations/{doc['_id']}")).status_code == 204
    assert (await raw.get("/state")).json() == {"keys": ["cursor"]}


async def test_state_needs_a_token_and_answers_errors_in_shape(raw: Any) -> None:
    """No token: 401 with errors[]; a key too long: 400."""
    anonymous = await raw.get("/state", headers={"Authorization": ""})
    assert anonymous.status_code == 401 and anonymous.json()["errors"][0]["code"]
    assert (await raw.get("/state/" + "k" * 600)).status_code == 400


@pytest.mark.parametrize("api_kind", ["sandbox", "memory"])
async def test_ctx_api_keeps_state_for_a_connector(
    api_kind: str, sandbox_api: ApiClient, tmp_path: Path
) -> None:
    """A function keeps a cursor with put_state and reads it back on its next run; state
    under the integration goes with it. The fake API behaves as the sandbox."""
    api: Any = sandbox_api if api_kind == "sandbox" else MemoryApi()
    seen: list[Any] = []
    fake = FakeConnector(["sync"])
    registry: Registry = fake.registry
    registry._functions.pop("install sync")

    @registry.function("install sync")
    async def sync(ctx: Any) -> None:
        try:
            seen.append(await ctx.api.get_state("cursor"))
        except NotFound:
            seen.append(None)
        await ctx.api.put_state("cursor", {"page": len(seen)})
        await ctx.api.put_state("last", "ok", resource="integrations", id=ctx.integration.id)

    engine = Engine(api, Journal(tmp_path / "j.db"))
    first = await engine.install(fake.connector())
    second = await engine.install(fake.connector())
    assert seen == [None, {"page": 1}]
    assert await api.state_keys(resource="integrations", id=first["_id"]) == ["last"]
    assert await api.get_state("last", resource="integrations", id=second["_id"]) == "ok"
    await engine.uninstall(first["_id"], fake.connector())
    with pytest.raises(NotFound):
        await api.state_keys(resource="integrations", id=first["_id"])
    await api.delete_state("cursor")
    assert await api.state_keys() == []
