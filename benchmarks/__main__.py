"""Run every benchmark and write benchmarks/RESULTS.md.

    python -m benchmarks            # full run (a few minutes)
    python -m benchmarks --quick    # smaller sizes, for a smoke test

Each figure is measured next to its baseline in the same run, so machine noise cancels.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
from pathlib import Path

from benchmarks import (
    _common,
    capacity,
    fleet,
    overhead,
    requests,
    rollout,
    rollout_memory,
    startup,
    telemetry,
    temporal,
)

HERE = Path(__file__).parent


def main() -> None:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    sizes = _common.QUICK if args.quick else _common.FULL
    _common.compile_packages()
    rows: list[_common.Row] = []
    rows += overhead.overhead(sizes)
    rows += asyncio.run(requests.requests(sizes))
    rows += fleet.fleet(sizes)
    rows += rollout.rollout_rate(sizes)
    rows += rollout_memory.rollout_memory(sizes)
    rows += capacity.capacity(sizes)
    rows += startup.startup(sizes)
    rows += telemetry.telemetry(sizes)
    rows += temporal.install_side_by_side(sizes)
    rows += temporal.rollout_on_temporal(sizes)
    table = _common.render(rows)
    header = (
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()},"
        f" {platform.machine()}. Sizes: {'quick' if args.quick else 'full'}.\n\n"
    )
    print(header + table)
    notes = HERE / "NOTES.md"
    args.output.write_text(
        "# Benchmark results\n\n"
        + header
        + table
        + "\n"
        + (notes.read_text() if notes.exists() else "")
    )


if __name__ == "__main__":
    main()
