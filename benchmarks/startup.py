"""Start-up: `--help` and a bare interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._common import Row, Sizes, median_time, noop_connector


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
