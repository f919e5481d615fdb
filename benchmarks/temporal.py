"""The Temporal engine beside the local one: a 20-step install, and a rollout of many
integrations by two workers under one small rate limit.

    python -m benchmarks.temporal --before DIR [--runs N]

measures the rollout with the code in DIR (an older tree, e.g. from ``git archive``) and
with this one, taking turns, on a persisted and an in-memory dev server: the before and
after of a change, in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import (
    CLI,
    FULL,
    ROOT,
    Row,
    SandboxServer,
    Sizes,
    TemporalDevServer,
    compile_packages,
    noop_connector,
    render,
)
from benchmarks.rollout import seed_fleet, update_connector
from engine.temporal._rollout import PAGE, rollout_id

#: The rollout: integrations, and the token's limit the sandbox enforces (requests/s, bucket).
FLEET, RATE, BURST = 120, 30, 30


def _env(server: SandboxServer, home: Path) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCONNECTOR_")}
    return {
        **inherited,
        "SMARTCONNECTOR_API_URL": server.url,
        "SMARTCONNECTOR_API_TOKEN": server.token(),
        "SMARTCONNECTOR_HOME": str(home),
        "SMARTCONNECTOR_LOG_FORMAT": "json",
    }


@contextmanager
def workers(
    count: int,
    temporal: TemporalDevServer,
    queue: str,
    connectors: list[Path],
    env: dict[str, str],
    code: Path = ROOT,
) -> Iterator[None]:
    """``count`` worker processes on ``queue`` (running the engine in ``code``), each started
    (its log says so) before this yields; stopped after."""
    started = []
    for number in range(count):
        log = Path(env["SMARTCONNECTOR_HOME"]) / f"worker-{queue}-{number}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        command = [*CLI, "worker", "--temporal-address", temporal.address, "--task-queue", queue]
        for directory in connectors:
            command += ["--connector", str(directory)]
        process = subprocess.Popen(
            command, env=env, cwd=code, stdout=log.open("w"), stderr=subprocess.STDOUT
        )
        started.append((process, log))
    try:
        deadline = time.monotonic() + 60
        for process, log in started:
            while "worker started" not in log.read_text():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"a worker did not start:\n{log.read_text()}")
                time.sleep(0.1)
        yield
    finally:
        for process, _ in started:
            process.terminate()
        for process, _ in started:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def _timed(command: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    out = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - began
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command[2:])} exited {out.returncode}:\n{out.stderr}")
    return elapsed


def install_side_by_side(sizes: Sizes, persisted: bool = True) -> list[Row]:
    """A 20-step no-op install through the CLI, local and on Temporal (one worker, the dev
    server persisted to a file unless not ``persisted``), against the same loopback sandbox:
    requests, and seconds per step ((T(20) - T(1)) / 19, so the command's start-up and
    Temporal's connection are left out; the fastest of each, as a local step is small beside
    the noise of a command's start-up)."""
    steps, repeats = 20, sizes.repeats
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        temporal = TemporalDevServer(tmp / "temporal.db" if persisted else None)
        server = SandboxServer(tmp)
        try:
            times, requests = _install_times(server, temporal, tmp, steps, repeats)
        finally:
            server.stop()
            temporal.stop()
    return _side_by_side_rows(times, requests, steps, repeats)


def _install_times(
    server: SandboxServer, temporal: TemporalDevServer, tmp: Path, steps: int, repeats: int
) -> tuple[dict[tuple[str, int], float], dict[str, int]]:
    """The fastest of ``repeats`` installs of 1 step and of ``steps`` steps, by engine (local
    and on Temporal), and the requests each engine's last install of ``steps`` steps made."""
    env = _env(server, tmp / "home")
    one, many = noop_connector(tmp / "one", 1), noop_connector(tmp / "many", steps)
    engines = {
        "local": [],
        "temporal": ["--engine", "temporal", "--temporal-address", temporal.address],
    }
    times: dict[tuple[str, int], float] = {}
    requests: dict[str, int] = {}
    with workers(1, temporal, "smartconnector", [many], env):
        for engine, options in engines.items():
            for size, directory in ((1, one), (steps, many)):
                runs = []
                for _ in range(repeats):
                    before = len(server.api_requests())
                    command = [*CLI, "install", str(directory), *options]
                    runs.append(_timed(command, env))
                    requests[engine] = len(server.api_requests()) - before
                times[engine, size] = min(runs)
    return times, requests


def _side_by_side_rows(
    times: dict[tuple[str, int], float], requests: dict[str, int], steps: int, repeats: int
) -> list[Row]:
    def per_step(engine: str) -> float:
        return (times[engine, steps] - times[engine, 1]) / (steps - 1) * 1000

    local, on_temporal = per_step("local"), per_step("temporal")
    return [
        Row(
            f"a {steps}-step install via the CLI, Temporal (one worker) beside local: requests",
            f"{requests['temporal']} on Temporal",
            f"{requests['local']} local",
            "equal" if requests["temporal"] == requests["local"] else "differ",
            "N + 2 (22)",
        ),
        Row(
            f"… seconds per step ((T({steps}) - T(1)) / {steps - 1}, fastest of {repeats})",
            f"{on_temporal:.0f} ms on Temporal ({times['temporal', steps]:.2f} s in all)",
            f"{local:.0f} ms local ({times['local', steps]:.2f} s in all)",
            f"+{on_temporal - local:.0f} ms a step",
            "within 60 ms of local",
        ),
    ]


@dataclass
class RolloutRun:
    """One rollout of FLEET integrations on Temporal, measured."""

    seconds: float
    #: From its first request to its last, in the sandbox's access log.
    span: float
    requests: int
    throttled: int
    updated: int
    failed: int
    #: History events of the rollout's runs and their children.
    events: int


def rollout_once(persisted: bool = True, code: Path = ROOT) -> RolloutRun:
    """A rollout of FLEET integrations by two workers (the engine in ``code``), the sandbox
    letting the token make RATE requests/s, the dev server persisted to a file (or not)."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        temporal = TemporalDevServer(tmp / "temporal.db" if persisted else None)
        server = SandboxServer(tmp, "--rate", str(RATE), "--burst", str(BURST))
        try:
            seed_fleet(server.db, FLEET, "bench-temporal")
            directory = update_connector(tmp / "v2", "bench-temporal")
            env = _env(server, tmp / "home")
            env |= {"SMARTCONNECTOR_API_RATE": str(RATE), "SMARTCONNECTOR_API_BURST": str(BURST)}
            if code != ROOT:
                env["PYTHONPATH"] = str(code)
            with workers(2, temporal, "bench-rollout", [directory], env, code):
                time.sleep(2)  # the token's bucket refills after the workers' start
                before = len(server.api_requests())
                command = [*CLI, "rollout", str(directory), "--all", "--json"]
                command += ["--concurrency", "50", "--engine", "temporal"]
                command += ["--temporal-address", temporal.address, "--task-queue", "bench-rollout"]
                began = time.perf_counter()
                out = subprocess.run(command, env=env, cwd=code, capture_output=True, text=True)
                elapsed = time.perf_counter() - began
            summary: dict[str, Any] = json.loads(out.stdout)
            made = server.api_requests()[before:]
            events = asyncio.run(
                history_events(temporal.address, rollout_id("bench-temporal", "2"))
            )
        finally:
            server.stop()
            temporal.stop()
    return RolloutRun(
        elapsed,
        _span(made),
        len(made),
        sum(1 for r in made if r.get("status") == 429),
        summary["counts"]["updated"],
        summary["counts"]["failed"],
        events,
    )


#: What the rollout needs at least: two PATCHes an update and the list's pages, at RATE
#: requests/s after a bucket of BURST.
NEEDED = 2 * FLEET + -(-FLEET // PAGE)
IDEAL = max(0, NEEDED - BURST) / RATE


def rollout_on_temporal(sizes: Sizes) -> list[Row]:
    """A rollout of 120 integrations on Temporal by two workers, against a sandbox that lets
    the token make 30 requests/s, with the dev server persisted to a file as a deployment
    is: time beside the ideal, the share answered 429, and the history events Temporal
    wrote for it per integration."""
    run = rollout_once()
    return [
        Row(
            f"rollout of {FLEET} integrations on Temporal, two workers, a sandbox limit of"
            f" {RATE} requests/s (bucket {BURST}), dev server persisted to a file",
            _described(run),
            f"{IDEAL:.1f} s ({NEEDED} requests at {RATE}/s after a bucket of {BURST})",
            f"{run.seconds / IDEAL:.2f}x the ideal ({run.span / IDEAL:.2f}x from the first"
            " request)",
            "≤ 2x the ideal, ≤ 2% answered 429",
        ),
        Row(
            "… history events Temporal wrote for it (the rollout's runs and any children's)",
            f"{run.events / FLEET:.1f} an integration ({run.events} in all)",
            "a child workflow each, before update pages: `python -m benchmarks.temporal"
            " --before DIR` measures both in one run",
            f"{run.events / FLEET:.1f} an integration",
            "fewer",
        ),
    ]


def _described(run: RolloutRun) -> str:
    return (
        f"{run.seconds:.1f} s for the command, {run.span:.1f} s from its first request to its"
        f" last; {run.requests} requests, {run.throttled} answered 429"
        f" ({run.throttled / max(1, run.requests):.1%}); {run.updated} updated,"
        f" {run.failed} failed"
    )


def compare(before: Path, runs: int) -> list[Row]:
    """The rollout with the engine in ``before`` and with this one, taking turns, on a
    persisted and an in-memory dev server: ``runs`` of each, every one beside the ideal."""
    for package in ("engine", "installers", "sandbox"):  # as compile_packages() does here
        compileall.compile_dir(before / package, quiet=1)
    rows = []
    for number in range(1, runs + 1):
        for persisted in (True, False):
            for name, code in (("before", before), ("now", ROOT)):
                run = rollout_once(persisted, code)
                server = "persisted" if persisted else "in memory"
                rows.append(
                    Row(
                        f"{name}, dev server {server}, run {number}",
                        _described(run) + f"; {run.events / FLEET:.1f} events an integration",
                        f"{IDEAL:.1f} s",
                        f"{run.seconds / IDEAL:.2f}x the ideal",
                        "≤ 2x the ideal, ≤ 2% answered 429",
                    )
                )
    return rows


async def history_events(address: str, workflow_id: str) -> int:
    """Events in the histories of ``workflow_id``'s latest run, the runs it continued from,
    and every child workflow they started."""
    from temporalio.api.enums.v1 import EventType
    from temporalio.client import Client

    client = await Client.connect(address)
    total = 0
    pending: list[tuple[str, str | None]] = [(workflow_id, None)]
    while pending:
        wanted, run_id = pending.pop()
        history = await client.get_workflow_handle(wanted, run_id=run_id).fetch_history()
        total += len(history.events)
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
                child = event.child_workflow_execution_started_event_attributes
                pending.append(
                    (child.workflow_execution.workflow_id, child.workflow_execution.run_id)
                )
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                earlier = event.workflow_execution_started_event_attributes
                if earlier.continued_execution_run_id:
                    pending.append((wanted, earlier.continued_execution_run_id))
    return total


def _span(requests: list[dict[str, Any]]) -> float:
    """Seconds from the first request to the last, from the access log."""
    stamps = SandboxServer.times(requests)
    return max(stamps) - min(stamps) if stamps else float("nan")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.temporal")
    parser.add_argument("--before", type=Path, required=True, help="an older tree of the project")
    parser.add_argument("--runs", type=int, default=FULL.repeats // 2 or 1)
    args = parser.parse_args()
    compile_packages()
    print(render(compare(args.before.resolve(), args.runs)))
