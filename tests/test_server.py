"""The sandbox as a real server on a loopback port: health, access log, tokens, faults."""

from __future__ import annotations

import importlib.abc
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from benchmarks._common import CountingTransport
from engine.client import ApiClient
from engine.errors import PermissionDenied
from engine.policy import RetryPolicy
from engine.writes import WriteWay, WriteWays

from .conftest import CLI, Server, start_server


def test_healthz_and_one_access_line_per_request(server: Server) -> None:
    """GET /healthz is 200, and each request logs one line with method, path and status."""
    token = server.token()
    assert httpx.get(server.url.removesuffix("/v1") + "/healthz").status_code == 200
    marker = f"/v1/flows/missing-{time.monotonic_ns()}"
    response = httpx.get(
        server.url.removesuffix("/v1") + marker, headers={"authorization": f"Bearer {token}"}
    )
    assert response.status_code == 404
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [
            json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")
        ]
        hits = [line for line in lines if line.get("path") == marker]
        if hits:
            break
        time.sleep(0.05)
    assert len(hits) == 1
    assert (hits[0]["method"], hits[0]["status"]) == ("GET", 404)
    assert token not in server.log.read_text()


def test_token_create_while_serving_prints_only_the_token(server: Server) -> None:
    """`sandbox token create` works while the server runs and prints the token alone."""
    out = subprocess.run(
        [
            *CLI,
            "sandbox",
            "token",
            "create",
            "--scopes",
            "integration.get,integrations.get",
            "--db",
            str(server.db),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    token = out.stdout.strip()
    assert out.stdout == token + "\n" and len(token) > 20
    response = httpx.get(f"{server.url}/integrations", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_token_create_refuses_unknown_scopes(tmp_path: Path) -> None:
    """An unknown scope is bad input (exit 2) naming the scope; no token is printed."""
    out = subprocess.run(
        [
            *CLI,
            "sandbox",
            "token",
            "create",
            "--scopes",
            "integration.fly",
            "--db",
            str(tmp_path / "s.db"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert out.stdout == "" and "integration.fly" in out.stderr


async def test_missing_scope_is_named_over_the_network(server: Server) -> None:
    """A token without the scope gets 403 naming it, through the real client."""
    async with ApiClient(server.url, server.token("integration.get")) as api:
        with pytest.raises(PermissionDenied, match=r"integrations\.post"):
            await api.create("integrations", {"mode": "install"})


class _LookupRecorder(importlib.abc.MetaPathFinder):
    """Notes every module Python searches for (imports of loaded modules never get here)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, name: str, path: object, target: object = None) -> None:
        self.names.append(name)


async def test_requests_search_for_no_modules(server: Server) -> None:
    """Once warm, a request imports nothing: an import that fails on every request (as
    httpcore's of ``sniffio`` does when it is missing) is a search of sys.path each time."""
    async with ApiClient(server.url, server.token()) as api:
        doc = await api.create("integrations", {"mode": "install", "install": []})
        await api.patch("integrations", doc["_id"], {"warm": True})
        recorder = _LookupRecorder()
        sys.meta_path.insert(0, recorder)
        try:
            for i in range(3):
                await api.patch(
                    "integrations", doc["_id"], [{"op": "add", "path": "/n", "value": i}]
                )
            await api.get("integrations", doc["_id"])
        finally:
            sys.meta_path.remove(recorder)
    assert recorder.names == []


async def test_network_faults_are_survived(tmp_path: Path) -> None:
    """Against real resets and timeouts (before and after applying) every write lands once."""
    srv = start_server(
        tmp_path,
        "--faults",
        "500:0.1,reset:0.15,timeout:0.1",
        "--seed",
        "3",
        "--fault-delay",
        "0.2",
    )
    try:
        retry = RetryPolicy(
            attempts=20, budget=60, wait_initial=0.01, wait_max=0.05, wait_jitter=0.01
        )
        sandbox = WriteWays(srv.url, forced=WriteWay.JSON_PATCH_TEST)  # it keeps their keys
        sent = CountingTransport(httpx.AsyncHTTPTransport())
        async with ApiClient(
            srv.url, srv.token(), transport=sent, retry=retry, timeout=5, writes=sandbox
        ) as api:
            made = [await api.create("connections", {"i": i}) for i in range(20)]
            for doc in made:
                await api.patch(
                    "connections",
                    doc["_id"],
                    [
                        {"op": "test", "path": "/i", "value": doc["i"]},
                        {"op": "add", "path": "/seen", "value": True},
                    ],
                )
            stored = await api.list("connections")
        assert sorted(d["i"] for d in stored) == list(range(20))
        assert all(d.get("seen") for d in stored)
        assert sent.sent > 40
        assert '"status": "dropped"' in srv.log.read_text()
    finally:
        srv.stop()


def test_bad_faults_spec_is_bad_input(tmp_path: Path) -> None:
    """--faults that cannot be parsed exits 2 naming the part."""
    out = subprocess.run(
        [*CLI, "sandbox", "serve", "--faults", "503:0.1", "--db", str(tmp_path / "s.db")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2 and "503:0.1" in out.stderr
