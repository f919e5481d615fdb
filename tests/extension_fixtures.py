"""Fixtures for the remote extension tests: a Node server on the real npm SDK."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import free_port

JS_DIR = Path(__file__).parent / "extension_js"
CONNECTOR_ID = "5ca2e8a82c14ff0838165e1e"
TOKEN = "extension-system-token-0123456789"

PYTHON_TWIN = """
from installers import Registry

registry = Registry("python twin")

class StoreUnreachable(Exception):
    code = "store_unreachable"

@registry.function("connectorInstaller")
def connector_installer(ctx):
    return None

@registry.function("flakyStep")
def flaky_step(ctx):
    raise StoreUnreachable("the store is not reachable yet")

@registry.function("reportsFailure")
def reports_failure(ctx):
    return {"success": False, "message": "licence expired"}

@registry.function("noop")
def noop(ctx):
    return {"success": True}

@registry.function("echoOptions")
def echo_options(ctx):
    return {"success": True, "options": ctx.options}
"""


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """The npm SDK, installed once into a cache folder."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed: the JavaScript extension tests need them")
    cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = cache_root / "smartconnector-tests" / "extension-js"
    cache.mkdir(parents=True, exist_ok=True)
    wanted = (JS_DIR / "package.json").read_text()
    installed = cache / "node_modules" / "integrator-extension" / "package.json"
    with (cache / ".lock").open("w") as lock:  # the suite's workers install it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not installed.exists() or (cache / "package.json").read_text() != wanted:
            shutil.copy(JS_DIR / "package.json", cache / "package.json")
            shutil.copy(JS_DIR / ".npmrc", cache / ".npmrc")
            subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=cache,
                check=True,
                timeout=600,
            )
    return cache / "node_modules"


@dataclass
class Extension:
    url: str
    state: Path
    process: subprocess.Popen[bytes]

    def calls(self) -> list[dict[str, Any]]:
        log = self.state / "calls.log"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]


def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthCheck", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"extension server exited with {process.returncode}")
        time.sleep(0.1)
    raise RuntimeError("extension server did not start")


def start(command: list[str], env: dict[str, str], state: Path) -> Extension:
    port = free_port()
    process = subprocess.Popen(
        [*command, "--port", str(port)] if command[0] != "node" else command,
        env={**os.environ, **env, "PORT": str(port)},
        stdout=(state / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, process)
    return Extension(url, state, process)


@pytest.fixture
def js_extension(node_modules: Path, tmp_path: Path) -> Iterator[Extension]:
    """The JavaScript connector behind a Node server running the npm SDK."""
    state = tmp_path / "js"
    state.mkdir()
    ext = start(
        ["node", str(JS_DIR / "server.js")],
        {
            "NODE_PATH": str(node_modules),
            "EXTENSION_TOKEN": TOKEN,
            "CONNECTOR_ID": CONNECTOR_ID,
            "STATE_DIR": str(state),
        },
        state,
    )
    yield ext
    ext.process.terminate()
    ext.process.wait(10)
