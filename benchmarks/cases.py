"""The benchmarks: overhead against the least possible HTTP, request counts, a fleet of
in-flight integrations, and start-up time. Each returns table rows with its baseline."""

from __future__ import annotations

import asyncio
import compileall
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

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
    rollout=1_000,
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


# -- 1. overhead against the least HTTP the job needs ------------------------------------------

NOOP_FUNCTIONS = """
from installers import Registry
registry = Registry("bench")

@registry.function("noop")
async def noop(ctx):
    return None
"""


def noop_connector(directory: Path, steps: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "functions.py").write_text(NOOP_FUNCTIONS)
    (directory / "connector.json").write_text(
        json.dumps(
            {
                "name": "bench",
                "_connectorId": "bench",
                "version": "1",
                "install": [
                    {"name": f"s{i}", "installerFunction": "noop", "uninstallerFunction": "noop"}
                    for i in range(steps)
                ],
            }
        )
    )
    return directory


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


class SandboxServer:
    """`smartconnector sandbox serve` on a loopback port, for the duration of a benchmark."""

    def __init__(self, tmp: Path) -> None:
        self.db = tmp / "bench.db"
        self.log = tmp / "server.log"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/v1"
        env = {**os.environ, "SMARTCONNECTOR_LOG_FORMAT": "json"}
        self.process = subprocess.Popen(
            [*CLI, "sandbox", "serve", "--port", str(port), "--db", str(self.db)],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        self._wait_until_ready()

    def api_requests(self) -> list[dict[str, Any]]:
        """The access log's API requests so far."""
        lines = [json.loads(x) for x in self.log.read_text().splitlines() if x.startswith("{")]
        return [x for x in lines if str(x.get("path", "")).startswith("/v1/")]

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url.removesuffix("/v1") + "/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("sandbox server did not start")

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


#: The packages the design asks for, besides httpx: their import alone is the least start-up
#: any engine built on them can have.
DESIGN_PACKAGES = "httpx, pydantic.main, structlog, transitions"

#: What the engine is built on, imported before its first request (typer._adapters is what
#: typer loads to run a command; pydantic.main is BaseModel, as ``import pydantic`` is lazy).
#: The baseline needs httpx alone.
ENGINE_LIBRARIES = (
    "httpx, asyncio, anyio._backends._asyncio, typer.main, typer._adapters, pydantic.main,"
    " structlog, transitions.extensions.asyncio, sqlite3, aiolimiter, jsonpointer"
)


def import_time(libraries: str, cwd: Path, repeats: int) -> float:
    """Median wall time of a fresh interpreter importing ``libraries`` (frozen before exit,
    as the CLI and the baseline script are)."""
    command = [sys.executable, "-c", f"import {libraries}; import gc; gc.freeze()"]
    return median_time(lambda: subprocess.run(command, check=True, cwd=cwd), repeats)


def overhead(sizes: Sizes) -> list[Row]:
    """The CLI against the least-HTTP script, at N steps and at 1 step: the 1-step runs give
    start-up, the difference between the two sizes the cost of a step."""
    steps = sizes.overhead_steps
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        connectors = {n: noop_connector(tmp / f"connector-{n}", n) for n in (1, steps)}
        server = SandboxServer(tmp)
        try:

            def ours(token: str, n: int) -> None:
                env = {
                    **os.environ,
                    "SMARTCONNECTOR_API_URL": server.url,
                    "SMARTCONNECTOR_API_TOKEN": token,
                    "SMARTCONNECTOR_HOME": str(tmp / "home"),
                    "SMARTCONNECTOR_LOG_FORMAT": "json",
                }
                subprocess.run(
                    [*CLI, "install", str(connectors[n])],
                    env=env,
                    check=True,
                    capture_output=True,
                    cwd=ROOT,
                )

            def baseline(token: str, n: int, *flags: str) -> None:
                subprocess.run(
                    [
                        sys.executable,
                        str(ROOT / "benchmarks" / "baseline_install.py"),
                        server.url,
                        str(n),
                        *flags,
                    ],
                    input=token + "\n",
                    text=True,
                    check=True,
                    capture_output=True,
                    cwd=ROOT,
                )

            def async_baseline(token: str, n: int) -> None:
                baseline(token, n, "--async")

            def timed(run: Callable[[str, int], None], n: int) -> float:
                token = server.token()  # each run its own token: its own rate-limit bucket
                began = time.perf_counter()
                run(token, n)
                return time.perf_counter() - began

            timed(ours, steps)  # warm the caches once for both
            timed(baseline, steps)
            times: dict[tuple[str, int], list[float]] = {}
            for _ in range(sizes.repeats):  # interleaved, so drift hits both alike
                for n in (steps, 1):
                    for name, run in (
                        ("ours", ours),
                        ("baseline", baseline),
                        ("async", async_baseline),
                    ):
                        times.setdefault((name, n), []).append(timed(run, n))
        finally:
            server.stop()
        repeats = max(5, sizes.repeats)
        imports = {
            lib: import_time(lib, tmp, repeats)
            for lib in (ENGINE_LIBRARIES, DESIGN_PACKAGES, "httpx")
        }
    m = {key: statistics.median(values) for key, values in times.items()}
    o, b = m["ours", steps], m["baseline", steps]
    o1, b1 = m["ours", 1], m["baseline", 1]
    a, a1 = m["async", steps], m["async", 1]

    def per_step(total: float, one: float) -> float:
        return (total - one) / (steps - 1) * 1000

    o_step, b_step, a_step = per_step(o, o1), per_step(b, b1), per_step(a, a1)
    lib, design, httpx_only = (imports[x] for x in (ENGINE_LIBRARIES, DESIGN_PACKAGES, "httpx"))
    return [
        Row(
            f"install of {steps} no-op steps via the CLI, loopback sandbox server",
            f"{o:.3f} s ({o / steps * 1000:.2f} ms/step)",
            f"{b:.3f} s ({b / steps * 1000:.2f} ms/step)",
            f"ratio {o / b:.2f}",
            "ratio ≤ 1.10",
        ),
        Row(
            "… of which start-up: the same install of 1 step",
            f"{o1:.3f} s",
            f"{b1:.3f} s",
            f"+{(o1 - b1) * 1000:.0f} ms",
            "—",
        ),
        Row(
            f"… of which each step: ({steps}-step time - 1-step time) / {steps - 1}",
            f"{o_step:.2f} ms",
            f"{b_step:.2f} ms",
            f"+{o_step - b_step:.2f} ms (ratio {o_step / b_step:.2f})",
            "—",
        ),
        Row(
            "… each step's floor on asyncio: the least-HTTP script on `httpx.AsyncClient`",
            f"{a_step:.2f} ms",
            f"{b_step:.2f} ms (`httpx.Client`)",
            f"+{a_step - b_step:.2f} ms",
            "—",
        ),
        Row(
            "… start-up floor: importing the libraries the engine is built on"
            " (httpx, asyncio + anyio, typer, pydantic, structlog, transitions, sqlite3)",
            f"{lib:.3f} s",
            f"{httpx_only:.3f} s (httpx alone)",
            f"+{(lib - httpx_only) * 1000:.0f} ms",
            "—",
        ),
        Row(
            "… of which the packages the design names (pydantic, structlog, transitions):"
            " their import alone, against what a ratio of 1.10 leaves",
            f"{design:.3f} s",
            f"{httpx_only:.3f} s (httpx alone)",
            f"+{(design - httpx_only) * 1000:.0f} ms, of a budget of {b * 100:.0f} ms"
            " (10% of the baseline)",
            "—",
        ),
    ]


# -- 2. requests an install makes ---------------------------------------------------------------


async def requests(sizes: Sizes) -> list[Row]:
    from engine.client import ApiClient
    from engine.journal import Journal
    from engine.runner import Engine
    from installers.fakes import FakeConnector
    from sandbox import Store, create_app

    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        store = Store(tmp / "s.db")
        transport = httpx.ASGITransport(app=create_app(store, rate=1e9, burst=1e9))
        async with ApiClient(
            "http://s/v1", store.create_token(["all.User"]), transport=transport
        ) as api:
            engine = Engine(api, Journal(tmp / "j.db"))
            for n in sizes.request_steps:
                before = api.requests_sent
                await engine.install(FakeConnector(n).connector())
                sent = api.requests_sent - before
                rows.append(
                    Row(
                        f"HTTP requests of a {n}-step install",
                        str(sent),
                        f"{n + 2} (N + 2)",
                        "exactly" if sent == n + 2 else "MORE",
                        "N + 2",
                    )
                )
        store.close()
    return rows


# -- 3. a fleet of in-flight integrations, engine alone -------------------------------------------


def fleet(sizes: Sizes) -> list[Row]:
    from engine.cli._fleet import fleet_gc

    memory = asyncio.run(_fleet_memory(sizes.fleet))
    rows = [
        Row(
            f"memory per in-flight integration ({sizes.fleet:,} at once, tracemalloc)",
            f"{memory / 1024:.1f} KB",
            "—",
            f"{memory / 1024:.1f} KB",
            "≤ 20 KB",
        )
    ]
    settings: list[tuple[str, contextlib.AbstractContextManager[None]]] = [
        ("default GC", contextlib.nullcontext()),
        ("GC as `rollout` sets it", fleet_gc()),
    ]
    for label, gc_setting in settings:
        with gc_setting:
            ours, baseline, transitions = asyncio.run(_fleet_speed(sizes.fleet, sizes.fleet_steps))
        alone = transitions / (ours - baseline)
        rows.append(
            Row(
                f"engine transitions/s, one core, fake API, {label} ({sizes.fleet:,} integrations"
                f" in flight x {sizes.fleet_steps + 1} transitions)",
                f"{transitions / ours:,.0f}/s counting the fake API's time",
                f"{transitions / baseline:,.0f}/s (the same calls replayed on the fake API)",
                f"engine alone {alone:,.0f}/s",
                "≥ 20,000/s",
            )
        )
    return rows


def _gated_connector(steps: int, gate: asyncio.Event | None) -> Any:
    from installers import Registry
    from installers.fakes import FakeConnector

    fake = FakeConnector(steps)
    registry = Registry("fleet")

    async def wait(ctx: Any) -> None:
        if gate is not None:
            await gate.wait()

    for function in fake.functions:
        registry.add(function, wait, origin="benchmark")
    fake.registry = registry
    return fake.connector()


async def _fleet_memory(count: int) -> float:
    from engine.journal import Journal
    from engine.runner import Engine
    from installers.fakes import MemoryApi

    gate = asyncio.Event()
    connector = _gated_connector(1, gate)
    engine = Engine(MemoryApi(), Journal(Path(":memory:")))  # type: ignore[arg-type]
    await engine.install(_gated_connector(1, None))  # warm caches and lazy imports
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tasks = [asyncio.create_task(engine.install(connector)) for _ in range(count)]
    while len(engine.known) < count + 1:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    in_flight = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    gate.set()
    await asyncio.gather(*tasks)
    return in_flight / count


async def _fleet_speed(count: int, steps: int) -> tuple[float, float, int]:
    from engine.journal import Journal
    from engine.runner import Engine
    from installers.fakes import MemoryApi

    api = MemoryApi()
    api.recorded = []
    engine = Engine(api, Journal(Path(":memory:")))  # type: ignore[arg-type]
    connector = _gated_connector(steps, None)
    began = time.perf_counter()
    await asyncio.gather(*(engine.install(connector) for _ in range(count)))
    ours = time.perf_counter() - began
    transitions = count * (steps + 1)

    # the baseline: the very same creates and PATCHes, sent to the fake API with no engine
    calls, bare = api.recorded, MemoryApi()
    began = time.perf_counter()
    await bare.replay(calls)
    baseline = time.perf_counter() - began
    assert bare._docs == api._docs, "the replay must end where the engine did"
    return ours, baseline, transitions


# -- 5. a rollout at the platform's rate limit ---------------------------------------------------

UPDATE_FUNCTIONS = (
    NOOP_FUNCTIONS
    + """
@registry.function("connectorUpdate")
async def update(ctx):
    return None
"""
)


def rollout_rate(sizes: Sizes) -> list[Row]:
    """A rollout of many integrations through the CLI against `sandbox serve` at its default
    limit (bucket 1000, 300/s): the request rate it sustains, and any 429 that surfaced."""
    from sandbox import Store

    count = sizes.rollout
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server = SandboxServer(tmp)
        try:
            store = Store(server.db)
            step = {
                "name": "s0",
                "installerFunction": "noop",
                "uninstallerFunction": "noop",
                "completed": True,
            }
            for _ in range(count):
                store.create(
                    "integrations",
                    {
                        "name": "bench",
                        "_connectorId": "bench-rollout",
                        "version": "1",
                        "mode": "settings",
                        "install": [step],
                        "settings": {},
                    },
                )
            store.close()
            directory = tmp / "v2"
            directory.mkdir()
            (directory / "functions.py").write_text(UPDATE_FUNCTIONS)
            (directory / "connector.json").write_text(
                json.dumps(
                    {
                        "name": "bench",
                        "_connectorId": "bench-rollout",
                        "version": "2",
                        "updateFunction": "connectorUpdate",
                        "install": [{k: v for k, v in step.items() if k != "completed"}],
                    }
                )
            )
            env = {
                **os.environ,
                "SMARTCONNECTOR_API_URL": server.url,
                "SMARTCONNECTOR_API_TOKEN": server.token(),
                "SMARTCONNECTOR_HOME": str(tmp / "home"),
                "SMARTCONNECTOR_LOG_FORMAT": "json",
            }
            before = len(server.api_requests())
            began = time.perf_counter()
            out = subprocess.run(
                [*CLI, "rollout", str(directory), "--all", "--concurrency", "50", "--json"],
                env=env,
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            elapsed = time.perf_counter() - began
            summary = json.loads(out.stdout)
            requests = server.api_requests()[before:]
        finally:
            server.stop()
    rate = len(requests) / elapsed
    throttled = sum(1 for r in requests if r.get("status") == 429)
    sustained = _sustained_rate(requests, skip=len(requests) // 2)
    return [
        Row(
            f"rollout of {count:,} integrations via the CLI, `sandbox serve` at its default limit",
            f"{sustained:.0f} requests/s over the run's second half ({rate:.0f}/s"
            f" overall: {len(requests):,} in {elapsed:.1f} s); {summary['counts']['updated']:,}"
            f" updated, {summary['counts']['failed']} failed; {throttled} answered 429",
            "300 requests/s (the limit)",
            f"{sustained / 300:.0%} of the limit, sustained",
            "≥ 90% of 300/s, no 429 failing",
        )
    ]


def _sustained_rate(requests: list[dict[str, Any]], skip: int) -> float:
    """Requests per second after the first ``skip``, from the access log: the rate once the
    bucket's burst allowance (1,000 requests) is spent."""
    from datetime import datetime

    stamps = [
        datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")).timestamp()
        for r in requests[skip:]
    ]
    if len(stamps) < 2:
        return float("nan")
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


# -- 4. start-up ---------------------------------------------------------------------------------


def startup(sizes: Sizes) -> list[Row]:
    repeats = max(5, sizes.repeats)
    cli = str(Path(sys.executable).parent / "smartconnector")
    python = median_time(
        lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), repeats
    )
    helped = median_time(
        lambda: subprocess.run([cli, "--help"], check=True, capture_output=True), repeats
    )
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SMARTCONNECTOR_HOME": tmp, "SMARTCONNECTOR_LOG_FORMAT": "json"}
        out = subprocess.run(
            [cli, "install", str(noop_connector(Path(tmp) / "c", 1))],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        doc_id = out.stdout.strip().splitlines()[-1]
        status = median_time(
            lambda: subprocess.run(
                [cli, "status", doc_id], env=env, check=True, capture_output=True
            ),
            repeats,
        )
    return [
        Row(
            "`smartconnector --help`",
            f"{helped:.3f} s",
            f"{python:.3f} s (`python -c pass`)",
            f"{helped:.3f} s",
            "< 0.3 s",
        ),
        Row(
            "`smartconnector status ID` (embedded sandbox)",
            f"{status:.3f} s",
            f"{python:.3f} s (`python -c pass`)",
            f"{status:.3f} s",
            "—",
        ),
    ]
