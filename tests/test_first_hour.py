"""What a new connector developer meets in their first hour, each as they would meet it."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from engine.pytest_plugin import write_connector_folder

from .conftest import CLI, ROOT, run_cli, run_pytest
from .test_cli import stored

ACME = """
import asyncio, os, signal, time
from pathlib import Path
from installers import Registry, UserActionRequired

registry = Registry("acme")
HERE = Path(__file__).parent
CALLS = HERE / "calls.log"

if (HERE / "ctrl-c-on-import").exists():  # as if Ctrl-C came while the command starts
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.5)


def note(what):
    with CALLS.open("a") as log:
        log.write(what + "\\n")


@registry.function("setUp")
def set_up(ctx):
    note("setUp")


@registry.function("connect")
def connect(ctx):
    note("connect started")
    presses = int((HERE / "presses").read_text()) if (HERE / "presses").exists() else 0
    if presses and not (HERE / "pressed").exists():
        (HERE / "pressed").write_text("")
        for _ in range(presses):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
        if presses > 1:
            time.sleep(30)  # abandoned long before this ends
    note("connect finished")


@registry.function("verifyBundle")
def verify_bundle(ctx):
    if not (HERE / "bundle-installed").exists():
        raise UserActionRequired("install the Acme bundle", url="https://acme.example/bundle")


@registry.function("failing")
def failing(ctx):
    settings = {}
    return settings["bundleId"]


@registry.function("noop")
def noop(ctx):
    return None
"""


def acme(tmp_path: Path, *functions: str) -> Path:
    """A connector of its own, in a folder outside this project, with these steps."""
    manifest = {
        "name": "Acme",
        "_connectorId": "acme",
        "version": "1.0.0",
        "installerFunction": "setUp",
        "install": [
            {"name": f"Step {i}", "installerFunction": f, "uninstallerFunction": "noop"}
            for i, f in enumerate(functions, 1)
        ],
    }
    return write_connector_folder(tmp_path / "acme", manifest, ACME)


def calls(directory: Path) -> list[str]:
    log = directory / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


# -- 1. connector tests with zero set-up ---------------------------------------------------

CONNECTOR_TEST = '''
from pathlib import Path

import pytest
from engine import WaitingForUser

BUNDLE = Path("acme") / "bundle-installed"


async def test_installs(install_connector, sandbox_api):
    """Install ends in settings mode."""
    BUNDLE.write_text("")
    doc = await install_connector("acme")
    assert doc["mode"] == "settings"


async def test_waits_for_the_bundle_then_resumes(install_connector, smartconnector_engine):
    """A step waiting for a person raises WaitingForUser; resume goes on once they acted."""
    BUNDLE.unlink(missing_ok=True)
    with pytest.raises(WaitingForUser) as waiting:
        await install_connector("acme")
    assert waiting.value.url == "https://acme.example/bundle"
    BUNDLE.write_text("")
    doc = await smartconnector_engine.resume(waiting.value.integration_id)
    assert doc["mode"] == "settings"
'''


@pytest.mark.parametrize(
    ("config", "options"),
    [
        (None, []),  # pytest-asyncio installed, in its default strict mode
        (None, ["-p", "no:asyncio"]),  # as if pytest-asyncio were not installed
        ("[pytest]\nasyncio_mode = auto\n", []),  # a project that chose its mode
    ],
    ids=["strict", "no-pytest-asyncio", "auto"],
)
def test_connector_tests_run_in_a_bare_folder(
    tmp_path: Path, config: str | None, options: list[str]
) -> None:
    """Async connector tests using the plugin's fixtures pass in a folder with no conftest
    and no pytest configuration, whatever pytest-asyncio's mode, and with no warning (the
    plugin sets the fixture loop scope pytest-asyncio asks for)."""
    acme(tmp_path, "noop", "verifyBundle")
    (tmp_path / "test_acme.py").write_text(CONNECTOR_TEST)
    if config:
        (tmp_path / "pytest.ini").write_text(config)
    out = run_pytest(*options, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout
    assert "asyncio_default_fixture_loop_scope" not in out.stdout + out.stderr
    assert "warning" not in out.stdout.lower()


def test_pytest_examples_works_from_the_project_root() -> None:
    """`python -m pytest examples`, as the example's docstring says, passes here."""
    out = run_pytest("examples", cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "passed" in out.stdout


# -- 2. Ctrl-C never orphans --------------------------------------------------------------


def test_ctrl_c_while_the_command_starts_changes_nothing(tmp_path: Path) -> None:
    """Ctrl-C during start-up (here: while functions.py loads) exits 130 cleanly, no
    traceback, and creates nothing."""
    directory = acme(tmp_path, "connect")
    (directory / "ctrl-c-on-import").write_text("")
    out = run_cli("install", str(directory), home=tmp_path / "home")
    assert out.returncode == 130, out.stderr
    assert "Traceback" not in out.stderr
    assert "nothing was changed" in out.stderr
    assert not (tmp_path / "home" / "sandbox.db").exists() or stored(tmp_path / "home") == []
    assert calls(directory) == []


def test_ctrl_c_in_a_sync_step_records_it_and_resume_does_not_run_it_again(
    tmp_path: Path,
) -> None:
    """Ctrl-C while a sync function runs: it finishes and is recorded, the id is printed,
    exit 130; resume goes on without running it again."""
    directory = acme(tmp_path, "connect", "noop")
    (directory / "presses").write_text("1")
    home = tmp_path / "home"
    out = run_cli("install", str(directory), home=home)
    assert out.returncode == 130, out.stderr
    integration_id = out.stdout.strip().splitlines()[-1]
    assert [d["_id"] for d in stored(home)] == [integration_id]
    assert stored(home)[0]["install"][0]["completed"] is True
    assert f"smartconnector resume {integration_id}" in out.stderr
    resumed = run_cli("resume", integration_id, home=home)
    assert resumed.returncode == 0, resumed.stderr
    assert calls(directory).count("connect finished") == 1


def test_second_ctrl_c_abandons_the_function_and_resume_runs_it_again(tmp_path: Path) -> None:
    """Ctrl-C twice: the function is abandoned at once (not waited for), the id is printed,
    and resume runs it again."""
    directory = acme(tmp_path, "connect")
    (directory / "presses").write_text("2")
    home = tmp_path / "home"
    out = run_cli("install", str(directory), home=home, timeout=20)
    assert out.returncode == 130, out.stderr
    assert "abandoned" in out.stderr
    integration_id = out.stdout.strip().splitlines()[-1]
    assert stored(home)[0]["install"][0]["completed"] is False
    assert run_cli("resume", integration_id, home=home).returncode == 0
    assert calls(directory).count("connect started") == 2
    assert calls(directory).count("connect finished") == 1


# -- 3. advice derived from what is ------------------------------------------------------


def test_atomic_rollback_gives_no_resume_advice_and_says_what_it_undid(tmp_path: Path) -> None:
    """After --atomic rolled back and deleted the integration, nothing says resume; --json
    carries what was undone as data."""
    directory = acme(tmp_path, "noop", "failing")
    home = tmp_path / "home"
    out = run_cli("install", str(directory), "--atomic", "--json", home=home)
    assert out.returncode == 1, out.stderr
    assert "resume" not in out.stderr
    body = json.loads(out.stdout.strip().splitlines()[-1])
    assert body["deleted"] is True
    assert body["rolledBack"] == ["Step 1"]
    assert body["error"]["function"] == "failing"
    assert stored(home) == []


def test_install_into_an_installed_integration_exits_2_naming_its_mode(tmp_path: Path) -> None:
    """`install --integration ID` of an integration in settings mode: exit 2, names the
    mode, changes nothing, and gives no resume advice."""
    directory = acme(tmp_path, "noop")
    home = tmp_path / "home"
    integration_id = run_cli("install", str(directory), home=home).stdout.split()[-1]
    before = stored(home)
    out = run_cli("install", str(directory), "--integration", integration_id, home=home)
    assert out.returncode == 2, out.stderr
    assert "mode 'settings'" in out.stderr
    assert "resume" not in out.stderr
    assert stored(home) == before


# -- 4. a failing function names its place ------------------------------------------------


def test_a_failed_function_names_its_file_and_line(tmp_path: Path) -> None:
    """The error names the step, the function, and file:line where it raised; --verbose
    adds the traceback; status shows the place too."""
    directory = acme(tmp_path, "failing")
    home = tmp_path / "home"
    line = ACME.splitlines().index('    return settings["bundleId"]') + 1
    out = run_cli("install", str(directory), home=home)
    assert out.returncode == 1
    assert "'Step 1'" in out.stderr and "'failing'" in out.stderr
    assert "KeyError: 'bundleId'" in out.stderr
    assert re.search(rf"functions\.py:{line}, in failing", out.stderr), out.stderr
    assert "Traceback" not in out.stderr and "--verbose" in out.stderr
    assert out.stderr.count("smartconnector resume") == 1  # one hint, not two
    integration_id = out.stdout.strip().splitlines()[-1]
    verbose = run_cli("resume", integration_id, "--verbose", home=home)
    assert "Traceback (most recent call last)" in verbose.stderr
    status = run_cli("status", integration_id, home=home)
    assert f"functions.py:{line}" in status.stdout


# -- 5. --json is complete ----------------------------------------------------------------


def test_plan_json_and_dry_run_json_list_the_actions(tmp_path: Path) -> None:
    """`plan --json` and `install --dry-run --json` print the same array of actions, each
    with function and step (null where there is none), and create nothing."""
    directory = acme(tmp_path, "connect", "noop")
    home = tmp_path / "home"
    planned = json.loads(run_cli("plan", str(directory), "--json", home=home).stdout)
    dry = run_cli("install", str(directory), "--dry-run", "--json", home=home)
    assert json.loads(dry.stdout) == planned
    assert [(a["function"], a["step"]) for a in planned] == [
        (None, None),
        ("setUp", None),
        ("connect", "Step 1"),
        ("noop", "Step 2"),
        (None, None),
    ]
    assert planned[-1]["to"] == "settings"
    assert not (home / "sandbox.db").exists()


def test_status_and_install_json_carry_waiting_and_error(tmp_path: Path) -> None:
    """A waiting step's message, URL and fields (none here), and the last error, are in the
    JSON objects."""
    directory = acme(tmp_path, "verifyBundle")
    home = tmp_path / "home"
    out = run_cli("install", str(directory), "--json", home=home)
    assert out.returncode == 7
    body = json.loads(out.stdout.strip().splitlines()[-1])
    assert body["waiting"] == {
        "step": "Step 1",
        "function": "verifyBundle",
        "message": "install the Acme bundle",
        "url": "https://acme.example/bundle",
        "fields": [],
    }
    assert body["error"] is None
    status = json.loads(run_cli("status", body["_id"], "--json", home=home).stdout)
    assert status["waiting"] == body["waiting"]

    failing = acme(tmp_path / "other", "failing")
    out = run_cli("install", str(failing), "--json", home=home)
    body = json.loads(out.stdout.strip().splitlines()[-1])
    assert body["waiting"] is None
    assert body["error"]["function"] == "failing"
    assert body["error"]["message"] == "KeyError: 'bundleId'"


# -- 6. where state lives ------------------------------------------------------------------


def test_status_in_an_empty_home_names_it_and_creates_nothing(tmp_path: Path) -> None:
    """`status ID` where nothing was installed: exit 6, the message names the home, and no
    `.smartconnector` appears."""
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCONNECTOR_")}
    out = subprocess.run(
        [*CLI, "status", "6b0480442d82113bd629b566"],
        capture_output=True,
        text=True,
        cwd=empty,
        env=env,
        timeout=60,
    )
    assert out.returncode == 6, out.stderr
    assert str(empty / ".smartconnector") in out.stderr
    assert "--home" in out.stderr
    assert list(empty.iterdir()) == []


def test_not_found_names_the_sandbox_it_looked_in(tmp_path: Path) -> None:
    """An unknown id in an existing home: exit 6, naming the embedded sandbox's home."""
    home = tmp_path / "home"
    run_cli("install", str(acme(tmp_path, "noop")), home=home)
    out = run_cli("status", "6b0480442d82113bd629b566", home=home)
    assert out.returncode == 6
    assert f"embedded sandbox in {home}" in out.stderr


def test_an_unreachable_api_is_named_with_its_host(tmp_path: Path) -> None:
    """Exit 5, and the message says which host did not answer."""
    out = run_cli(
        "status",
        "x",
        "--api-url",
        "http://127.0.0.1:9/v1",
        "--retry-budget",
        "0.3",
        home=tmp_path,
        env={"SMARTCONNECTOR_API_TOKEN": "a-token-of-realistic-length"},
    )
    assert out.returncode == 5, out.stderr
    assert "http://127.0.0.1:9/v1/integrations/x" in out.stderr


# -- 7. --help reads well ------------------------------------------------------------------


def help_of(*command: str) -> str:
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    out = subprocess.run(
        [*CLI, *command, "--help"], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_help_lists_commands_in_the_order_of_use_one_line_each() -> None:
    """install first, then resume; at 80 columns each command's summary fits its line."""
    text = help_of()
    panel = text[text.index("Commands") :]
    names = re.findall(r"^│ (\w+) ", panel, re.M)
    assert names[:4] == ["install", "resume", "uninstall", "status"]
    rows = [line for line in panel.splitlines() if line.startswith("│")]
    assert len(rows) == len(names), "a summary wrapped onto a second line"


def test_install_help_groups_its_options_and_ends_with_an_example() -> None:
    """Temporal, API, extension and step options sit in their own panels."""
    text = help_of("install")
    for panel in ("Temporal", "API", "Extension server", "Step policy"):
        assert f"─ {panel} ─" in text
    options = text[text.index("─ Options ─") : text.index("─ Step policy ─")]
    assert "--temporal-address" not in options and "--api-url" not in options
    assert "Example" in text


@pytest.mark.parametrize("command", [("sandbox", "serve"), ("sandbox", "token", "create")])
def test_sandbox_commands_show_an_example(command: tuple[str, ...]) -> None:
    """Each sandbox command's --help ends with an example."""
    assert "Example" in help_of(*command)
