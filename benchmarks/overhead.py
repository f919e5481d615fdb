"""The CLI's overhead against the least HTTP the job needs: start-up and per step."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks._common import (
    CLI,
    DESIGN_PACKAGES,
    ENGINE_LIBRARIES,
    ROOT,
    Row,
    SandboxServer,
    Sizes,
    import_time,
    noop_connector,
)

#: Seconds of each install, by way ("ours", "baseline", "async") and number of steps.
Times = dict[tuple[str, int], list[float]]


def overhead(sizes: Sizes) -> list[Row]:
    """The CLI against the least-HTTP script, at N steps and at 1 step: the 1-step runs give
    start-up, the difference between the two sizes the cost of a step."""
    steps = sizes.overhead_steps
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        times = _install_times(tmp, steps, sizes.repeats)
        repeats = max(5, sizes.repeats)
        imports = {
            lib: import_time(lib, tmp, repeats)
            for lib in (ENGINE_LIBRARIES, DESIGN_PACKAGES, "httpx")
        }
    medians = {key: statistics.median(values) for key, values in times.items()}
    return [
        *_install_rows(medians, steps),
        *_step_rows(medians, steps),
        *_import_rows(imports, medians["baseline", steps]),
    ]


@dataclass
class _Installs:
    """The installs of 1 or ``steps`` no-op steps, each way, against one sandbox server."""

    server: SandboxServer
    tmp: Path
    connectors: dict[int, Path]

    def ours(self, token: str, n: int) -> None:
        env = {
            **os.environ,
            "SMARTCONNECTOR_API_URL": self.server.url,
            "SMARTCONNECTOR_API_TOKEN": token,
            "SMARTCONNECTOR_HOME": str(self.tmp / "home"),
            "SMARTCONNECTOR_LOG_FORMAT": "json",
        }
        subprocess.run(
            [*CLI, "install", str(self.connectors[n])],
            env=env,
            check=True,
            capture_output=True,
            cwd=ROOT,
        )

    def baseline(self, token: str, n: int, *flags: str) -> None:
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "benchmarks" / "baseline_install.py"),
                self.server.url,
                str(n),
                *flags,
            ],
            input=token + "\n",
            text=True,
            check=True,
            capture_output=True,
            cwd=ROOT,
        )

    def async_baseline(self, token: str, n: int) -> None:
        self.baseline(token, n, "--async")

    def timed(self, run: Callable[[str, int], None], n: int) -> float:
        token = self.server.token()  # each run its own token: its own rate-limit bucket
        began = time.perf_counter()
        run(token, n)
        return time.perf_counter() - began


def _install_times(tmp: Path, steps: int, repeats: int) -> Times:
    """Seconds of each way's install of ``steps`` steps and of 1 step, ``repeats`` times."""
    connectors = {n: noop_connector(tmp / f"connector-{n}", n) for n in (1, steps)}
    server = SandboxServer(tmp)
    try:
        installs = _Installs(server, tmp, connectors)
        installs.timed(installs.ours, steps)  # warm the caches once for both
        installs.timed(installs.baseline, steps)
        times: Times = {}
        for _ in range(repeats):  # interleaved, so drift hits both alike
            for n in (steps, 1):
                for name, run in (
                    ("ours", installs.ours),
                    ("baseline", installs.baseline),
                    ("async", installs.async_baseline),
                ):
                    times.setdefault((name, n), []).append(installs.timed(run, n))
    finally:
        server.stop()
    return times


def _install_rows(medians: dict[tuple[str, int], float], steps: int) -> list[Row]:
    """The install of ``steps`` steps, and its start-up: the same install of 1 step."""
    ours, baseline = medians["ours", steps], medians["baseline", steps]
    ours_one, baseline_one = medians["ours", 1], medians["baseline", 1]
    return [
        Row(
            f"install of {steps} no-op steps via the CLI, loopback sandbox server",
            f"{ours:.3f} s ({ours / steps * 1000:.2f} ms/step)",
            f"{baseline:.3f} s ({baseline / steps * 1000:.2f} ms/step)",
            f"ratio {ours / baseline:.2f}",
            "ratio ≤ 1.10",
        ),
        Row(
            "… of which start-up: the same install of 1 step",
            f"{ours_one:.3f} s",
            f"{baseline_one:.3f} s",
            f"+{(ours_one - baseline_one) * 1000:.0f} ms",
            "—",
        ),
    ]


def _step_rows(medians: dict[tuple[str, int], float], steps: int) -> list[Row]:
    """Each step's cost: the difference between the two sizes, over the steps between."""
    ours, baseline, on_asyncio = (
        (medians[name, steps] - medians[name, 1]) / (steps - 1) * 1000
        for name in ("ours", "baseline", "async")
    )
    return [
        Row(
            f"… of which each step: ({steps}-step time - 1-step time) / {steps - 1}",
            f"{ours:.2f} ms",
            f"{baseline:.2f} ms",
            f"+{ours - baseline:.2f} ms (ratio {ours / baseline:.2f})",
            "—",
        ),
        Row(
            "… each step's floor on asyncio: the least-HTTP script on `httpx.AsyncClient`",
            f"{on_asyncio:.2f} ms",
            f"{baseline:.2f} ms (`httpx.Client`)",
            f"+{on_asyncio - baseline:.2f} ms",
            "—",
        ),
    ]


def _import_rows(imports: dict[str, float], baseline: float) -> list[Row]:
    """The start-up floor: importing what the engine is built on, against ``baseline``, the
    least-HTTP script's install in seconds."""
    lib, design, httpx_only = (imports[x] for x in (ENGINE_LIBRARIES, DESIGN_PACKAGES, "httpx"))
    return [
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
            f"+{(design - httpx_only) * 1000:.0f} ms, of a budget of {baseline * 100:.0f} ms"
            " (10% of the baseline)",
            "—",
        ),
    ]
