"""Operating a rollout that runs on Temporal (a real dev server), through the same CLI:
pause, resume and abort are the workflow's signals, status its query."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client

from benchmarks._common import TemporalDevServer

from .conftest import CLI, ROOT, run_cli
from .test_rollouts import Fleet, make_fleet, operate, stop

#: An updateFunction that logs when it starts and when it ends, with the worker's pid and the
#: call's idempotency key.
LOGGED_UPDATE = """
import os, time
from pathlib import Path
from installers import Registry
registry = Registry("rollout pages test")
HERE = Path(__file__).parent

def note(word, ctx):
    with (HERE / "calls.log").open("a") as log:
        log.write(f"{word} {ctx.integration.id} {os.getpid()} {ctx.idempotency_key}\\n")

@registry.function("noop")
def noop(ctx):
    return None

@registry.function("connectorUpdate")
def update(ctx):
    note("start", ctx)
    time.sleep(float((HERE / "delay").read_text()))
    note("done", ctx)
"""


class Workers:
    """`smartconnector worker` processes for the fleet's task queue, one at a time."""

    def __init__(self, fleet: Fleet, address: str, queue: str) -> None:
        self.fleet, self.address, self.queue = fleet, address, queue
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCONNECTOR_")}
        env.update(
            self.fleet.env,
            SMARTCONNECTOR_HOME=str(self.fleet.home / "worker"),
            SMARTCONNECTOR_LOG_FORMAT="json",
        )
        self.process = subprocess.Popen(
            [
                *(*CLI, "worker", "--temporal-address", self.address),
                *("--task-queue", self.queue, "--connector", str(self.fleet.directory)),
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None


@pytest.fixture
def on_temporal(persisted_temporal_address: str, tmp_path: Path) -> Iterator[tuple[Fleet, Workers]]:
    """12 integrations (updateFunction 0.5 s) rolled out on Temporal, with a worker."""
    address = persisted_temporal_address
    with make_fleet(tmp_path, 12, 0.5) as fleet:
        queue = f"q-{tmp_path.name}"
        fleet.engine = ("--engine", "temporal", "--temporal-address", address)
        fleet.engine += ("--task-queue", queue)
        fleet.finding = ("--temporal-address", address)
        workers = Workers(fleet, address, queue)
        workers.start()
        try:
            yield fleet, workers
        finally:
            workers.stop()


@pytest.mark.slow
def test_operating_a_rollout_on_temporal(on_temporal: tuple[Fleet, Workers]) -> None:
    """On Temporal as locally: the rollout holds after phase 1, and stays held while its worker
    is replaced; `rollouts resume` goes on, `pause` mid-phase stops it within 2.5 s, `abort`
    ends the command with exit 1 and the rest untouched, and the same command again finishes,
    each updateFunction having run once. Without Temporal's address `rollouts` still lists it
    (from its record) but cannot signal it: exit 2 saying so."""
    fleet, workers = on_temporal

    def restart_the_worker() -> None:
        workers.stop()
        workers.start()
        before = len(fleet.updates())
        time.sleep(4)
        assert len(fleet.updates()) == before
        assert fleet.agrees_with_the_api()["state"] == "paused"  # its query, on the new worker

    operate(fleet, 12, while_held=restart_the_worker)
    listed = run_cli("rollouts", "--json", home=fleet.home, env=fleet.env)
    assert [r["state"] for r in json.loads(listed.stdout) if r["id"] == fleet.rollout_id] == [
        "done"
    ]
    unreachable = run_cli("rollouts", "abort", fleet.rollout_id, home=fleet.home, env=fleet.env)
    assert unreachable.returncode == 2 and "--temporal-address" in unreachable.stderr


@pytest.mark.slow
def test_a_worker_killed_mid_page_repeats_only_the_update_it_was_in(
    persisted_temporal_address: str, tmp_path: Path
) -> None:
    """kill -9 of the worker while a page of 6 updates is in its third: the worker started
    after takes the page over from its last heartbeat. The updates finished before the kill
    do not run again; the one it was in runs again, with the same idempotency key, and no
    other does; the rollout ends with each integration updated once and none failed."""
    address = persisted_temporal_address
    with make_fleet(tmp_path, 6, 2.0) as fleet:
        (fleet.directory / "functions.py").write_text(LOGGED_UPDATE)
        queue = f"q-{tmp_path.name}"
        fleet.engine = ("--engine", "temporal", "--temporal-address", address)
        fleet.engine += ("--task-queue", queue)
        fleet.finding = ("--temporal-address", address)
        workers = Workers(fleet, address, queue)
        workers.start()
        rollout = fleet.start("--concurrency", "1")  # one page, one update at a time
        log = fleet.directory / "calls.log"

        def calls() -> list[list[str]]:
            return [line.split() for line in log.read_text().splitlines()] if log.exists() else []

        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                seen = Counter(c[0] for c in calls())
                if seen["done"] >= 2 and seen["start"] > seen["done"]:
                    break
                time.sleep(0.05)
            assert workers.process is not None
            workers.process.kill()  # in the middle of an update, its function running
            workers.process.wait(10)
            before = calls()
            requests_before = len(fleet.server.log.read_text().splitlines())
            workers.start()
            _, stderr = rollout.communicate(timeout=120)
            assert rollout.returncode == 0, stderr
            status = fleet.agrees_with_the_api()
            requests = fleet.server.log.read_text().splitlines()[requests_before:]
        finally:
            stop(rollout)
            workers.stop()
    assert (status["state"], status["updated"], status["failed"]) == ("done", 6, 0)
    in_flight = [c[1] for c in before if c[0] == "start" and ["done", *c[1:]] not in before]
    assert len(in_flight) == 1
    after = calls()[len(before) :]
    assert [c[1] for c in after if c[0] == "start"].count(in_flight[0]) == 1
    repeated = [c for c in calls() if c[0] == "start" and c[1] == in_flight[0]]
    assert repeated[0][2] != repeated[1][2]  # the first worker, then the second
    assert repeated[0][3] == repeated[1][3]  # with the same idempotency key
    finished_before = {c[1] for c in before if c[0] == "done"}
    assert len(finished_before) >= 2
    assert not [c for c in after if c[1] in finished_before]  # never run again
    first = next(c[1] for c in before if c[0] == "done")  # its heartbeat was sent since
    assert not [r for r in requests if f"/integrations/{first}" in r]  # not even read
    done = Counter(c[1] for c in calls() if c[0] == "done")
    assert sorted(done.values()) == [1] * 6


async def runs_of(address: str, workflow_id: str) -> int:
    """How many runs the workflow has had: its latest and those it continued as new from."""
    client = await Client.connect(address)
    runs, run_id = 0, None
    while True:
        runs += 1
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            return runs
        run_id = started.continued_execution_run_id


@pytest.mark.slow
def test_a_long_rollout_continues_as_new_between_pages_of_the_list(tmp_path: Path) -> None:
    """With Temporal suggesting a new run after a few events, a rollout of 250 integrations
    (three pages of the list) continues as new between them, carrying its counts: it ends
    with each integration updated once, and its record says so."""
    temporal = TemporalDevServer(
        tmp_path / "temporal.db",
        *("--dynamic-config-value", "limit.historyCount.suggestContinueAsNew=10"),
    )
    try:
        with make_fleet(tmp_path, 250, 0) as fleet:
            queue = f"q-{tmp_path.name}"
            fleet.engine = ("--engine", "temporal", "--temporal-address", temporal.address)
            fleet.engine += ("--task-queue", queue)
            fleet.finding = ("--temporal-address", temporal.address)
            workers = Workers(fleet, temporal.address, queue)
            workers.start()
            try:
                out = fleet.cli("rollout", str(fleet.directory), "--all", "--json", timeout=180)
                assert out.returncode == 0, out.stderr
                assert json.loads(out.stdout)["counts"]["updated"] == 250
                status = fleet.agrees_with_the_api()
            finally:
                workers.stop()
            updates = Counter(i for i, _, _ in fleet.updates())
            workflow = f"smartconnector-rollout-{fleet.rollout_id}"
            runs = asyncio.run(runs_of(temporal.address, workflow))
    finally:
        temporal.stop()
    assert (status["state"], status["updated"], status["remaining"]) == ("done", 250, 0)
    assert len(updates) == 250 and set(updates.values()) == {1}
    assert runs == 3  # a run per page of the list
