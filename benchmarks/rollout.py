"""A rollout through the CLI against `sandbox serve` at its default rate limit."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import CLI, NOOP_FUNCTIONS, ROOT, Row, SandboxServer, Sizes

UPDATE_FUNCTIONS = (
    NOOP_FUNCTIONS
    + """
@registry.function("connectorUpdate")
async def update(ctx):
    return None
"""
)


#: `sandbox serve`'s default limit: requests/s a token may make, and its bucket.
RATE, BURST = 300, 1_000
STEP = {"name": "s0", "installerFunction": "noop", "uninstallerFunction": "noop"}


def seed_fleet(db: Path, count: int, connector_id: str) -> None:
    """``count`` installed one-step integrations of ``connector_id`` at version 1."""
    from sandbox import Store

    store = Store(db)
    fields = {"name": "bench", "_connectorId": connector_id, "version": "1", "mode": "settings"}
    for _ in range(count):
        store.create("integrations", {**fields, "install": [STEP | {"completed": True}]})
    store.close()


def update_connector(directory: Path, connector_id: str) -> Path:
    """Version 2 of the fleet's connector: the same step, and an ``updateFunction``."""
    directory.mkdir()
    (directory / "functions.py").write_text(UPDATE_FUNCTIONS)
    manifest = {
        "name": "bench",
        "_connectorId": connector_id,
        "version": "2",
        "updateFunction": "connectorUpdate",
        "install": [STEP],
    }
    (directory / "connector.json").write_text(json.dumps(manifest))
    return directory


#: The ``--concurrency`` values measured: the default, and five times it (never slower).
CONCURRENCY = (10, 50)


@dataclass(frozen=True)
class Rollout:
    """One `rollout --all` through the CLI: its wall time, the CLI process's CPU, what the
    server's access log saw, and the command's summary."""

    count: int
    concurrency: int
    seconds: float
    cpu: float
    requests: list[dict[str, Any]]
    counts: dict[str, int]

    @property
    def throttled(self) -> int:
        return sum(1 for r in self.requests if r.get("status") == 429)

    @property
    def ideal(self) -> float:
        """Seconds at the limit: the bucket's requests at once, the rest at its rate."""
        return max(0, len(self.requests) - BURST) / RATE


def rollout_rate(sizes: Sizes) -> list[Row]:
    """A rollout of many integrations through the CLI against `sandbox serve` at its default
    limit (bucket 1000, 300/s), at each of :data:`CONCURRENCY`: its time beside the ideal,
    any 429, and the CLI's CPU per update beside the same command updating one integration
    (what start-up and exit cost)."""
    runs = [_rollout(sizes.rollout, concurrency) for concurrency in CONCURRENCY]
    rows = [_time_row(run) for run in runs]
    startup = _rollout(1, CONCURRENCY[0]).cpu
    per_update = [f"{run.cpu / run.count * 1000:.2f} ms" for run in runs]
    beyond = [f"{(run.cpu - startup) / (run.count - 1) * 1000:.2f} ms" for run in runs]
    rows.append(
        Row(
            f"… CPU of the CLI process per update (user + sys), `--concurrency`"
            f" {' / '.join(str(c) for c in CONCURRENCY)}",
            " / ".join(per_update)
            + f" ({' / '.join(f'{run.cpu:.2f} s' for run in runs)} for {sizes.rollout:,})",
            f"{startup:.2f} s: the same command updating 1 integration (start-up and exit)",
            f"{' / '.join(beyond)} an update beyond start-up",
            "≤ 2 ms an update",
        )
    )
    return rows


def _time_row(run: Rollout) -> Row:
    sustained = _sustained_rate(run.requests, skip=BURST)
    spent = run.ideal > 0
    return Row(
        f"rollout of {run.count:,} integrations via the CLI, `sandbox serve` at its default"
        f" limit, `--concurrency {run.concurrency}`",
        f"{run.seconds:.1f} s; {len(run.requests):,} requests"
        f" ({len(run.requests) / run.count:.2f} an integration)"
        + (f", {sustained:.0f}/s once the bucket was spent" if spent else "")
        + f"; {run.counts['updated']:,} updated, {run.counts['failed']} failed;"
        f" {run.throttled} answered 429",
        f"{run.ideal:.1f} s (the first {BURST:,} requests at once, the rest at {RATE}/s)",
        (
            f"{run.seconds / run.ideal:.2f}x the ideal; {sustained / RATE:.0%} of the limit"
            " sustained"
            if spent
            else f"all within the bucket of {BURST:,}: no sustained rate to measure"
        ),
        "≤ 1.5x the ideal, 2 requests an integration, no 429",
    )


def _rollout(count: int, concurrency: int) -> Rollout:
    """`rollout --all` of ``count`` integrations on a fresh server; the CLI's CPU is read
    from its own resource usage when it exits."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server = SandboxServer(tmp)
        try:
            seed_fleet(server.db, count, "bench-rollout")
            directory = update_connector(tmp / "v2", "bench-rollout")
            env = {
                **os.environ,
                "SMARTCONNECTOR_API_URL": server.url,
                "SMARTCONNECTOR_API_TOKEN": server.token(),
                "SMARTCONNECTOR_HOME": str(tmp / "home"),
                "SMARTCONNECTOR_LOG_FORMAT": "json",
            }
            before = len(server.api_requests())
            command = [*CLI, "rollout", str(directory), "--all", "--json"]
            command += ["--concurrency", str(concurrency)]
            began = time.perf_counter()
            with (tmp / "stderr").open("w") as stderr:
                process = subprocess.Popen(
                    command, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT
                )
                assert process.stdout is not None
                out = process.stdout.read()
                _, status, usage = os.wait4(process.pid, 0)  # its CPU, as it exits
            elapsed = time.perf_counter() - began
            process.returncode = os.waitstatus_to_exitcode(status)
            summary = json.loads(out)
            requests = server.api_requests()[before:]
        finally:
            server.stop()
    cpu = usage.ru_utime + usage.ru_stime
    return Rollout(count, concurrency, elapsed, cpu, requests, summary["counts"])


def _sustained_rate(requests: list[dict[str, Any]], skip: int) -> float:
    """Requests per second after the first ``skip`` (the bucket's), from the access log."""
    stamps = SandboxServer.times(requests[skip:])
    if len(stamps) < 2:
        return float("nan")
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])
