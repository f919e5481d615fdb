"""Telemetry off costs nothing: the CLI now against the same CLI from just before telemetry
came in (its tree taken from git), side by side; and what tracing costs when on."""

from __future__ import annotations

import compileall
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path
from typing import Any

from benchmarks._common import ROOT, Row, SandboxServer, Sizes, noop_connector

#: The file whose first commit brought telemetry in: the tree before it is the baseline.
MARKER = "engine/telemetry/__init__.py"


def before_telemetry(into: Path) -> Path | None:
    """The engine's packages as they were just before telemetry, written under ``into``;
    ``None`` outside a git checkout that has that history."""

    def git(*args: str) -> bytes:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=True).stdout

    try:
        added = git("log", "--diff-filter=A", "--format=%H", "--", MARKER).split()
        if not added:
            return None
        archive = git("archive", f"{added[-1].decode()}^", "engine", "installers", "sandbox")
    except (OSError, subprocess.CalledProcessError):
        return None
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    for package in ("engine", "installers", "sandbox"):
        compileall.compile_dir(into / package, quiet=1)
    return into


@contextmanager
def otlp_sink() -> Iterator[str]:
    """An OTLP/HTTP endpoint that accepts every export (the cost of decoding is a
    collector's, not the engine's)."""

    class Accept(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Accept)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def telemetry(sizes: Sizes) -> list[Row]:
    """A 200-step install, `--help` and `status`: now with telemetry off, and before it."""
    steps = sizes.overhead_steps
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        before = before_telemetry(tmp / "before")
        if before is None:
            return [Row("telemetry off against before it", "—", "—", "no git history", "—")]
        connector = noop_connector(tmp / "connector", steps)
        server = SandboxServer(tmp)
        try:
            with otlp_sink() as endpoint:
                times = _measure(
                    sizes, server, connector, {"now": ROOT, "before": before}, endpoint
                )
        finally:
            server.stop()
    return _rows(times, steps)


Job = Callable[[], tuple[Path, list[str], dict[str, str]]]


def _measure(
    sizes: Sizes, server: SandboxServer, connector: Path, trees: dict[str, Path], endpoint: str
) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """Each command's (CPU seconds, wall seconds) per run, the commands interleaved."""
    home = connector.parent / "home"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SMARTCONNECTOR_"))}
    base |= {"SMARTCONNECTOR_LOG_FORMAT": "json", "SMARTCONNECTOR_HOME": str(home)}
    status_id = _run(ROOT, ["install", str(noop_connector(home.parent / "one", 1))], base)[0]

    def install(tree: Path, extra: dict[str, str]) -> Job:
        def job() -> tuple[Path, list[str], dict[str, str]]:
            token = server.token()  # each run its own token: its own rate-limit bucket
            env = {**base, "SMARTCONNECTOR_API_URL": server.url, **extra}
            return tree, ["install", str(connector)], env | {"SMARTCONNECTOR_API_TOKEN": token}

        return job

    jobs: dict[tuple[str, str], Job] = {}
    for name, tree in trees.items():
        jobs["install", name] = install(tree, {})
        jobs["help", name] = lambda tree=tree: (tree, ["--help"], base)
        jobs["status", name] = lambda tree=tree: (tree, ["status", status_id], base)
    jobs["install", "traced"] = install(ROOT, {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    for job in jobs.values():  # warm the caches once for all
        _run(*job())
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(max(3, 2 * sizes.repeats)):  # interleaved, so drift hits all alike
        for key, job in jobs.items():
            times.setdefault(key, []).append(_run(*job())[1:])
    return times


def _run(tree: Path, args: list[str], env: dict[str, str]) -> tuple[str, float, float]:
    """``python -m engine ARGS`` from ``tree``'s packages: its last line of output, the CPU
    seconds it used (user and system) and the wall seconds it took."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "engine", *args],
        env={**env, "PYTHONPATH": str(tree)},
        cwd=tree,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:  # say why: the output is the only trace of it
        raise RuntimeError(
            f"smartconnector {' '.join(args)} from {tree} exited {out.returncode}:"
            f" {out.stderr[-2000:]}"
        )
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    lines = out.stdout.strip().splitlines()
    return (lines[-1] if lines else ""), cpu, wall


def _rows(times: dict[tuple[str, str], list[tuple[float, float]]], steps: int) -> list[Row]:
    """CPU time is what the command itself costs, whatever else the machine runs (the
    differences sought are smaller than what others' work does to wall time); the median
    of each, the fastest wall time beside it."""
    cpu = {key: statistics.median(c for c, _ in runs) for key, runs in times.items()}
    wall = {key: min(w for _, w in runs) for key, runs in times.items()}

    def shown(key: tuple[str, str]) -> str:
        return f"{cpu[key]:.3f} s CPU ({wall[key]:.3f} s wall)"

    rows = []
    for command, what in (
        ("install", f"install of {steps} no-op steps via the CLI, loopback sandbox server"),
        ("help", "`smartconnector --help`"),
        ("status", "`smartconnector status ID` (embedded sandbox)"),
    ):
        now, before = (command, "now"), (command, "before")
        rows.append(
            Row(
                f"telemetry off: {what}, against the code just before telemetry"
                f" ({len(times[now])} runs each, interleaved)",
                shown(now),
                shown(before),
                f"CPU ratio {cpu[now] / cpu[before]:.3f}"
                f" ({(cpu[now] - cpu[before]) * 1000:+.0f} ms)",
                "ratio ≤ 1.03",
            )
        )
    traced, off = ("install", "traced"), ("install", "now")
    rows.append(
        Row(
            f"telemetry on: the same {steps}-step install exporting its trace over OTLP/HTTP",
            shown(traced),
            shown(off) + " (off)",
            f"+{(cpu[traced] - cpu[off]) / steps * 1000:.2f} ms CPU/step"
            f" (ratio {cpu[traced] / cpu[off]:.2f})",
            "—",
        )
    )
    return rows
