"""Start-up: `--help`, and the everyday commands on the embedded sandbox beside the same
commands with that sandbox served by FastAPI's app for every request (as it was before the
plain router). Both are launched the same way and take turns, so the machine's load weighs
on both alike."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import Row, Sizes, noop_connector

LAUNCH = "import sys; sys.argv[0] = 'smartconnector'; from engine.cli import main; main()"
#: The embedded sandbox as FastAPI's app alone: what every command imported and built before.
#: (What start-up leaves out of the libraries is left out here too, before ``sandbox`` loads.)
FASTAPI_LAUNCH = (
    "from engine.cli._startup import lighten; lighten();"
    " import sys, sandbox; from sandbox.app import create_app;"
    " sandbox.create_app = lambda *a, **k: create_app(*a, **k).framework;"
    " sys.argv[0] = 'smartconnector'; from engine.cli import main; main()"
)
EVERYDAY = ("status ID", "list", "plan DIR", "history ID")


def startup(sizes: Sizes) -> list[Row]:
    repeats = max(5, sizes.repeats) if sizes.repeats > 1 else 1
    python, helped = taking_turns([[sys.executable, "-c", "pass"], _cli("--help")], repeats)
    rows = [
        Row(
            "`smartconnector --help`",
            f"{helped:.3f} s",
            f"{python:.3f} s (`python -c pass`)",
            f"{helped:.3f} s",
            "≤ 0.15 s",
        )
    ]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SMARTCONNECTOR_HOME": tmp, "SMARTCONNECTOR_LOG_FORMAT": "json"}
        connector = noop_connector(Path(tmp) / "c", 1)
        out = subprocess.run(
            _cli("install", str(connector)), env=env, check=True, capture_output=True, text=True
        )
        doc_id = out.stdout.strip().splitlines()[-1]
        for command in EVERYDAY:
            args = command.replace("ID", doc_id).replace("DIR", str(connector)).split()
            ours, framework = taking_turns(
                [_cli(*args), [sys.executable, "-c", FASTAPI_LAUNCH, *args]], repeats, env
            )
            rows.append(
                Row(
                    f"`smartconnector {command}` (embedded sandbox)",
                    f"{ours:.3f} s",
                    f"{framework:.3f} s (the sandbox served by FastAPI's app)",
                    f"{ours - framework:+.3f} s",
                    "≤ 0.3 s",
                )
            )
    return rows


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", LAUNCH, *args]


def taking_turns(
    commands: list[list[str]], repeats: int, env: dict[str, str] | None = None
) -> list[float]:
    """The median wall time of each command, run in turn ``repeats`` times (each must succeed)."""
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(repeats):
        for command, taken in zip(commands, times, strict=True):
            began = time.perf_counter()
            subprocess.run(command, env=env, check=True, capture_output=True)
            taken.append(time.perf_counter() - began)
    return [statistics.median(taken) for taken in times]
