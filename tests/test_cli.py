"""The `smartconnector` command end to end, as a user runs it: exit codes, output, state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from engine.pytest_plugin import write_connector_folder
from sandbox import Store

from .conftest import CLI, EXAMPLE, ROOT, Server, run_cli

WAITING_CONNECTOR = """
from pathlib import Path
from installers import Registry, UserActionRequired
registry = Registry("waiting")
MARK = Path(__file__).parent / "bundle-installed"

@registry.function("makeConnection")
def make_connection(ctx):
    return None

@registry.function("verifyBundle")
def verify_bundle(ctx):
    if not MARK.exists():
        raise UserActionRequired("install the bundle in NetSuite", url="https://bundle.example")

@registry.function("slow")
def slow(ctx):
    import time
    time.sleep(float((Path(__file__).parent / "delay").read_text() or 0))

@registry.function("noop")
def noop(ctx):
    return None

@registry.function("boom")
def boom(ctx):
    if not (Path(__file__).parent / "fixed").exists():
        raise RuntimeError("NetSuite said no")
"""


def connector_dir(tmp_path: Path, steps: list[tuple[str, str]], delay: float = 0) -> Path:
    manifest = {
        "name": "Test",
        "_connectorId": "test-connector",
        "version": "2.0.0",
        "install": [
            {"name": n, "installerFunction": f, "uninstallerFunction": "noop"} for n, f in steps
        ],
    }
    directory = write_connector_folder(tmp_path / "connector", manifest, WAITING_CONNECTOR)
    (directory / "delay").write_text(str(delay))
    return directory


def stored(home: Path, resource: str = "integrations") -> list[dict[str, object]]:
    store = Store(home / "sandbox.db")
    try:
        return store.list(resource, after=0, limit=1000, filters={})[0]
    finally:
        store.close()


def test_main_job_installs_the_example_and_uninstall_leaves_nothing(tmp_path: Path) -> None:
    """The README's main job: install exits 0, status shows settings, uninstall cleans up."""
    out = run_cli("install", str(EXAMPLE), home=tmp_path)
    assert out.returncode == 0, out.stderr
    integration_id = out.stdout.strip().splitlines()[-1]
    status = run_cli("status", integration_id, "--json", home=tmp_path)
    body = json.loads(status.stdout)
    assert set(body) == {
        "_id",
        "mode",
        "version",
        "updateInProgress",
        "install",
        "waiting",
        "error",
    }
    assert body["waiting"] is None and body["error"] is None
    assert body["mode"] == "settings" and body["version"] == "1.0.1"
    assert [s["completed"] for s in body["install"]] == [True] * 4
    assert len(stored(tmp_path, "connections")) == 2

    assert run_cli("uninstall", integration_id, home=tmp_path).returncode == 0
    assert stored(tmp_path) == [] and stored(tmp_path, "connections") == []
    assert run_cli("status", integration_id, home=tmp_path).returncode == 6


def test_install_json_prints_the_status_object(tmp_path: Path) -> None:
    """install --json prints the status object as its last line."""
    out = run_cli("install", str(EXAMPLE), "--json", home=tmp_path)
    body = json.loads(out.stdout.strip().splitlines()[-1])
    assert body["mode"] == "settings" and len(body["install"]) == 4


def test_failed_step_exits_1_then_resume_finishes(tmp_path: Path) -> None:
    """A failing function exits 1 naming step and function, prints the id; resume ends it."""
    directory = connector_dir(tmp_path, [("Connection", "makeConnection"), ("Sync", "boom")])
    out = run_cli("install", str(directory), home=tmp_path)
    assert out.returncode == 1
    assert "'Sync'" in out.stderr and "'boom'" in out.stderr and "NetSuite said no" in out.stderr
    integration_id = out.stdout.strip().splitlines()[-1]
    status = json.loads(run_cli("status", integration_id, "--json", home=tmp_path).stdout)
    assert status["mode"] == "install"
    assert [s["completed"] for s in status["install"]] == [True, False]

    (directory / "fixed").write_text("")
    again = run_cli("resume", integration_id, home=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (
        json.loads(run_cli("status", integration_id, "--json", home=tmp_path).stdout)["mode"]
        == "settings"
    )


def test_waiting_for_a_person_exits_7_and_resume_verifies(tmp_path: Path) -> None:
    """UserActionRequired: exit 7 with message and URL; status shows it; resume goes on."""
    directory = connector_dir(tmp_path, [("Bundle", "verifyBundle")])
    out = run_cli("install", str(directory), home=tmp_path)
    assert out.returncode == 7
    assert "install the bundle in NetSuite" in out.stderr
    assert "https://bundle.example" in out.stderr
    integration_id = out.stdout.strip().splitlines()[-1]
    human = run_cli("status", integration_id, home=tmp_path).stdout
    assert "install the bundle in NetSuite" in human and "https://bundle.example" in human

    assert run_cli("resume", integration_id, home=tmp_path).returncode == 7
    (directory / "bundle-installed").write_text("")
    assert run_cli("resume", integration_id, home=tmp_path).returncode == 0


@pytest.mark.parametrize(
    ("manifest", "words"),
    [
        ("{broken", "not valid JSON"),
        (
            json.dumps(
                {
                    "name": "x",
                    "_connectorId": "c",
                    "version": "1",
                    "install": [
                        {
                            "name": "a",
                            "installerFunction": "missingFn",
                            "uninstallerFunction": "noop",
                        }
                    ],
                }
            ),
            "install[0].installerFunction",
        ),
        (json.dumps({"name": "x", "_connectorId": "c", "version": 1, "install": []}), "version"),
        (
            json.dumps(
                {
                    "name": "x",
                    "_connectorId": "c",
                    "version": "1",
                    "install": [
                        {"name": "a", "installerFunction": "noop", "uninstallerFunction": "noop"},
                        {"name": "a", "installerFunction": "noop", "uninstallerFunction": "noop"},
                    ],
                }
            ),
            "install[1].name",
        ),
    ],
)
def test_bad_connectors_exit_2_and_create_nothing(
    tmp_path: Path, manifest: str, words: str
) -> None:
    """A broken connector exits 2 naming the field; the sandbox stays empty."""
    directory = connector_dir(tmp_path, [])
    (directory / "connector.json").write_text(manifest)
    out = run_cli("install", str(directory), home=tmp_path)
    assert out.returncode == 2 and words in out.stderr
    assert out.stdout == ""
    assert not (tmp_path / "sandbox.db").exists() or stored(tmp_path) == []


def test_plan_and_dry_run_change_nothing(tmp_path: Path) -> None:
    """plan and install --dry-run list the functions and where they are defined."""
    for args in (["plan", str(EXAMPLE)], ["install", str(EXAMPLE), "--dry-run"]):
        out = run_cli(*args, home=tmp_path)
        assert out.returncode == 0
        assert "verifyNetSuiteConnection" in out.stdout and "functions.py:" in out.stdout
    assert not (tmp_path / "sandbox.db").exists()


def test_diagram_prints_mermaid(tmp_path: Path) -> None:
    """`diagram` prints the state machine as Mermaid."""
    out = run_cli("diagram", home=tmp_path)
    assert out.stdout.startswith("stateDiagram-v2") and "uninstall --> removed" in out.stdout


def remote(server: Server, token: str) -> dict[str, str]:
    return {"SMARTCONNECTOR_API_URL": server.url, "SMARTCONNECTOR_API_TOKEN": token}


def test_missing_scope_exits_3_naming_it(server: Server, tmp_path: Path) -> None:
    """A token with only integration.get exits 3 naming the missing scope; nothing changes."""
    token = server.token("integration.get")
    out = run_cli("install", str(EXAMPLE), home=tmp_path, env=remote(server, token))
    assert out.returncode == 3
    assert "integrations.post" in out.stderr
    assert token not in out.stderr + out.stdout


def test_remote_install_and_tokens_never_leak(server: Server, tmp_path: Path) -> None:
    """Against a real server: install works and the token is in no output or home file."""
    token = server.token()
    out = run_cli("install", str(EXAMPLE), home=tmp_path, env=remote(server, token))
    assert out.returncode == 0, out.stderr
    assert token not in out.stdout + out.stderr
    for file in tmp_path.rglob("*"):
        if file.is_file():
            assert token.encode() not in file.read_bytes(), file


def test_token_is_never_taken_from_the_command_line(tmp_path: Path) -> None:
    """There is no --token flag: a token would show in `ps`."""
    out = run_cli("install", str(EXAMPLE), "--token", "abc", home=tmp_path)
    assert out.returncode == 2


def test_token_file(server: Server, tmp_path: Path) -> None:
    """--token-file reads the token from a file."""
    token_file = tmp_path / "token"
    token_file.write_text(server.token() + "\n")
    out = run_cli(
        "install",
        str(EXAMPLE),
        "--api-url",
        server.url,
        "--token-file",
        str(token_file),
        home=tmp_path / "home",
    )
    assert out.returncode == 0, out.stderr


def start_cli(*args: str, home: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCONNECTOR_")}
    env.update(SMARTCONNECTOR_HOME=str(home), SMARTCONNECTOR_LOG_FORMAT="json")
    return subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )


def wait_for_integration(home: Path) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (home / "sandbox.db").exists():
            docs = stored(home)
            if docs:
                return str(docs[0]["_id"])
        time.sleep(0.05)
    raise AssertionError("no integration appeared")


def test_second_run_exits_4_while_the_first_holds_the_lease(tmp_path: Path) -> None:
    """While one install runs, resume of the same integration exits 4 and changes nothing."""
    directory = connector_dir(tmp_path, [("Slow", "slow"), ("Next", "noop")], delay=6)
    first = start_cli("install", str(directory), home=tmp_path)
    integration_id = wait_for_integration(tmp_path)
    second = run_cli("resume", integration_id, home=tmp_path)
    assert second.returncode == 4, second.stderr
    assert "lease" in second.stderr
    assert first.wait(60) == 0


def test_ctrl_c_exits_130_and_resume_finishes(tmp_path: Path) -> None:
    """Ctrl-C stops after the current function with exit 130; resume completes the install."""
    directory = connector_dir(tmp_path, [("Slow", "slow"), ("Next", "noop")], delay=2)
    run = start_cli("install", str(directory), home=tmp_path)
    integration_id = wait_for_integration(tmp_path)
    time.sleep(0.5)
    run.send_signal(signal.SIGINT)
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 130, stderr
    assert stdout.strip().splitlines()[-1] == integration_id
    status = json.loads(run_cli("status", integration_id, "--json", home=tmp_path).stdout)
    assert [s["completed"] for s in status["install"]] == [True, False]
    (directory / "delay").write_text("0")
    assert run_cli("resume", integration_id, home=tmp_path).returncode == 0


def test_kill_9_then_resume(tmp_path: Path) -> None:
    """A run killed outright is resumed at once on this host (its holder is gone)."""
    directory = connector_dir(tmp_path, [("Fast", "noop"), ("Slow", "slow")], delay=30)
    run = start_cli("install", str(directory), home=tmp_path)
    integration_id = wait_for_integration(tmp_path)
    time.sleep(1.5)
    run.kill()
    run.wait(10)
    (directory / "delay").write_text("0")
    out = run_cli("resume", integration_id, home=tmp_path)
    assert out.returncode == 0, out.stderr
