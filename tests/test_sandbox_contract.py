"""The sandbox answers every route of SPEC §5 with the documented status codes and shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from sandbox import RESOURCES, Store, create_app

JSON_PATCH = {"content-type": "application/json-patch+json"}


@pytest_asyncio.fixture
async def http(sandbox_store: Store, sandbox_token: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(sandbox_store, page_size=3)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://sandbox.test/v1",
        headers={"authorization": f"Bearer {sandbox_token}"},
    ) as client:
        yield client


def errors_of(response: httpx.Response) -> list[dict[str, Any]]:
    body = response.json()
    assert set(body) == {"errors"}
    for error in body["errors"]:
        assert isinstance(error["code"], str) and isinstance(error["message"], str)
    return body["errors"]  # type: ignore[no-any-return]


async def test_create_get_list_replace_delete(
    http: httpx.AsyncClient, seed_document: dict[str, Any]
) -> None:
    """CRUD keeps the document as given and stamps _id and lastModified itself."""
    given = {k: v for k, v in seed_document.items() if k not in ("_id", "lastModified")}
    given["somethingUnknown"] = {"nested": [1, None, "x"]}
    created = await http.post("/integrations", json=given)
    assert created.status_code == 201
    doc = created.json()
    assert {k: v for k, v in doc.items() if k not in ("_id", "lastModified")} == given
    assert (await http.get(f"/integrations/{doc['_id']}")).json() == doc
    assert doc in (await http.get("/integrations")).json()

    replaced = await http.put(
        f"/integrations/{doc['_id']}", json={"mode": "settings", "_id": "ignored"}
    )
    assert replaced.status_code == 200
    assert replaced.json()["_id"] == doc["_id"]
    assert "install" not in replaced.json()
    assert replaced.json()["lastModified"] > doc["lastModified"]

    assert (await http.delete(f"/integrations/{doc['_id']}")).status_code == 204
    assert (await http.get(f"/integrations/{doc['_id']}")).status_code == 404


@pytest.mark.parametrize("resource", RESOURCES)
async def test_every_resource_has_every_method(http: httpx.AsyncClient, resource: str) -> None:
    """connections, exports, imports and flows behave as integrations do."""
    created = (await http.post(f"/{resource}", json={"name": "n"})).json()
    path = f"/{resource}/{created['_id']}"
    assert (await http.patch(path, json={"name": "m"})).json()["name"] == "m"
    assert (await http.put(path, json={"name": "o"})).json()["name"] == "o"
    assert (await http.get(path)).json()["name"] == "o"
    assert (await http.delete(path)).status_code == 204
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        missing = await http.request(method, path, json={})
        assert missing.status_code == 404, method
        assert errors_of(missing)[0]["code"] == "not_found"


async def test_json_patch_and_failed_test(http: httpx.AsyncClient) -> None:
    """JSON Patch applies; a failing test op is 409 and changes nothing."""
    doc = (await http.post("/integrations", json={"mode": "install", "n": 1})).json()
    path = f"/integrations/{doc['_id']}"
    ok = await http.patch(
        path,
        json=[
            {"op": "test", "path": "/mode", "value": "install"},
            {"op": "replace", "path": "/mode", "value": "settings"},
        ],
        headers=JSON_PATCH,
    )
    assert ok.status_code == 200 and ok.json()["mode"] == "settings"
    conflict = await http.patch(
        path,
        json=[
            {"op": "test", "path": "/mode", "value": "install"},
            {"op": "replace", "path": "/n", "value": 2},
        ],
        headers=JSON_PATCH,
    )
    assert conflict.status_code == 409
    assert errors_of(conflict)[0]["code"] == "conflict"
    assert (await http.get(path)).json() == ok.json()


async def test_merge_patch_removes_with_null(http: httpx.AsyncClient) -> None:
    """A merge patch merges objects and removes members set to null (RFC 7386)."""
    doc = (await http.post("/integrations", json={"a": {"b": 1, "c": 2}, "d": 3})).json()
    patched = await http.patch(
        f"/integrations/{doc['_id']}",
        json={"a": {"b": None}, "d": 4},
        headers={"content-type": "application/merge-patch+json"},
    )
    assert patched.json()["a"] == {"c": 2} and patched.json()["d"] == 4


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"{not json", {}, 400),
        (b'[{"op": "explode", "path": "/a"}]', JSON_PATCH, 400),
        (b'[{"op": "add", "path": "/a"}]', JSON_PATCH, 400),
        (b'{"a": 1}', JSON_PATCH, 400),
        (b'"text"', {}, 400),
        (b'[{"op": "remove", "path": "/missing"}]', JSON_PATCH, 409),
        (b'[{"op": "replace", "path": "", "value": [1]}]', JSON_PATCH, 422),
    ],
)
async def test_bad_patches_change_nothing(
    http: httpx.AsyncClient, body: bytes, headers: dict[str, str], status: int
) -> None:
    """Malformed or inapplicable patches get their 4xx with errors[] and leave the document."""
    doc = (await http.post("/integrations", json={"a": 0})).json()
    path = f"/integrations/{doc['_id']}"
    response = await http.patch(
        path, content=body, headers=headers or {"content-type": "application/json"}
    )
    assert response.status_code == status
    errors_of(response)
    assert (await http.get(path)).json() == doc


@pytest.mark.parametrize(
    ("method", "body", "status"),
    [
        ("POST", b"{oops", 400),
        ("POST", b"[1, 2]", 422),
        ("POST", b"x" * (5 * 1024 * 1024 + 1), 413),
    ],
)
async def test_bad_bodies_store_nothing(
    http: httpx.AsyncClient, method: str, body: bytes, status: int
) -> None:
    """Malformed, non-object and oversized bodies are refused and nothing is stored."""
    response = await http.request(
        method, "/integrations", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status
    errors_of(response)
    assert (await http.get("/integrations")).json() == []


async def test_unknown_route_and_method(http: httpx.AsyncClient) -> None:
    """Unknown routes are 404 and wrong methods 405, both with errors[]."""
    assert errors_of(await http.get("/nothing-here"))[0]["code"] == "not_found"
    response = await http.post("/integrations/abc", json={})
    assert response.status_code == 405
    assert errors_of(response)[0]["code"] == "method_not_allowed"


async def test_application_scoped_actions(http: httpx.AsyncClient) -> None:
    """GET, merge PATCH and DELETE under /applications/{app}/integrations/{id} (second seed)."""
    doc = (await http.post("/integrations", json={"mode": "install", "x": 1})).json()
    path = f"/applications/575ec8687ae143cd83dc4a97/integrations/{doc['_id']}"
    assert (await http.get(path)).json() == doc
    patched = await http.patch(path, json={"mode": "settings", "x": None})
    assert patched.status_code == 200
    assert patched.json()["mode"] == "settings" and "x" not in patched.json()
    bad = await http.patch(path, json=[{"op": "remove", "path": "/mode"}])
    assert bad.status_code == 400
    deleted = await http.delete(path)
    assert (deleted.status_code, deleted.json()) == (200, {"success": True})
    for method in ("GET", "PATCH", "DELETE"):
        assert (await http.request(method, path, json={})).status_code == 404


async def test_paging_follows_link_header(http: httpx.AsyncClient) -> None:
    """Long lists are paged; each page's Link rel=next leads to the next."""
    ids = [(await http.post("/flows", json={"i": i})).json()["_id"] for i in range(7)]
    seen: list[str] = []
    response = await http.get("/flows")
    while True:
        seen += [d["_id"] for d in response.json()]
        if "next" not in response.links:
            break
        response = await http.get(response.links["next"]["url"])
    assert seen == ids


async def test_filter_by_connector_id(http: httpx.AsyncClient) -> None:
    """GET /integrations?_connectorId= returns only that connector's integrations."""
    mine = (await http.post("/integrations", json={"_connectorId": "c1"})).json()
    await http.post("/integrations", json={"_connectorId": "c2"})
    assert (await http.get("/integrations", params={"_connectorId": "c1"})).json() == [mine]


async def test_idempotency_key_returns_the_first_document(http: httpx.AsyncClient) -> None:
    """A POST repeated with the same Idempotency-Key does not create a second document."""
    headers = {"idempotency-key": "k1"}
    first = await http.post("/connections", json={"n": 1}, headers=headers)
    again = await http.post("/connections", json={"n": 1}, headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json() == first.json()
    assert len((await http.get("/connections")).json()) == 1


async def test_lastmodified_strictly_increases(http: httpx.AsyncClient) -> None:
    """Back-to-back writes get distinct lastModified values, so it works as a CAS guard."""
    doc = (await http.post("/integrations", json={"n": 0})).json()
    stamps = [doc["lastModified"]]
    for i in range(5):
        stamps.append(
            (await http.patch(f"/integrations/{doc['_id']}", json={"n": i})).json()["lastModified"]
        )
    assert stamps == sorted(set(stamps))


async def test_healthz_needs_no_token(sandbox_store: Store) -> None:
    """GET /healthz answers 200 without authentication."""
    transport = httpx.ASGITransport(app=create_app(sandbox_store))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/healthz")).status_code == 200


async def test_cursor_beyond_64_bits_is_a_bad_request(http: httpx.AsyncClient) -> None:
    """A paging cursor SQLite cannot hold is a 400, not a server error (found by schemathesis)."""
    response = await http.get("/flows", params={"after": 2**63})
    assert response.status_code == 400
    errors_of(response)


async def test_405_lists_every_method_of_the_path(http: httpx.AsyncClient) -> None:
    """Allow names all methods served at the path, though each has its own route."""
    response = await http.request("OPTIONS", "/integrations/abc")
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET, PATCH, PUT"
