"""The sandbox's platform profiles serve only what the platform's docs promise (SPEC §5a)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from engine.client import ApiClient
from engine.drivers.config import SANDBOX_PROFILE_ENV, Settings, open_client
from sandbox import INTEGRATION_FIELDS, PROFILES, RESOURCES, Store, create_app

from .conftest import EXAMPLE, run_cli

JSON_PATCH = {"content-type": "application/json-patch+json"}


def client_for(store: Store, token: str, profile: str, **options: Any) -> httpx.AsyncClient:
    app = create_app(store, profile=profile, **options)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://sandbox.test/v1",
        headers={"authorization": f"Bearer {token}"},
    )


@pytest_asyncio.fixture
async def http(sandbox_store: Store, sandbox_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(sandbox_store, sandbox_token, "platform", page_size=3) as client:
        yield client


@pytest_asyncio.fixture
async def put_only(sandbox_store: Store, sandbox_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(sandbox_store, sandbox_token, "put-only") as client:
        yield client


@pytest.fixture
def integration(seed_document: dict[str, Any]) -> dict[str, Any]:
    """The seed's integration as a new one: the server makes _id and lastModified."""
    return {k: v for k, v in seed_document.items() if k not in ("_id", "lastModified")}


def errors_of(response: httpx.Response) -> list[dict[str, Any]]:
    body = response.json()
    assert set(body) == {"errors"}
    for error in body["errors"]:
        assert isinstance(error["code"], str) and isinstance(error["message"], str)
    return body["errors"]  # type: ignore[no-any-return]


async def created(http: httpx.AsyncClient, doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    response = await http.post("/integrations", json=doc)
    assert response.status_code == 201
    made: dict[str, Any] = response.json()
    return f"/integrations/{made['_id']}", made


def replace(path: str, value: Any) -> dict[str, Any]:
    return {"op": "replace", "path": path, "value": value}


def test_unknown_profile_is_a_value_error_naming_the_allowed(sandbox_store: Store) -> None:
    """create_app refuses a profile it does not know, naming every one it does."""
    assert PROFILES == ("default", "platform", "put-only")
    with pytest.raises(ValueError, match="'nonsense'") as refused:
        create_app(sandbox_store, profile="nonsense")
    assert all(name in str(refused.value) for name in PROFILES)


async def test_replace_answers_204_with_no_body(
    http: httpx.AsyncClient, integration: dict[str, Any]
) -> None:
    """replace ops on documented fields and paths below them apply, answered 204, no body."""
    path, doc = await created(http, integration)
    ops = [
        replace("/mode", "settings"),
        replace("/install/2/completed", True),
        replace("/settings/sections", []),
        replace("/version", "1.1.0"),
        replace("/updateInProgress", False),
    ]
    response = await http.patch(path, json=ops, headers=JSON_PATCH)
    assert (response.status_code, response.content) == (204, b"")
    now = (await http.get(path)).json()
    assert (now["mode"], now["version"], now["updateInProgress"]) == ("settings", "1.1.0", False)
    assert now["install"][2]["completed"] is True and now["settings"]["sections"] == []
    assert now["settings"]["commonresources"] == doc["settings"]["commonresources"]
    assert now["lastModified"] > doc["lastModified"]


async def test_replace_of_a_missing_key_sets_it(http: httpx.AsyncClient) -> None:
    """Unlike strict RFC 6902, replace of a key missing under an existing object sets it."""
    path, _ = await created(http, {"name": "n", "settings": {}, "install": [{"name": "a"}]})
    ops = [
        replace("/description", "set"),
        replace("/settings/newKey", {"x": 1}),
        replace("/install/0/_connectionId", "c1"),
    ]
    assert (await http.patch(path, json=ops, headers=JSON_PATCH)).status_code == 204
    now = (await http.get(path)).json()
    assert now["description"] == "set" and now["settings"] == {"newKey": {"x": 1}}
    assert now["install"] == [{"name": "a", "_connectionId": "c1"}]


@pytest.mark.parametrize(
    "where",
    ["/settings/missing/x", "/install/9", "/install/9/completed", "/install/-", "/mode/x"],
)
async def test_replace_through_a_missing_parent_or_index_is_400(
    http: httpx.AsyncClient, integration: dict[str, Any], where: str
) -> None:
    """A path through a missing parent, a scalar, or past an array's end is 400; no change."""
    path, doc = await created(http, integration)
    ops = [replace("/mode", "settings"), replace(where, 1)]
    response = await http.patch(path, json=ops, headers=JSON_PATCH)
    assert response.status_code == 400
    assert f"operation 1: path {where!r}" in errors_of(response)[0]["message"]
    assert (await http.get(path)).json() == doc


@pytest.mark.parametrize(
    "op",
    [
        {"op": "test", "path": "/mode", "value": "install"},
        {"op": "add", "path": "/settings/x", "value": 1},
        {"op": "remove", "path": "/description"},
        {"op": "move", "from": "/name", "path": "/description"},
        {"op": "copy", "from": "/name", "path": "/description"},
    ],
    ids=lambda op: str(op["op"]),
)
async def test_other_operations_are_400_naming_the_op(
    http: httpx.AsyncClient, integration: dict[str, Any], op: dict[str, Any]
) -> None:
    """test, add, remove, move and copy are refused with 400 naming the op; nothing changes."""
    path, doc = await created(http, {**integration, "description": "d"})
    response = await http.patch(path, json=[replace("/mode", "settings"), op], headers=JSON_PATCH)
    assert response.status_code == 400
    assert repr(op["op"]) in errors_of(response)[0]["message"]
    assert (await http.get(path)).json() == doc


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ({"mode": "settings"}, "application/json"),
        ({"mode": "settings"}, "application/merge-patch+json"),
        ({"mode": "settings"}, "application/json-patch+json"),
        ([replace("/mode", "settings")], "application/merge-patch+json"),
    ],
)
async def test_merge_patch_is_400_whatever_the_content_type(
    http: httpx.AsyncClient, integration: dict[str, Any], body: Any, content_type: str
) -> None:
    """A merge patch, by its body or its content type, is 400 saying so; nothing changes."""
    path, doc = await created(http, integration)
    response = await http.patch(path, json=body, headers={"content-type": content_type})
    assert response.status_code == 400
    assert "merge patch" in errors_of(response)[0]["message"]
    assert (await http.get(path)).json() == doc


@pytest.mark.parametrize(
    "where", ["/smartconnector", "/smartconnector/lease", "/_connectorId", "/lastModified", ""]
)
async def test_paths_outside_the_documented_fields_are_400_naming_the_path(
    http: httpx.AsyncClient, integration: dict[str, Any], where: str
) -> None:
    """replace of a field the docs list no PATCH for is 400 naming the path; nothing changes."""
    path, doc = await created(http, integration)
    response = await http.patch(path, json=[replace(where, "x")], headers=JSON_PATCH)
    assert response.status_code == 400
    assert repr(where) in errors_of(response)[0]["message"]
    assert (await http.get(path)).json() == doc


async def test_unknown_top_level_fields_are_dropped_on_post_and_put(
    http: httpx.AsyncClient, integration: dict[str, Any]
) -> None:
    """POST and PUT keep only the schema's top-level fields; inside steps and settings, all."""
    integration["install"][0]["custom"] = {"kept": True}
    integration["settings"]["anything"] = [1, 2]
    extra = {"smartconnector": {"lease": {"owner": "x"}}, "createdAt": "2020-01-01", "n": 1}
    path, doc = await created(http, {**integration, **extra})
    assert set(doc) <= INTEGRATION_FIELDS and doc.keys() == {*integration, "_id", "lastModified"}
    assert doc["install"] == integration["install"] and doc["settings"] == integration["settings"]
    assert (await http.get(path)).json() == doc

    replaced = (await http.put(path, json={**doc, **extra, "mode": "settings"})).json()
    assert not extra.keys() & replaced.keys() and replaced["mode"] == "settings"
    assert (await http.get(path)).json() == replaced


async def test_patch_leaves_no_unknown_field(
    sandbox_store: Store, sandbox_token: str, http: httpx.AsyncClient
) -> None:
    """After a PATCH the integration holds only schema fields, even one stored with more."""
    async with client_for(sandbox_store, sandbox_token, "default") as permissive:
        path, _ = await created(permissive, {"mode": "install", "smartconnector": {"x": 1}})
    ops = [replace("/mode", "settings")]
    assert (await http.patch(path, json=ops, headers=JSON_PATCH)).status_code == 204
    assert "smartconnector" not in (await http.get(path)).json()


@pytest.mark.parametrize("resource", RESOURCES)
async def test_idempotency_key_is_not_honoured(http: httpx.AsyncClient, resource: str) -> None:
    """A POST repeated with the same Idempotency-Key creates a second document."""
    headers = {"idempotency-key": "k1"}
    first = await http.post(f"/{resource}", json={"name": "n"}, headers=headers)
    again = await http.post(f"/{resource}", json={"name": "n"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json()["_id"] != again.json()["_id"]
    assert len((await http.get(f"/{resource}")).json()) == 2


async def test_state_api_works_and_goes_with_the_integration(
    http: httpx.AsyncClient, sandbox_store: Store
) -> None:
    """State under an integration and the account's own state work, and DELETE takes the
    integration's state with it."""
    path, doc = await created(http, {"name": "n"})
    assert (await http.put(f"{path}/state/lease", json={"owner": "me"})).status_code == 200
    assert (await http.get(f"{path}/state/lease")).json() == {"owner": "me"}
    assert (await http.get(f"{path}/state")).json() == {"keys": ["lease"]}
    assert (await http.put("/state/cursor", json=5)).status_code == 200
    assert (await http.delete(path)).status_code == 204
    assert sandbox_store.state_keys(f"integrations/{doc['_id']}") == []
    assert (await http.get(f"{path}/state/lease")).status_code == 404
    assert (await http.get("/state/cursor")).json() == 5


async def test_reads_put_and_delete_are_as_the_default(http: httpx.AsyncClient) -> None:
    """GET, the _connectorId filter, Link paging, whole-document PUT and DELETE are unchanged."""
    mine = [(await created(http, {"_connectorId": "c1", "version": str(i)}))[1] for i in range(4)]
    await created(http, {"_connectorId": "c2"})
    seen: list[dict[str, Any]] = []
    response = await http.get("/integrations", params={"_connectorId": "c1"})
    while True:
        seen += response.json()
        if "next" not in response.links:
            break
        response = await http.get(response.links["next"]["url"])
    assert seen == mine
    path = f"/integrations/{mine[0]['_id']}"
    replaced = (await http.put(path, json={"mode": "settings"})).json()
    assert replaced.keys() == {"_id", "lastModified", "mode"}
    assert (await http.delete(path)).status_code == 204
    missing = await http.get(path)
    assert missing.status_code == 404 and errors_of(missing)[0]["code"] == "not_found"


async def test_other_resources_patch_as_the_default(http: httpx.AsyncClient) -> None:
    """Connections (and exports, imports, flows) keep unknown fields and take any patch."""
    made = (await http.post("/connections", json={"name": "n", "custom": 1})).json()
    path = f"/connections/{made['_id']}"
    ops = [{"op": "test", "path": "/custom", "value": 1}, {"op": "add", "path": "/x", "value": 2}]
    patched = await http.patch(path, json=ops, headers=JSON_PATCH)
    assert patched.status_code == 200 and patched.json()["x"] == 2
    assert (await http.patch(path, json={"custom": None})).json().get("custom") is None


async def test_rate_limit_answers_429_with_retry_after(
    sandbox_store: Store, sandbox_token: str
) -> None:
    """Over the token's bucket, 429 with Retry-After and code rate_limited, as the default."""
    async with client_for(sandbox_store, sandbox_token, "platform", burst=2, rate=0.01) as http:
        for _ in range(2):
            assert (await http.get("/integrations")).status_code == 200
        limited = await http.get("/integrations")
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert errors_of(limited)[0]["code"] == "rate_limited"


async def test_application_scoped_patch_keeps_only_schema_fields(
    http: httpx.AsyncClient,
) -> None:
    """The second seed's merge patch can change an integration but not add unknown fields."""
    path, doc = await created(http, {"mode": "install"})
    app_path = f"/applications/a1/integrations/{doc['_id']}"
    patched = await http.patch(app_path, json={"mode": "settings", "smartconnector": {}})
    assert patched.status_code == 200 and patched.json()["mode"] == "settings"
    assert "smartconnector" not in (await http.get(path)).json()


async def test_put_only_answers_405_to_patch_and_put_works(
    put_only: httpx.AsyncClient, integration: dict[str, Any]
) -> None:
    """put-only has no PATCH of integrations (405, Allow without PATCH); PUT replaces."""
    path, doc = await created(put_only, integration)
    refused = await put_only.patch(path, json=[replace("/mode", "settings")], headers=JSON_PATCH)
    assert refused.status_code == 405
    assert errors_of(refused)[0]["code"] == "method_not_allowed"
    assert set(refused.headers["allow"].split(", ")) == {"GET", "PUT", "DELETE"}
    assert (await put_only.get(path)).json() == doc
    whole = {**copy.deepcopy(doc), "mode": "settings", "smartconnector": {"lease": {}}}
    replaced = await put_only.put(path, json=whole)
    assert replaced.status_code == 200 and replaced.json()["mode"] == "settings"
    assert "smartconnector" not in (await put_only.get(path)).json()
    key = {"idempotency-key": "k"}
    again = [(await put_only.post("/flows", json={}, headers=key)).json() for _ in "ab"]
    assert again[0]["_id"] != again[1]["_id"]


def test_openapi_documents_what_each_profile_serves(sandbox_store: Store) -> None:
    """The default's OpenAPI document is unchanged by naming it; platform's PATCH of an
    integration declares replace only and 204; put-only's declares none."""
    documents = {p: create_app(sandbox_store, profile=p).openapi() for p in PROFILES}
    assert create_app(sandbox_store).openapi() == documents["default"]
    item = "/v1/integrations/{id}"
    platform_patch = documents["platform"]["paths"][item]["patch"]
    assert "204" in platform_patch["responses"] and "200" not in platform_patch["responses"]
    body = platform_patch["requestBody"]["content"]["application/json-patch+json"]["schema"]
    assert body["items"]["properties"]["op"] == {"enum": ["replace"]}
    assert "application/merge-patch+json" not in platform_patch["requestBody"]["content"]
    assert "patch" not in documents["put-only"]["paths"][item]
    assert "patch" in documents["put-only"]["paths"]["/v1/connections/{id}"]


@pytest.mark.parametrize(("profile", "kept"), [(None, True), ("platform", False)])
async def test_embedded_sandbox_serves_the_profile_the_environment_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, profile: str | None, kept: bool
) -> None:
    """The engine's embedded sandbox serves $SMARTCONNECTOR_SANDBOX_PROFILE, else default."""
    if profile is None:
        monkeypatch.delenv(SANDBOX_PROFILE_ENV, raising=False)
    else:
        monkeypatch.setenv(SANDBOX_PROFILE_ENV, profile)
    async with open_client(Settings(home=tmp_path)) as api:
        doc = await api.create("integrations", {"name": "n", "smartconnector": {}})
    assert ("smartconnector" in doc) is kept


def test_plugin_sandbox_serves_the_profile_the_environment_names(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """The pytest plugin's sandbox_api fixture serves $SMARTCONNECTOR_SANDBOX_PROFILE too."""
    monkeypatch.setenv(SANDBOX_PROFILE_ENV, "platform")
    api: ApiClient = request.getfixturevalue("sandbox_api")
    doc = asyncio.run(api.create("integrations", {"name": "n", "smartconnector": {}}))
    assert "smartconnector" not in doc


def test_sandbox_serve_with_a_bad_profile_exits_2(tmp_path: Path) -> None:
    """sandbox serve --profile nonsense is a usage error: exit 2, one line naming the allowed."""
    db = tmp_path / "s.db"
    out = run_cli("sandbox", "serve", "--profile", "nonsense", "--db", str(db), home=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "'nonsense'" in out.stderr and all(name in out.stderr for name in PROFILES)
    assert not db.exists()


def test_embedded_sandbox_with_a_bad_profile_exits_2_and_makes_nothing(tmp_path: Path) -> None:
    """A bad $SMARTCONNECTOR_SANDBOX_PROFILE is a usage error before the sandbox is made."""
    home = tmp_path / "home"
    out = run_cli("install", str(EXAMPLE), home=home, env={SANDBOX_PROFILE_ENV: "nonsense"})
    assert out.returncode == 2 and SANDBOX_PROFILE_ENV in out.stderr
    assert all(name in out.stderr for name in PROFILES) and "Traceback" not in out.stderr
    assert not (home / "sandbox.db").exists()
