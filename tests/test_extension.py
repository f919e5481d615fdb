"""Remote extension functions (SPEC §6): a JavaScript connector on the real npm SDK, and ours."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from engine.client import ApiClient
from engine.drivers.runner import Engine
from engine.errors import ApiUnavailable, AuthenticationFailed, StepFailed
from engine.pytest_plugin import write_connector_folder
from engine.run.journal import Journal
from installers import load_connector
from installers.remote import ExtensionServer, RemoteFunctionFailed, RemoteUnavailable

from .conftest import CLI, ROOT, Server, free_port, run_cli
from .extension_fixtures import CONNECTOR_ID, PYTHON_TWIN, TOKEN, Extension, start


def connector_dir(
    tmp_path: Path,
    functions: str | None = None,
    steps: list[tuple[str, str, str]] | None = None,
    **extra: Any,
) -> Path:
    directory = tmp_path / "connector"
    directory.mkdir(exist_ok=True)
    steps = steps or [
        ("Connection", "createConnection", "deleteConnection"),
        ("Sync", "flakyStep", "noop"),
    ]
    manifest = {
        "name": "JS Connector",
        "_connectorId": CONNECTOR_ID,
        "version": "1.0.0",
        "installerFunction": "connectorInstaller",
        "uninstallerFunction": "connectorUninstaller",
        "install": [
            {"name": n, "installerFunction": i, "uninstallerFunction": u} for n, i, u in steps
        ],
        **extra,
    }
    return write_connector_folder(directory, manifest, functions)


@pytest.fixture
def python_extension(tmp_path: Path) -> Iterator[Extension]:
    """The same protocol, served by `smartconnector extension serve` from a Python twin."""
    state = tmp_path / "py"
    state.mkdir()
    directory = connector_dir(state, PYTHON_TWIN, steps=[("Sync", "flakyStep", "noop")])
    ext = start(
        [*CLI, "extension", "serve", str(directory)],
        {"SMARTCONNECTOR_EXTENSION_TOKEN": TOKEN},
        state,
    )
    yield ext
    ext.process.terminate()
    ext.process.wait(10)


@pytest_asyncio.fixture
async def remote_api(server: Server) -> AsyncIterator[ApiClient]:
    async with ApiClient(server.url, server.token()) as api:
        yield api


async def test_js_connector_installs_resumes_and_uninstalls(
    js_extension: Extension, remote_api: ApiClient, tmp_path: Path
) -> None:
    """The JavaScript connector through our engine: a failing step, resume, reverse uninstall."""
    connector = load_connector(connector_dir(tmp_path))
    async with ExtensionServer(js_extension.url, TOKEN) as ext:
        engine = Engine(remote_api, Journal(tmp_path / "j.db"), extension=ext)
        with pytest.raises(StepFailed, match="the store is not reachable yet") as info:
            await engine.install(connector)
        doc_id = info.value.context["integration_id"]
        (js_extension.state / "fixed").write_text("")
        doc = await engine.resume(doc_id)
        assert doc["mode"] == "settings"
        connection_id = doc["install"][0]["_connectionId"]
        assert (await remote_api.get("connections", connection_id))["name"] == "JS"
        await engine.uninstall(doc_id)

    names = [c["name"] for c in js_extension.calls()]
    assert names == [
        "connectorInstaller",
        "createConnection",
        "flakyStep",
        "flakyStep",
        "noop",
        "deleteConnection",
        "connectorUninstaller",
    ]
    first = js_extension.calls()[1]["options"]
    assert first["_integrationId"] == doc_id and first["_connectorId"] == CONNECTOR_ID
    assert first["stepName"] == "Connection" and first["apiUrl"] == remote_api.base_url
    assert len(first["idempotencyKey"]) == 32 and first["opts"] == {}
    flaky = [
        c["options"]["idempotencyKey"] for c in js_extension.calls() if c["name"] == "flakyStep"
    ]
    assert flaky[0] == flaky[1]  # the same key across resumes
    with pytest.raises(Exception, match="404"):
        await remote_api.get("connections", connection_id)


def body(function: str, kind: str = "installer") -> dict[str, Any]:
    return {
        "_connectorId": CONNECTOR_ID,
        "type": kind,
        "function": function,
        "options": {"_integrationId": "i1"},
    }


async def test_every_reply_shape_of_the_sdk(js_extension: Extension) -> None:
    """Result, empty body, success:false, 422 errors[], 500 HTML, silence, 401."""
    from engine.run.functions.invoke import FunctionFailed, normalise

    async with ExtensionServer(js_extension.url, TOKEN) as ext:
        assert await ext.call(body("connectorInstaller"), 5) is None
        with pytest.raises(FunctionFailed, match="licence expired"):
            normalise(await ext.call(body("reportsFailure"), 5), "reportsFailure")
        with pytest.raises(RemoteFunctionFailed, match="not reachable yet"):
            await ext.call(body("flakyStep"), 5)
        with pytest.raises(RemoteFunctionFailed, match="doesn't map to a function"):
            await ext.call(body("noSuchFunction"), 5)
        with pytest.raises(RemoteUnavailable, match="bug in connector"):
            await ext.call(body("throwsNow"), 5)
        with pytest.raises(RemoteUnavailable, match=r"no answer within 0\.3 s"):
            await ext.call(body("neverAnswers"), 0.3)
    async with ExtensionServer(js_extension.url, "wrong-token") as ext:
        with pytest.raises(AuthenticationFailed) as info:
            await ext.call(body("connectorInstaller"), 5)
    assert info.value.exit_code == 3 and "wrong-token" not in str(info.value)


async def test_silence_is_retried_under_the_step_policy(
    js_extension: Extension, remote_api: ApiClient, tmp_path: Path
) -> None:
    """A function that never answers times out; retried per policy with the same key."""
    directory = connector_dir(tmp_path, steps=[("Hang", "neverAnswers", "noop")])
    manifest = json.loads((directory / "connector.json").read_text())
    manifest["install"][0]["policy"] = {"timeout": 0.3, "retries": 1, "retryDelay": 0.01}
    (directory / "connector.json").write_text(json.dumps(manifest))
    async with ExtensionServer(js_extension.url, TOKEN) as ext:
        engine = Engine(remote_api, Journal(tmp_path / "j.db"), extension=ext)
        with pytest.raises(StepFailed, match=r"no answer within 0\.3 s"):
            await engine.install(load_connector(directory))
    hangs = [c for c in js_extension.calls() if c["name"] == "neverAnswers"]
    assert len(hangs) == 2
    assert hangs[0]["options"]["idempotencyKey"] == hangs[1]["options"]["idempotencyKey"]


async def test_local_functions_win(
    js_extension: Extension, remote_api: ApiClient, tmp_path: Path
) -> None:
    """A connector may mix local and remote functions; a local one is never called remotely."""
    local = (
        "from installers import Registry\nregistry = Registry('mixed')\n"
        "CALLS = []\n@registry.function('sharedName')\n"
        "def shared(ctx):\n    CALLS.append(ctx.step.name)\n"
    )
    directory = connector_dir(
        tmp_path,
        local,
        steps=[("Local", "sharedName", "noop"), ("Remote", "reportsFailure", "noop")],
    )
    async with ExtensionServer(js_extension.url, TOKEN) as ext:
        engine = Engine(remote_api, Journal(tmp_path / "j.db"), extension=ext)
        with pytest.raises(StepFailed, match="licence expired"):
            await engine.install(load_connector(directory))
    names = [c["name"] for c in js_extension.calls()]
    assert "sharedName" not in names and "reportsFailure" in names


def test_cli_install_with_extension_and_unreachable_server(
    js_extension: Extension, server: Server, tmp_path: Path
) -> None:
    """The CLI drives the JS connector; an unreachable extension refuses before any change."""
    (js_extension.state / "fixed").write_text("")
    directory = connector_dir(tmp_path)
    env = {
        "SMARTCONNECTOR_API_URL": server.url,
        "SMARTCONNECTOR_API_TOKEN": server.token(),
        "SMARTCONNECTOR_EXTENSION_URL": js_extension.url,
        "SMARTCONNECTOR_EXTENSION_TOKEN": TOKEN,
    }
    plan = run_cli("plan", str(directory), home=tmp_path, env=env)
    assert plan.returncode == 0 and "/function (installer)" in plan.stdout
    out = run_cli("install", str(directory), home=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert TOKEN not in out.stdout + out.stderr

    before = len(js_extension.calls())
    env["SMARTCONNECTOR_EXTENSION_URL"] = f"http://127.0.0.1:{free_port()}"
    for args in (["plan", str(directory)], ["install", str(directory)]):
        refused = run_cli(*args, home=tmp_path / "other", env=env)
        assert refused.returncode == 5 and "unreachable" in refused.stderr
    assert len(js_extension.calls()) == before


def test_missing_function_without_extension_is_bad_input(tmp_path: Path) -> None:
    """Without --extension-url, functions that Python does not define are exit 2."""
    out = run_cli("plan", str(connector_dir(tmp_path)), home=tmp_path)
    assert out.returncode == 2 and "connectorInstaller" in out.stderr


NOOP = body("noop", "uninstaller")
PROTOCOL_CASES: list[tuple[str, dict[str, Any], dict[str, str], str]] = [
    ("success with a result", NOOP, {"authorization": f"Bearer {TOKEN}"}, ""),
    (
        "function of another type",
        body("noop", "installer"),
        {"authorization": f"Bearer {TOKEN}"},
        "",
    ),
    ("success with nothing", body("connectorInstaller"), {"authorization": f"Bearer {TOKEN}"}, ""),
    ("function error", body("flakyStep"), {"authorization": f"Bearer {TOKEN}"}, ""),
    ("success false", body("reportsFailure"), {"authorization": f"Bearer {TOKEN}"}, ""),
    ("unknown function", body("nothingHere"), {"authorization": f"Bearer {TOKEN}"}, ""),
    ("unknown type", {**NOOP, "type": "frobnicator"}, {"authorization": f"Bearer {TOKEN}"}, ""),
    (
        "no connector id",
        {k: v for k, v in NOOP.items() if k != "_connectorId"},
        {"authorization": f"Bearer {TOKEN}"},
        "",
    ),
    (
        "other connector id",
        {**NOOP, "_connectorId": "someone-else"},
        {"authorization": f"Bearer {TOKEN}"},
        "",
    ),
    (
        "no options",
        {k: v for k, v in NOOP.items() if k != "options"},
        {"authorization": f"Bearer {TOKEN}"},
        "",
    ),
    (
        "options as sent",
        {
            **body("echoOptions"),
            "options": {"_integrationId": "i1", "opts": {"edition": "premium"}, "custom": [1]},
        },
        {"authorization": f"Bearer {TOKEN}"},
        "",
    ),
    ("a DIY module", {**NOOP, "diy": True}, {"authorization": f"Bearer {TOKEN}"}, ""),
    (
        "every error of the shape at once",
        {"options": {}, "function": 3},
        {"authorization": f"Bearer {TOKEN}"},
        "",
    ),
    ("bad token", NOOP, {"authorization": "Bearer nope"}, ""),
    ("no token", NOOP, {}, ""),
    ("token in body", {**NOOP, "access_token": TOKEN}, {}, ""),
    ("token in query", NOOP, {}, f"?access_token={TOKEN}"),
    ("header beats body", {**NOOP, "access_token": TOKEN}, {"authorization": "Bearer nope"}, ""),
]


def answer(
    url: str, payload: dict[str, Any], headers: dict[str, str], query: str
) -> tuple[int, Any, str | None]:
    response = httpx.post(f"{url}/function{query}", json=payload, headers=headers, timeout=10)
    content = response.json() if response.content else None
    return response.status_code, content, response.headers.get("www-authenticate")


@pytest.mark.parametrize(
    ("case", "payload", "headers", "query"), PROTOCOL_CASES, ids=[c[0] for c in PROTOCOL_CASES]
)
def test_extension_serve_answers_as_the_sdk_does(
    js_extension: Extension,
    python_extension: Extension,
    case: str,
    payload: dict[str, Any],
    headers: dict[str, str],
    query: str,
) -> None:
    """Our `extension serve` gives the npm SDK's status, body and headers for each request."""
    assert answer(python_extension.url, payload, headers, query) == answer(
        js_extension.url, payload, headers, query
    )


def test_health_check_matches(js_extension: Extension, python_extension: Extension) -> None:
    """GET /healthCheck answers the same on both servers."""
    for path in ("/healthCheck", "/"):
        js = httpx.get(js_extension.url + path)
        py = httpx.get(python_extension.url + path)
        assert (
            (py.status_code, py.json()) == (js.status_code, js.json()) == (200, {"success": True})
        )


def test_extension_serve_needs_a_token(tmp_path: Path) -> None:
    """Without SMARTCONNECTOR_EXTENSION_TOKEN the server refuses to start (exit 2)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCONNECTOR_")}
    out = subprocess.run(
        [*CLI, "extension", "serve", str(connector_dir(tmp_path, PYTHON_TWIN))],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 2 and "SMARTCONNECTOR_EXTENSION_TOKEN" in out.stderr


async def test_extension_serve_runs_functions_against_the_api(
    server: Server, tmp_path: Path
) -> None:
    """Served Python functions get the integration from apiUrl and may use the API."""
    functions = (
        "from installers import Registry\nregistry = Registry('served')\n"
        "@registry.function('makeFlow')\nasync def make(ctx):\n"
        "    flow = await ctx.api.create('flows', {'for': ctx.integration.id,"
        " 'key': ctx.idempotency_key})\n"
        "    return {'stepsToUpdate': [{'name': ctx.step.name, '_connectionId':"
        " flow['_id']}]}\n"
        "@registry.function('noop')\ndef noop(ctx): return None\n"
    )
    state = tmp_path / "served"
    state.mkdir()
    served = connector_dir(state, functions, steps=[("Flow", "makeFlow", "noop")])
    manifest = json.loads((served / "connector.json").read_text())
    del manifest["installerFunction"], manifest["uninstallerFunction"]
    (served / "connector.json").write_text(json.dumps(manifest))
    ext_server = start(
        [*CLI, "extension", "serve", str(served)], {"SMARTCONNECTOR_EXTENSION_TOKEN": TOKEN}, state
    )
    try:
        caller = tmp_path / "caller"
        caller.mkdir()
        (caller / "connector.json").write_text(json.dumps(manifest))
        async with (
            ApiClient(server.url, server.token()) as api,
            ExtensionServer(ext_server.url, TOKEN) as ext,
        ):
            engine = Engine(api, Journal(tmp_path / "j.db"), extension=ext)
            doc = await engine.install(load_connector(caller))
            flow = await api.get("flows", doc["install"][0]["_connectionId"])
        assert flow["for"] == doc["_id"]
    finally:
        ext_server.process.terminate()
        ext_server.process.wait(10)


def test_extension_unreachable_error_names_it() -> None:
    """ApiUnavailable from a health check names the extension URL (exit 5)."""
    import asyncio

    async def check() -> None:
        async with ExtensionServer(f"http://127.0.0.1:{free_port()}", TOKEN) as ext:
            await ext.check_health()

    with pytest.raises(ApiUnavailable, match=r"extension server http://127\.0\.0\.1") as info:
        asyncio.run(check())
    assert info.value.exit_code == 5
