"""A rollout through the CLI against `sandbox serve` at its default rate limit."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
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


def rollout_rate(sizes: Sizes) -> list[Row]:
    """A rollout of many integrations through the CLI against `sandbox serve` at its default
    limit (bucket 1000, 300/s): the request rate it sustains, and any 429 that surfaced."""
    count = sizes.rollout
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
            began = time.perf_counter()
            out = subprocess.run(
                [*CLI, "rollout", str(directory), "--all", "--json"],  # --concurrency 10
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
    throttled = sum(1 for r in requests if r.get("status") == 429)
    ideal = max(0, len(requests) - BURST) / RATE
    sustained = _sustained_rate(requests, skip=BURST)
    return [
        Row(
            f"rollout of {count:,} integrations via the CLI, `sandbox serve` at its default limit",
            f"{elapsed:.1f} s; {len(requests):,} requests"
            f" ({len(requests) / count:.2f} an integration)"
            + (f", {sustained:.0f}/s once the bucket was spent" if ideal > 0 else "")
            + f"; {summary['counts']['updated']:,} updated,"
            f" {summary['counts']['failed']} failed; {throttled} answered 429",
            f"{ideal:.1f} s (the first {BURST:,} requests at once, the rest at {RATE}/s)",
            (
                f"{elapsed / ideal:.2f}x the ideal; {sustained / RATE:.0%} of the limit sustained"
                if ideal > 0
                else f"all within the bucket of {BURST:,}: no sustained rate to measure"
            ),
            f"2 requests an integration, ≥ 90% of {RATE}/s, no 429",
        )
    ]


def _sustained_rate(requests: list[dict[str, Any]], skip: int) -> float:
    """Requests per second after the first ``skip`` (the bucket's), from the access log."""
    stamps = SandboxServer.times(requests[skip:])
    if len(stamps) < 2:
        return float("nan")
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])
