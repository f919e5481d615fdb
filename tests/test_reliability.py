"""SPEC §7 under real failure: atomic installs, secrets, crashes, faults, hand-broken documents."""

from __future__ import annotations

import json
import os
import random
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from engine.client import ApiClient
from engine.drivers.runner import Engine
from engine.errors import StepFailed
from engine.logs import REDACTED, Redactor
from engine.pytest_plugin import write_connector_folder
from installers.fakes import FakeConnector, fails
from sandbox import Store

from .conftest import CLI, EXAMPLE, ROOT, Server, run_cli, start_server

# -- atomic ------------------------------------------------------------------------------


async def test_atomic_install_undoes_and_deletes(
    smartconnector_engine: Engine, sandbox_api: ApiClient
) -> None:
    """--atomic: a failed step undoes the completed ones in reverse and deletes; it says so."""
    fake = FakeConnector(["a", "b", "c"])
    fake.fail("c")
    order: list[str] = []
    for step in "ab":
        fake.uninstaller(step).behaviour = (lambda s: lambda call: order.append(s))(step)
    with pytest.raises(StepFailed, match="rolled back: undid 'b', 'a' and deleted"):
        await smartconnector_engine.install(fake.connector(), atomic=True)
    assert order == ["b", "a"] and fake.uninstaller("c").calls == []
    assert await sandbox_api.list("integrations") == []


async def test_atomic_rollback_that_fails_is_a_resumable_uninstall(
    smartconnector_engine: Engine, sandbox_api: ApiClient
) -> None:
    """If undoing fails too, the run stops (exit 1) in uninstall mode and resume finishes it."""
    fake = FakeConnector(["a", "b", "c"])
    fake.fail("c")
    fake.uninstaller("a").behaviour = fails(1)
    with pytest.raises(StepFailed, match="rolling back failed too") as info:
        await smartconnector_engine.install(fake.connector(), atomic=True)
    doc_id = info.value.context["integration_id"]
    doc = await sandbox_api.get("integrations", doc_id)
    assert doc["mode"] == "uninstall"
    assert [s["completed"] for s in doc["install"]] == [True, False, False]
    await smartconnector_engine.resume(doc_id)
    assert await sandbox_api.list("integrations") == []
    assert len(fake.uninstaller("b").calls) == 1


def test_atomic_from_the_cli(tmp_path: Path) -> None:
    """install --atomic exits 1, reports what was undone and leaves nothing behind."""
    directory = write_connector_folder(
        tmp_path / "c",
        {
            "name": "n",
            "_connectorId": "c",
            "version": "1",
            "install": [
                {"name": "one", "installerFunction": "ok", "uninstallerFunction": "ok"},
                {"name": "two", "installerFunction": "bad", "uninstallerFunction": "ok"},
            ],
        },
        "from installers import Registry\nregistry = Registry('r')\n"
        "@registry.function('ok')\ndef ok(ctx): return None\n"
        "@registry.function('bad')\ndef bad(ctx): raise ValueError('no licence')\n",
    )
    out = run_cli("install", str(directory), "--atomic", home=tmp_path)
    assert out.returncode == 1
    assert "rolled back: undid 'one'" in out.stderr and "no licence" in out.stderr
    assert out.stdout.strip()  # the id is still printed last
    store = Store(tmp_path / "sandbox.db")
    assert store.list("integrations", after=0, limit=10, filters={})[0] == []


# -- secrets -----------------------------------------------------------------------------


def test_redactor_hides_secrets_by_key_and_by_value() -> None:
    """Values under secret-looking keys and any known token inside strings are redacted."""
    redactor = Redactor()
    redactor.add("s3cr3t-token")
    event = redactor(
        None,
        "info",
        {
            "event": "calling with s3cr3t-token",
            "headers": {"Authorization": "Bearer x"},
            "bearerToken": "y",
            "nested": [{"msg": "s3cr3t-token!"}],
        },
    )
    assert event == {
        "event": f"calling with {REDACTED}",
        "headers": {"Authorization": REDACTED},
        "bearerToken": REDACTED,
        "nested": [{"msg": f"{REDACTED}!"}],
    }


@pytest.fixture
def cli_logging() -> Iterator[None]:
    """The CLI's logging set-up for one test, then structlog's defaults again."""
    from engine import logs

    logs.configure("json")
    yield
    structlog.reset_defaults()


def test_redactor_runs_in_the_configured_pipeline(
    capsys: pytest.CaptureFixture[str], cli_logging: None
) -> None:
    """The logging set-up the CLI uses passes every event through the redactor."""
    from engine import logs

    logs.redactor.add("pipeline-secret-123")
    structlog.get_logger("t").info("token is pipeline-secret-123", token="pipeline-secret-123")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert "pipeline-secret-123" not in json.dumps(line)
    assert line["token"] == REDACTED


def test_a_function_leaking_the_token_is_redacted_everywhere(
    server: Server, tmp_path: Path
) -> None:
    """A connector whose error quotes the token: not in output, journal or document."""
    token = server.token()
    directory = tmp_path / "leaky"
    directory.mkdir()
    (directory / "functions.py").write_text(
        "from installers import Registry\nregistry = Registry('leaky')\n"
        "@registry.function('leak')\n"
        "async def leak(ctx):\n"
        "    ctx.log.info('about to fail', header='Bearer ' + ctx.api.bearer_token())\n"
        "    raise RuntimeError('rejected ' + 'Bearer ' + ctx.api.bearer_token())\n"
    )
    (directory / "connector.json").write_text(
        json.dumps(
            {
                "name": "n",
                "_connectorId": "leaky",
                "version": "1",
                "install": [
                    {"name": "one", "installerFunction": "leak", "uninstallerFunction": "leak"}
                ],
            }
        )
    )
    env = {"SMARTCONNECTOR_API_URL": server.url, "SMARTCONNECTOR_API_TOKEN": token}
    out = run_cli("install", str(directory), home=tmp_path / "home", env=env)
    assert out.returncode == 1 and "rejected" in out.stderr
    assert token not in out.stdout + out.stderr
    for file in (tmp_path / "home").rglob("*"):
        assert token.encode() not in file.read_bytes(), file
    doc_id = out.stdout.strip().splitlines()[-1]
    status = run_cli("status", doc_id, home=tmp_path / "home", env=env)
    assert "rejected" in status.stdout and token not in status.stdout


# -- hand-broken documents -----------------------------------------------------------------


def test_ten_megabyte_field_written_by_hand(tmp_path: Path) -> None:
    """A document with a 10 MB field put straight into the sandbox exits 2 naming the field."""
    store = Store(tmp_path / "sandbox.db")
    doc, _ = store.create(
        "integrations",
        {
            "_connectorId": "57179182e0a908200c2781d9",
            "mode": "install",
            "install": [
                {
                    "name": "NetSuite Connection",
                    "installerFunction": "verifyNetSuiteConnection",
                    "uninstallerFunction": "deleteNetSuiteConnection",
                    "completed": False,
                    "description": "x" * (10 * 1024 * 1024),
                }
            ],
        },
    )
    before = store.get("integrations", doc["_id"])
    out = run_cli("resume", doc["_id"], "--connector", str(EXAMPLE), home=tmp_path)
    assert out.returncode == 2
    assert "install[0].description" in out.stderr
    assert store.get("integrations", doc["_id"]) == before
    assert store.list("connections", after=0, limit=10, filters={})[0] == []


# -- installed connector packages -----------------------------------------------------------


def test_connector_found_through_its_entry_point(tmp_path: Path) -> None:
    """uninstall without --connector, from another home, finds the installed package."""
    site = tmp_path / "site"
    package = site / "netsuite_connector"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name in ("connector.json", "functions.py"):
        (package / name).write_text((EXAMPLE / name).read_text())
    dist = site / "netsuite_connector-1.0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: netsuite-connector\nVersion: 1.0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        "[smartconnector.connectors]\nbigcommerce-netsuite = netsuite_connector\n"
    )
    env = {"PYTHONPATH": str(site)}
    home = tmp_path / "home"
    out = run_cli("install", str(EXAMPLE), home=home, env=env)
    doc_id = out.stdout.strip().splitlines()[-1]
    (home / "journal.db").unlink()  # forget which directory installed it
    for suffix in ("-wal", "-shm"):
        Path(f"{home / 'journal.db'}{suffix}").unlink(missing_ok=True)
    out = run_cli("uninstall", doc_id, home=home, env=env)
    assert out.returncode == 0, out.stderr
    assert run_cli("status", doc_id, home=home, env=env).returncode == 6


def test_unknown_connector_asks_for_one(tmp_path: Path) -> None:
    """With no record and no package, resume exits 2 asking for --connector."""
    store = Store(tmp_path / "sandbox.db")
    doc, _ = store.create(
        "integrations", {"_connectorId": "nobody", "mode": "install", "install": []}
    )
    out = run_cli("resume", doc["_id"], home=tmp_path)
    assert out.returncode == 2 and "--connector" in out.stderr


# -- crashes and faults, with real processes --------------------------------------------------

CRASH_FUNCTIONS = """
import time
from installers import Registry
registry = Registry("crash")

async def make(ctx):
    time.sleep(0.05)
    found = await ctx.api.list("flows", key=ctx.idempotency_key)
    if not found:
        await ctx.api.create("flows", {"key": ctx.idempotency_key, "step": ctx.step.name})

for i in range(4):
    registry.add(f"make{i}", make)
registry.add("undo", lambda ctx: None)
"""


def crash_connector(tmp_path: Path) -> Path:
    directory = tmp_path / "crash"
    directory.mkdir()
    (directory / "functions.py").write_text(CRASH_FUNCTIONS)
    (directory / "connector.json").write_text(
        json.dumps(
            {
                "name": "Crash",
                "_connectorId": "crash",
                "version": "1",
                "install": [
                    {
                        "name": f"s{i}",
                        "installerFunction": f"make{i}",
                        "uninstallerFunction": "undo",
                    }
                    for i in range(4)
                ],
            }
        )
    )
    return directory


def run_until_killed(args: list[str], env: dict[str, str], kill_after: int) -> list[dict[str, Any]]:
    """Run the CLI, SIGKILL it once it has logged ``kill_after`` events; its events."""
    process = subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    assert process.stderr is not None
    events: list[dict[str, Any]] = []
    for line in process.stderr:
        if line.startswith("{"):
            events.append(json.loads(line))
            if len(events) >= kill_after:
                process.kill()
                break
    process.wait(30)
    return events


def comparable(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ("_id", "lastModified")}


@pytest.mark.parametrize(
    ("seed", "profile"), [(1, "default"), (2, "default"), (3, "platform"), (4, "put-only")]
)
@pytest.mark.slow
def test_kill_9_anywhere_then_resume(tmp_path: Path, seed: int, profile: str) -> None:
    """Killed at seeded points (also between a function's return and its PATCH), resumed to
    the end: same document as an unbroken run, each function's success recorded once, and
    each side effect made once; on the sandbox and on the platform as documented."""
    rng = random.Random(seed)
    srv = start_server(tmp_path, "--profile", profile)
    try:
        directory = crash_connector(tmp_path)
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCONNECTOR_")}
        env = {
            **inherited,
            "SMARTCONNECTOR_API_URL": srv.url,
            "SMARTCONNECTOR_LOG_FORMAT": "json",
            "SMARTCONNECTOR_API_TOKEN": srv.token(),
            "SMARTCONNECTOR_HOME": str(tmp_path / "h"),
        }
        reference = subprocess.run(
            [*CLI, "install", str(directory)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        reference_id = reference.stdout.strip().splitlines()[-1]

        events = run_until_killed(["install", str(directory)], env, rng.randint(1, 3))
        created = [e for e in events if e.get("integration_id")]
        assert created, "killed before the integration was created: pick a later point"
        doc_id = created[0]["integration_id"]
        for _ in range(6):
            events += run_until_killed(["resume", doc_id], env, rng.randint(1, 4))
        final = subprocess.run(
            [*CLI, "resume", doc_id], env=env, cwd=ROOT, capture_output=True, text=True
        )
        assert final.returncode == 0, final.stderr
        events += [json.loads(x) for x in final.stderr.splitlines() if x.startswith("{")]

        def status(i: str) -> dict[str, Any]:
            out = subprocess.run(
                [*CLI, "status", i, "--json"],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            return json.loads(out.stdout)  # type: ignore[no-any-return]

        assert comparable(status(doc_id)) == comparable(status(reference_id))
        mine = [e for e in events if e.get("integration_id") == doc_id]
        successes = Counter(e["step"] for e in mine if e["event"] == "function succeeded")
        replays = Counter(e["step"] for e in mine if e["event"] == "replaying journalled result")
        for step in ("s0", "s1", "s2", "s3"):
            assert successes[step] <= 1, f"{step} succeeded twice"
            assert successes[step] + replays[step] >= 1
        store = Store(srv.db)
        flows = store.list("flows", after=0, limit=1000, filters={})[0]
        store.close()
        per_integration = Counter(f["step"] for f in flows)
        assert per_integration == {f"s{i}": 2 for i in range(4)}  # reference + crashed run
    finally:
        srv.stop()


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["default", "platform"])
def test_install_through_injected_faults(tmp_path: Path, profile: str) -> None:
    """Against `sandbox serve --faults 500,429,reset,timeout`, the example installs and
    uninstalls with no duplicated side effect, also where POST has no idempotency key."""
    srv = start_server(
        tmp_path,
        "--profile",
        profile,
        "--faults",
        "500:0.1,429:0.1,reset:0.05,timeout:0.02",
        "--seed",
        "11",
        "--fault-delay",
        "0.5",
    )
    try:
        env = {"SMARTCONNECTOR_API_URL": srv.url, "SMARTCONNECTOR_API_TOKEN": srv.token()}
        out = run_cli("install", str(EXAMPLE), "--json", home=tmp_path / "h", env=env)
        assert out.returncode == 0, out.stderr
        status = json.loads(out.stdout.strip().splitlines()[-1])
        assert status["mode"] == "settings"
        assert [s["completed"] for s in status["install"]] == [True] * 4
        store = Store(srv.db)
        assert len(store.list("connections", after=0, limit=100, filters={})[0]) == 2
        assert len(store.list("integrations", after=0, limit=100, filters={})[0]) == 1
        out = run_cli("uninstall", status["_id"], home=tmp_path / "h", env=env)
        assert out.returncode == 0, out.stderr
        assert store.list("connections", after=0, limit=100, filters={})[0] == []
        store.close()
    finally:
        srv.stop()


def test_unreachable_api_exits_5_and_resume_works_once_it_is_back(tmp_path: Path) -> None:
    """With the API gone the command retries for its budget, exits 5, and changes nothing."""
    srv = start_server(tmp_path)
    env = {
        "SMARTCONNECTOR_API_URL": srv.url,
        "SMARTCONNECTOR_API_TOKEN": srv.token(),
        "SMARTCONNECTOR_RETRY_BUDGET": "2",
    }
    directory = crash_connector(tmp_path)
    out = run_cli("install", str(directory), home=tmp_path / "h", env=env)
    doc_id = out.stdout.strip().splitlines()[-1]
    srv.stop()
    down = run_cli("resume", doc_id, home=tmp_path / "h", env=env, timeout=180)
    assert down.returncode == 5, down.stderr
    assert "unreachable" in down.stderr
    srv = start_server(tmp_path)
    env["SMARTCONNECTOR_API_URL"] = srv.url
    env["SMARTCONNECTOR_API_TOKEN"] = srv.token()
    try:
        assert run_cli("resume", doc_id, home=tmp_path / "h", env=env).returncode == 0
    finally:
        srv.stop()


def test_the_step_display_replaces_routine_engine_events() -> None:
    """On a terminal the display shows steps; those events are dropped, others are not."""
    from engine.logs import _drop_displayed

    for shown in ("function succeeded", "mode change", "rollout outcome"):
        with pytest.raises(structlog.DropEvent):
            _drop_displayed(None, "info", {"event": shown})
    kept = {"event": "netsuite connection ready"}
    assert _drop_displayed(None, "info", dict(kept)) == kept
