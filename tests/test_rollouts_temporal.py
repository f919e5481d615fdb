"""Operating a rollout that runs on Temporal (a real dev server), through the same CLI:
pause, resume and abort are the workflow's signals, status its query."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import CLI, ROOT, run_cli
from .test_rollouts import Fleet, make_fleet, operate


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
def on_temporal(temporal_address: str, tmp_path: Path) -> Iterator[tuple[Fleet, Workers]]:
    """12 integrations (updateFunction 0.5 s) rolled out on Temporal, with a worker."""
    with make_fleet(tmp_path, 12, 0.5) as fleet:
        queue = f"q-{tmp_path.name}"
        fleet.engine = ("--engine", "temporal", "--temporal-address", temporal_address)
        fleet.engine += ("--task-queue", queue)
        fleet.finding = ("--temporal-address", temporal_address)
        workers = Workers(fleet, temporal_address, queue)
        workers.start()
        try:
            yield fleet, workers
        finally:
            workers.stop()


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
