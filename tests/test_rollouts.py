"""Operating a rollout from outside, through the CLI, on a sandbox server: `rollout --pause`,
`--bake`, and `rollouts`, `rollouts status|pause|resume|abort ID` from another process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.rollout import STEP, seed_fleet
from engine.pytest_plugin import write_connector_folder

from .conftest import CLI, ROOT, Server, run_cli, start_server

FUNCTIONS = """
import time
from pathlib import Path
from installers import Registry
registry = Registry("rollouts test")
HERE = Path(__file__).parent

@registry.function("noop")
def noop(ctx):
    return None

@registry.function("connectorUpdate")
def update(ctx):
    began = time.time()
    time.sleep(float((HERE / "delay").read_text()))
    with (HERE / "updates.log").open("a") as log:
        log.write(f"{ctx.integration.id} {began} {time.time()}\\n")
"""


def versioned(directory: Path, connector_id: str, version: str, delay: float) -> Path:
    """The fleet's connector at ``version``, whose updateFunction takes ``delay`` seconds and
    logs each run (integration id, start, end) in updates.log."""
    manifest = {
        "name": "Rollouts test",
        "_connectorId": connector_id,
        "version": version,
        "updateFunction": "connectorUpdate",
        "install": [STEP],
    }
    write_connector_folder(directory, manifest, FUNCTIONS)
    (directory / "delay").write_text(str(delay))
    return directory


@dataclass
class Fleet:
    """Integrations of one connector at version 1 on a sandbox server, and version 2."""

    server: Server
    token: str
    directory: Path
    connector_id: str
    home: Path
    #: Options of `rollout` (the executor's), and of `rollouts` (where to find it).
    engine: tuple[str, ...] = ()
    finding: tuple[str, ...] = ()

    @property
    def env(self) -> dict[str, str]:
        return {"SMARTCONNECTOR_API_URL": self.server.url, "SMARTCONNECTOR_API_TOKEN": self.token}

    @property
    def rollout_id(self) -> str:
        return f"{self.connector_id}-2"

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        extra = {"rollout": self.engine, "rollouts": self.finding}[args[0]]
        return run_cli(*args, *extra, home=self.home, env=self.env, timeout=timeout)

    def start(self, *options: str) -> subprocess.Popen[str]:
        """`rollout DIR --all OPTIONS` in the background."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCONNECTOR_")}
        env.update(self.env, SMARTCONNECTOR_HOME=str(self.home), SMARTCONNECTOR_LOG_FORMAT="json")
        return subprocess.Popen(
            [*CLI, "rollout", str(self.directory), "--all", *options, *self.engine],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )

    def api(self, path: str) -> Any:
        answer = httpx.get(
            f"{self.server.url}{path}", headers={"Authorization": f"Bearer {self.token}"}
        )
        return answer.json() if answer.status_code == 200 else None

    def docs(self) -> list[dict[str, Any]]:
        """The connector's integrations, as the API has them now."""
        return list(self.api(f"/integrations?_connectorId={self.connector_id}"))

    def record(self) -> dict[str, Any] | None:
        """The rollout's record, straight from the State API."""
        found: dict[str, Any] | None = self.api(f"/state/smartconnector-rollout-{self.rollout_id}")
        return found

    def updates(self) -> list[tuple[str, float, float]]:
        """Each updateFunction run so far: integration id, start, end."""
        log = self.directory / "updates.log"
        lines = log.read_text().split("\n") if log.exists() else []
        return [(i, float(a), float(b)) for i, a, b in (x.split() for x in lines if x)]

    def status(self) -> dict[str, Any]:
        out = self.cli("rollouts", "status", self.rollout_id, "--json")
        assert out.returncode == 0, out.stderr
        found: dict[str, Any] = json.loads(out.stdout)
        return found

    def wait_for(self, done: Callable[[dict[str, Any]], bool], within: float = 60) -> None:
        """Until the record says ``done``."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            record = self.record()
            if record is not None and done(record):
                return
            time.sleep(0.2)
        raise AssertionError(f"rollout never got there: {self.record()}")

    def agrees_with_the_api(self) -> dict[str, Any]:
        """`rollouts --json` and `rollouts status ID --json` say the same, and what the API
        holds: as many at version 2 as updated and skipped, none updating. The status."""
        status = self.status()
        listed = json.loads(self.cli("rollouts", "--json").stdout)
        mine = [r for r in listed if r["id"] == self.rollout_id]
        assert mine == [{k: v for k, v in status.items() if k != "failures"}]
        docs = self.docs()
        versions = Counter(d["version"] for d in docs)
        assert not [d["_id"] for d in docs if d.get("updateInProgress")]
        assert status["updated"] + status["skipped"] == versions["2"]
        assert status["remaining"] + status["failed"] == versions["1"]
        return status


@contextmanager
def make_fleet(tmp_path: Path, size: int, delay: float) -> Iterator[Fleet]:
    """``size`` integrations on a server of their own; version 2 takes ``delay`` seconds."""
    server = start_server(tmp_path)
    try:
        connector_id = f"fleet-{tmp_path.name[-12:]}"
        seed_fleet(server.db, size, connector_id)
        directory = versioned(tmp_path / "v2", connector_id, "2", delay)
        yield Fleet(server, server.token(), directory, connector_id, tmp_path / "home")
    finally:
        server.stop()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """40 integrations at version 1; version 2's updateFunction takes 0.5 s."""
    with make_fleet(tmp_path, 40, 0.5) as made:
        yield made


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(10)


def held_after_phase_1(fleet: Fleet, size: int) -> None:
    """The rollout holds after phase 1 (of 4) with exactly that phase updated."""
    fleet.wait_for(lambda r: r["state"] == "paused")
    status = fleet.agrees_with_the_api()
    assert (status["state"], status["phase"], status["phases"]) == ("paused", 1, 4)
    assert (status["updated"], status["remaining"], status["failures"]) == (
        size // 4,
        size - size // 4,
        [],
    )
    first = [d["_id"] for d in fleet.docs()][: size // 4]
    assert sorted(i for i, _, _ in fleet.updates()) == sorted(first)


def paused_mid_phase(fleet: Fleet, size: int) -> None:
    """`rollouts pause` mid-phase: updates stop within 2.5 s, nothing is left updating."""
    fleet.wait_for(lambda r: r["updated"] >= size // 4 + 2)
    asked = time.time()
    out = fleet.cli("rollouts", "pause", fleet.rollout_id)
    assert out.returncode == 0, out.stderr
    assert "paused" in out.stdout
    last_end = max(end for _, _, end in fleet.updates())
    assert last_end - asked <= 2.5, f"updates went on {last_end - asked:.1f} s after the pause"
    before = len(fleet.updates())
    time.sleep(2)
    assert len(fleet.updates()) == before
    assert fleet.agrees_with_the_api()["state"] == "paused"


def operate(fleet: Fleet, size: int, while_held: Callable[[], None] = lambda: None) -> None:
    """Hold after phase 1, resume, pause mid-phase, abort, then the same command again to
    the end: what an operator does to a rollout, checked against the API at each point."""
    options = ("--phase", "25", "--pause", "--concurrency", "2")
    rollout = fleet.start(*options)
    try:
        held_after_phase_1(fleet, size)
        while_held()
        assert fleet.cli("rollouts", "resume", fleet.rollout_id).returncode == 0
        paused_mid_phase(fleet, size)
        out = fleet.cli("rollouts", "abort", fleet.rollout_id)
        assert out.returncode == 0, out.stderr
        _, stderr = rollout.communicate(timeout=60)
        assert rollout.returncode == 1 and "aborted" in stderr
    finally:
        stop(rollout)
    aborted = fleet.agrees_with_the_api()
    assert aborted["state"] == "aborted" and aborted["remaining"] > 0
    untouched = [d for d in fleet.docs() if d["version"] == "1"]
    assert len(untouched) == aborted["remaining"]
    assert all("smartconnector" not in d for d in untouched)
    to_the_end(fleet, options)
    runs = Counter(i for i, _, _ in fleet.updates())
    assert sorted(runs) == sorted(d["_id"] for d in fleet.docs())
    assert set(runs.values()) == {1}


def to_the_end(fleet: Fleet, options: tuple[str, ...]) -> None:
    """The same rollout command again, resumed whenever it holds, ends with exit 0 and
    every integration at version 2."""
    again = fleet.start(*options)
    try:
        while again.poll() is None:  # promote each phase it holds after
            if (fleet.record() or {}).get("state") == "paused":
                fleet.cli("rollouts", "resume", fleet.rollout_id)
            time.sleep(0.3)
        assert again.returncode == 0, again.communicate()[1]
    finally:
        stop(again)
    done = fleet.agrees_with_the_api()
    assert (done["state"], done["remaining"], done["failed"]) == ("done", 0, 0)


@pytest.mark.slow
def test_pause_resume_pause_abort_and_a_second_run(fleet: Fleet) -> None:
    """`rollout --all --phase 25 --pause --concurrency 2` of 40 integrations holds after phase
    1; `rollouts resume` goes on; `rollouts pause` mid-phase stops it within 2.5 s; `rollouts
    abort` ends the command with exit 1 and the rest untouched; the same command again
    finishes, each integration's updateFunction having run once in all."""
    operate(fleet, 40)


@pytest.fixture
def small_fleet(tmp_path: Path) -> Iterator[Fleet]:
    """8 integrations at version 1; version 2's updateFunction takes 0.2 s."""
    with make_fleet(tmp_path, 8, 0.2) as made:
        yield made


def following(fleet: Fleet) -> subprocess.Popen[str]:
    """`rollouts status ID` off a terminal, in the background."""
    return subprocess.Popen(
        [*CLI, "rollouts", "status", fleet.rollout_id],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **fleet.env, "SMARTCONNECTOR_HOME": str(fleet.home)},
        cwd=ROOT,
    )


def test_a_bake_counts_an_integration_broken_meanwhile_as_a_failure(small_fleet: Fleet) -> None:
    """`--bake 6 --max-failures 0`: an integration of phase 1 taken back to version 1 during
    the bake fails the look after it, so the rollout stops there (state failed, exit 1) with
    phase 2 untouched; `rollouts status ID` off a terminal printed one line per change.

    The follower starts as soon as the record exists and the integration is broken once the
    follower has shown the bake, so a slow start of either process cannot miss it."""
    fleet = small_fleet
    rollout = fleet.start("--phase", "50", "--bake", "6", "--max-failures", "0")
    follower = None
    seen: list[str] = []
    try:
        fleet.wait_for(lambda r: bool(r.get("state")))
        follower = following(fleet)
        assert follower.stdout is not None
        while " baking " not in (seen[-1] if seen else ""):
            line = follower.stdout.readline()
            assert line, f"the follower ended before the bake: {seen}"
            seen.append(line)
        broken = next(d for d in fleet.docs() if d["version"] == "2")
        httpx.patch(
            f"{fleet.server.url}/integrations/{broken['_id']}",
            json=[{"op": "replace", "path": "/version", "value": "1"}],
            headers={"Authorization": f"Bearer {fleet.token}"},
        ).raise_for_status()
        _, stderr = rollout.communicate(timeout=60)
        assert rollout.returncode == 1, stderr
        rest, _ = follower.communicate(timeout=30)
        lines = "".join(seen) + rest
    finally:
        stop(rollout)
        if follower is not None and follower.poll() is None:
            follower.kill()
    status = fleet.status()
    assert (status["state"], status["phase"], status["failed"], status["updated"]) == (
        "failed",
        1,
        1,
        3,
    )
    assert status["failures"] == [
        {"_id": broken["_id"], "error": "after the bake: at version 1, not 2"}
    ]
    assert Counter(d["version"] for d in fleet.docs()) == {"1": 5, "2": 3}
    states = [line.split()[2] for line in lines.splitlines() if line[:1].isdigit()]
    assert "baking" in states and states[-1] == "failed", lines


def test_a_killed_command_leaves_its_pause_and_the_same_command_holds_again(
    small_fleet: Fleet,
) -> None:
    """kill -9 of a rollout held after phase 1 leaves its record paused; a second command
    while the first ran was refused (exit 4); the same command again holds until `rollouts
    resume`, then finishes."""
    fleet = small_fleet
    options = ("--phase", "50", "--pause")
    first = fleet.start(*options)
    try:
        fleet.wait_for(lambda r: r["state"] == "paused")
        rival = fleet.cli("rollout", str(fleet.directory), "--all", *options)
        assert rival.returncode == 4 and "is being run by pid" in rival.stderr
    finally:
        stop(first)
    assert fleet.status()["state"] == "paused"
    out = fleet.cli("rollouts", "status", fleet.rollout_id, "--once")
    assert "no rollout command runs it now" in out.stdout
    listed = fleet.cli("rollouts").stdout.splitlines()
    assert listed[-1].startswith(fleet.rollout_id) and listed[-1].endswith("(no command runs it)")
    again = fleet.start(*options)
    try:
        time.sleep(3)
        assert again.poll() is None and len(fleet.updates()) == 4
        assert fleet.agrees_with_the_api()["state"] == "paused"
        out = fleet.cli("rollouts", "resume", fleet.rollout_id)
        assert out.returncode == 0, out.stderr
        assert again.wait(60) == 0
    finally:
        stop(again)
    assert fleet.agrees_with_the_api()["state"] == "done"
    assert len(fleet.updates()) == 8


def test_a_command_killed_while_a_phase_bakes_leaves_the_promotion_hold(
    small_fleet: Fleet,
) -> None:
    """kill -9 during phase 1's bake (with --pause): the same command again holds before
    phase 2 until `rollouts resume`, instead of going on unpromoted."""
    fleet = small_fleet
    options = ("--phase", "50", "--bake", "60", "--pause")
    first = fleet.start(*options)
    try:
        fleet.wait_for(lambda r: r["state"] == "baking")
    finally:
        stop(first)
    assert fleet.status()["state"] == "paused"  # as operators see it: no command bakes it
    again = fleet.start(*options)
    try:
        time.sleep(3)
        assert again.poll() is None and len(fleet.updates()) == 4
        assert fleet.agrees_with_the_api()["state"] == "paused"
        assert fleet.cli("rollouts", "resume", fleet.rollout_id).returncode == 0
        deadline = time.monotonic() + 30
        while len(fleet.updates()) == 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(fleet.updates()) > 4  # resumed: the next phase began
    finally:
        stop(again)


def test_a_resume_during_the_bake_lets_the_rollout_go_on_after_it(small_fleet: Fleet) -> None:
    """`rollouts resume` while phase 1 bakes (with --pause): once the bake is over the
    rollout goes on to phase 2 without holding again."""
    fleet = small_fleet
    rollout = fleet.start("--phase", "50", "--bake", "3", "--pause")
    try:
        fleet.wait_for(lambda r: r["state"] == "baking")
        assert fleet.cli("rollouts", "resume", fleet.rollout_id).returncode == 0
        assert rollout.wait(40) == 0
    finally:
        stop(rollout)
    assert len(fleet.updates()) == 8


def test_ctrl_c_after_an_abort_ends_the_rollout_aborted_and_the_next_run_goes_on(
    small_fleet: Fleet,
) -> None:
    """An abort taken up, then Ctrl-C while the updates in flight finish: the command says
    it was aborted (exit 1), the record ends aborted, and the same command again goes on."""
    fleet = small_fleet
    (fleet.directory / "delay").write_text("2")
    rollout = fleet.start("--concurrency", "2")
    try:
        fleet.wait_for(lambda r: r["state"] == "running")
        time.sleep(0.5)  # two updates in flight, for 2 s each
        assert fleet.cli("rollouts", "abort", fleet.rollout_id).returncode == 0
        rollout.send_signal(signal.SIGINT)
        assert rollout.wait(30) == 1
    finally:
        stop(rollout)
    assert fleet.status()["state"] == "aborted"
    (fleet.directory / "delay").write_text("0")
    again = fleet.cli("rollout", str(fleet.directory), "--all")
    assert again.returncode == 0, again.stderr
    assert fleet.agrees_with_the_api()["state"] == "done"


def test_an_unknown_rollout_exits_6_saying_where_it_looked(small_fleet: Fleet) -> None:
    """`rollouts status|pause ID` of no rollout: exit 6 naming the API and the key; with no
    rollouts, `rollouts --json` is an empty array; a home with nothing installed is exit 6."""
    fleet = small_fleet
    assert json.loads(fleet.cli("rollouts", "--json").stdout) == []
    for command in ("status", "pause", "resume", "abort"):
        out = fleet.cli("rollouts", command, "nope-1")
        assert out.returncode == 6
        assert fleet.server.url in out.stderr and "smartconnector-rollout-nope-1" in out.stderr
    empty = run_cli("rollouts", home=fleet.home / "nothing")
    assert empty.returncode == 6 and "nothing was installed" in empty.stderr


def test_an_abort_during_a_bake_ends_the_rollout_there(small_fleet: Fleet) -> None:
    """`rollouts abort` while a phase bakes (with --pause too) cuts the bake short and ends
    the rollout, exit 1, phase 2 untouched; a pause asked during the bake is acknowledged as
    holding once the bake is over."""
    fleet = small_fleet
    rollout = fleet.start("--phase", "50", "--bake", "60", "--pause")
    try:
        fleet.wait_for(lambda r: r["state"] == "baking")
        paused = fleet.cli("rollouts", "pause", fleet.rollout_id)
        assert paused.returncode == 0 and "it holds once the bake is over" in paused.stdout
        began = time.monotonic()
        assert fleet.cli("rollouts", "abort", fleet.rollout_id).returncode == 0
        assert rollout.wait(30) == 1 and time.monotonic() - began < 10
    finally:
        stop(rollout)
    status = fleet.agrees_with_the_api()
    assert (status["state"], status["updated"], status["remaining"]) == ("aborted", 4, 4)


def test_the_readme_names_every_operator_command_and_json_key() -> None:
    """README's "Operating a rollout" names each `rollouts` command and the keys `rollouts
    --json` prints, in the order the code prints them."""
    from engine.cli._rollouts import rollouts_app
    from engine.fleet.record import SUMMARY_KEYS

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Operating a rollout") : readme.index("### Beyond one")]
    for command in rollouts_app.registered_commands:
        assert f"`rollouts {command.name} ID" in section
    assert ", ".join(f'"{key}"' for key in SUMMARY_KEYS) in " ".join(section.split())
