"""MemoryApi, the in-memory fake of the API client, behaves as the sandbox does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from benchmarks._common import RecordingApi, replay
from engine.client import ApiClient
from engine.drivers.runner import Engine
from engine.errors import Conflict, NotFound
from engine.run.journal import Journal
from installers.fakes import FakeConnector, MemoryApi


async def test_crud_and_errors() -> None:
    """Create, read, list with filters, replace, patch, delete; 404 and 409 as the API."""
    api = MemoryApi()
    a = await api.create("integrations", {"_connectorId": "c1", "n": 1})
    await api.create("integrations", {"_connectorId": "c2"})
    assert await api.get("integrations", a["_id"]) == a
    assert [d["_id"] for d in await api.list("integrations", _connectorId="c1")] == [a["_id"]]
    replaced = await api.replace("integrations", a["_id"], {"m": 2})
    assert replaced["m"] == 2 and "n" not in replaced and replaced["_id"] == a["_id"]
    merged = await api.patch("integrations", a["_id"], {"m": None, "x": {"y": 1}})
    assert merged["x"] == {"y": 1} and "m" not in merged
    with pytest.raises(Conflict):
        await api.patch("integrations", a["_id"], [{"op": "test", "path": "/x/y", "value": 2}])
    with pytest.raises(Conflict):
        await api.patch("integrations", a["_id"], [{"op": "replace", "path": "/nope", "value": 1}])
    moved = await api.patch("integrations", a["_id"], [{"op": "move", "path": "/a", "from": "/x"}])
    assert moved["a"] == {"y": 1} and "x" not in moved  # every RFC 6902 op, as the sandbox
    await api.delete("integrations", a["_id"])
    for call in (
        api.get("integrations", a["_id"]),
        api.delete("integrations", a["_id"]),
        api.replace("integrations", a["_id"], {}),
        api.patch("integrations", a["_id"], []),
    ):
        with pytest.raises(NotFound):
            await call
    assert api.bearer_token() and api.public_url is None


ops = st.lists(
    st.sampled_from(
        [
            {"op": "add", "path": "/install/-", "value": {"name": "z", "completed": False}},
            {"op": "replace", "path": "/install/0/completed", "value": True},
            {"op": "remove", "path": "/install/0"},
            {"op": "add", "path": "/a~1b", "value": [1, {"c": None}]},
            {"op": "test", "path": "/mode", "value": "install"},
            {"op": "test", "path": "/mode", "value": "settings"},
            {"op": "replace", "path": "/mode", "value": "settings"},
            {"op": "add", "path": "/install/0", "value": {"name": "first"}},
        ]
    ),
    max_size=5,
)


@given(patch=ops)
@settings(max_examples=60, deadline=None)
def test_json_patch_matches_the_sandbox(patch: list[dict[str, Any]]) -> None:
    """Any patch gives the same document, or the same refusal, as the sandbox's jsonpatch."""
    import copy

    from sandbox._patching import PatchError, apply_patch

    doc = {"mode": "install", "install": [{"name": "a", "completed": False}]}
    try:
        expected: Any = apply_patch(copy.deepcopy(doc), patch, "application/json-patch+json")
    except PatchError:
        expected = "refused"
    import asyncio

    async def on_memory() -> Any:
        api = MemoryApi()
        created = await api.create("integrations", doc)
        try:
            patched = await api.patch("integrations", created["_id"], copy.deepcopy(patch))
        except Conflict:
            return "refused", await api.get("integrations", created["_id"])
        return {k: v for k, v in patched.items() if k not in ("_id", "lastModified")}, None

    got, unchanged = asyncio.run(on_memory())
    assert got == expected
    if unchanged is not None:  # a refused patch leaves the stored document as it was
        assert {k: v for k, v in unchanged.items() if k not in ("_id", "lastModified")} == doc


async def test_engine_on_memory_api_ends_as_on_the_sandbox(
    sandbox_api: ApiClient, tmp_path: Path
) -> None:
    """An install on the fake ends in the same document as one on the real sandbox."""
    memory = RecordingApi()
    fake = FakeConnector(["a", "b"], connector_functions=True)
    on_memory = await Engine(memory, Journal(tmp_path / "m.db")).install(  # type: ignore[arg-type]
        fake.connector()
    )
    on_sandbox = await Engine(sandbox_api, Journal(tmp_path / "s.db")).install(
        FakeConnector(["a", "b"], connector_functions=True).connector()
    )

    def same(doc: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in doc.items() if k not in ("_id", "lastModified")}

    assert same(on_memory) == same(on_sandbox)
    replayed = MemoryApi()
    await replay(replayed, memory.calls)
    assert replayed._docs == memory._docs
