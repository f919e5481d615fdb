"""The CLI's overhead against the least HTTP the job needs: start-up and per step."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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
