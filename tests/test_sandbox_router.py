"""The sandbox's plain router answers exactly as FastAPI's app over the same routes, and the
everyday commands never import what they do not use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from sandbox import PROFILES, Store, create_app

ADMIN = ["all.User"]
#: Each request as (method, path, body, headers); ``{id}`` is the first document's id.
EXCHANGE: list[tuple[str, str, Any, dict[str, str]]] = [
    ("POST", "/integrations", {"name": "a", "_connectorId": "c"}, {"idempotency-key": "k"}),
    ("POST", "/integrations", {"name": "b", "_connectorId": "c"}, {}),
    ("POST", "/integrations", {"name": "c"}, {}),
    ("POST", "/integrations", [1], {}),
    ("POST", "/connections", b"{not json", {}),
    ("GET", "/integrations/{id}", None, {}),
    ("GET", "/integrations/missing", None, {}),
    ("GET", "/integrations", None, {}),
    ("GET", "/integrations?limit=2", None, {}),
    ("GET", "/integrations?limit=1&after=1", None, {}),
    ("GET", "/integrations?_connectorId=c&name=b", None, {}),
    ("GET", "/integrations?limit=0", None, {}),
    ("GET", "/integrations?limit=+2", None, {}),
    ("GET", "/integrations?after=99999999999999999999", None, {}),
    ("PATCH", "/integrations/{id}", [{"op": "replace", "path": "/name", "value": "z"}], {}),
    ("PATCH", "/integrations/{id}", [{"op": "test", "path": "/name", "value": "no"}], {}),
    ("PATCH", "/integrations/{id}", [{"op": "bogus", "path": "/name"}], {}),
    ("PATCH", "/integrations/{id}", {"mode": "settings"}, {}),
    ("PUT", "/integrations/{id}", {"name": "put", "mode": "install"}, {}),
    ("PUT", "/integrations/missing", {"name": "put"}, {}),
    ("PUT", "/state/cursor", {"at": 3}, {}),
    ("GET", "/state/cursor", None, {}),
    ("GET", "/state", None, {}),
    ("PUT", "/integrations/{id}/state/k", [1, 2], {}),
    ("GET", "/integrations/{id}/state", None, {}),
    ("GET", "/integrations/missing/state/k", None, {}),
    ("DELETE", "/state/cursor", None, {}),
    ("DELETE", "/state/cursor", None, {}),
    ("GET", "/applications/x/integrations/{id}", None, {}),
    ("PATCH", "/applications/x/integrations/{id}", {"name": "m"}, {}),
    ("GET", "/integrations/{id}", None, {"authorization": "Bearer wrong"}),
    ("GET", "/integrations/{id}", None, {"authorization": ""}),
    ("POST", "/integrations/{id}", {}, {}),
    ("GET", "/nowhere", None, {}),
    ("DELETE", "/applications/x/integrations/{id}", None, {}),
    ("DELETE", "/integrations/{id}", None, {}),
]


async def replay(profile: str, through_router: bool, tmp: Path) -> list[tuple[Any, ...]]:
    store = Store(tmp / f"{profile}-{through_router}.db")
    token = store.create_token(ADMIN)
    app = create_app(store, page_size=2, profile=profile)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app if through_router else app.framework),
        base_url="http://sandbox.test/v1",
        headers={"authorization": f"Bearer {token}"},
    )
    answers: list[tuple[Any, ...]] = []
    first = ""
    for method, path, body, headers in EXCHANGE:
        content = body if isinstance(body, bytes) else None if body is None else json.dumps(body)
        kind = "application/json-patch+json" if isinstance(body, list) else "application/json"
        response = await client.request(
            method,
            path.replace("{id}", first),
            content=content,
            headers={"content-type": kind, **headers},
        )
        if not first and response.status_code == 201:
            first = response.json()["_id"]
        text = response.text.replace(first, "ID") if first else response.text
        kept = {k: v for k, v in response.headers.items() if k in ("allow", "link", "retry-after")}
        answers.append((method, path, response.status_code, _stable(text), kept))
    return answers


def _stable(text: str) -> Any:
    """The body without what differs between two stores: ids and timestamps."""
    try:
        body = json.loads(text)
    except ValueError:
        return text

    def scrub(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: "*" if k in ("_id", "lastModified") else scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        return value

    return scrub(body)


async def test_the_router_answers_as_fastapi_does(tmp_path: Path) -> None:
    """Every kind of request (each route, bad bodies, bad queries, unknown paths and methods,
    missing or bad tokens) gets the same status, body and headers from the router as from
    FastAPI's app over the same routes, in every profile."""
    for profile in PROFILES:
        ours = await replay(profile, True, tmp_path)
        assert ours == await replay(profile, False, tmp_path)


def test_no_two_routes_match_one_request() -> None:
    """Which of the router and FastAPI's app matched a request cannot change its answer."""
    app = create_app(Store(":memory:"))
    for route in app.routes:
        sample = route.path.replace("{", "").replace("}", "")
        matching = [r for r in app.routes if r.method == route.method and r.pattern().match(sample)]
        assert matching == [route]


def run_python(code: str, cwd: Path) -> dict[str, bool]:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=cwd
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_reading_a_document_imports_no_web_framework(tmp_path: Path) -> None:
    """The embedded sandbox reads and patches a document without importing FastAPI."""
    found = run_python(
        "import json, sys, httpx\n"
        "from sandbox import Store, create_app\n"
        "store = Store('s.db'); token = store.create_token(['all.User'])\n"
        "app = create_app(store)\n"
        "async def main():\n"
        "    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),\n"
        "            base_url='http://x/v1', headers={'authorization': 'Bearer ' + token}) as c:\n"
        "        doc = (await c.post('/integrations', json={'name': 'a'})).json()\n"
        "        await c.patch(f'/integrations/{doc[\"_id\"]}', json={'name': 'b'})\n"
        "        assert (await c.get(f'/integrations/{doc[\"_id\"]}')).json()['name'] == 'b'\n"
        "import asyncio; asyncio.run(main())\n"
        "print(json.dumps({'fastapi': 'fastapi' in sys.modules}))\n",
        tmp_path,
    )
    assert found == {"fastapi": False}


def test_help_imports_no_event_loop_and_no_markdown(tmp_path: Path) -> None:
    """``--help`` loads neither asyncio nor rich.markdown (Typer's help needs neither)."""
    found = run_python(
        "import json, sys\n"
        "sys.argv = ['smartconnector', '--help']\n"
        "from engine.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(json.dumps({m: m in sys.modules for m in ('asyncio', 'rich.markdown')}))\n",
        tmp_path,
    )
    assert found == {"asyncio": False, "rich.markdown": False}
