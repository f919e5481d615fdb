"""A new user's first hour, second round: connector.json problems all at once, and output a
person reads at a glance, each as the user met it on the command line."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import shutil
import signal
import subprocess
from pathlib import Path

from .conftest import CLI, EXAMPLE, ROOT, run_cli
from .test_cli import stored
from .test_first_hour import acme, help_of

# -- 3. every problem in one run -----------------------------------------------------------


def test_every_connector_json_problem_is_named_in_one_run(tmp_path: Path) -> None:
    """Missing fields, a wrong type and a duplicate step name: exit 2, each named with its
    field in the same run, none hidden behind "(and N more)"."""
    directory = tmp_path / "broken"
    directory.mkdir()
    steps = [
        {"name": "A", "installerFunction": "a"},
        {"name": "A", "installerFunction": "b", "uninstallerFunction": "c", "completed": "yes"},
    ]
    (directory / "connector.json").write_text(json.dumps({"name": "Broken", "install": steps}))
    out = run_cli("plan", str(directory), home=tmp_path / "home")
    assert out.returncode == 2
    for field in (
        "_connectorId: Field required",
        "version: Field required",
        "install[0].uninstallerFunction: Field required",
        "install[1].completed: Input should be a valid boolean",
        "install[1].name: duplicate step name 'A'",
    ):
        assert field in out.stderr
    assert "more)" not in out.stderr and "5 problems" in out.stderr


def test_an_unknown_function_name_suggests_the_closest(tmp_path: Path) -> None:
    """A typo in a function name: exit 2 naming the field, with "did you mean" the defined
    one; every such name in the same run; nothing created."""
    work = tmp_path / "example"
    shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = json.loads((work / "connector.json").read_text())
    manifest["install"][0]["installerFunction"] = "verifyNetsuiteConnection"
    manifest["install"][3]["uninstallerFunction"] = "somethingElseEntirely"
    (work / "connector.json").write_text(json.dumps(manifest))
    home = tmp_path / "home"
    for command in ("plan", "install"):
        out = run_cli(command, str(work), home=home)
        assert out.returncode == 2, out.stderr
        assert (
            "install[0].installerFunction: function 'verifyNetsuiteConnection' is not defined;"
            " did you mean 'verifyNetSuiteConnection'?" in out.stderr
        )
        assert "install[3].uninstallerFunction: function 'somethingElseEntirely'" in out.stderr
    assert not (home / "sandbox.db").exists() or stored(home) == []


def test_readme_lists_the_required_connector_json_fields() -> None:
    """The README says which connector.json fields are required, step fields included."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("Required in `connector.json`") :][:800]
    for field in ("name", "_connectorId", "version", "install"):
        assert f"`{field}`" in section
    for field in ("installerFunction", "uninstallerFunction"):
        assert f"`{field}`" in section
    assert re.search(r"`updateFunction`", section)


# -- 4. output a person reads at a glance --------------------------------------------------


def test_list_has_a_header_and_says_where_it_looked_when_empty(tmp_path: Path) -> None:
    """list: a header over aligned columns; nothing to show names the home (and filter) it
    looked in, whether or not the home holds a sandbox yet."""
    home = tmp_path / "home"
    out = run_cli("list", home=home)
    assert out.returncode == 0 and out.stdout == ""
    assert f"no integrations in the embedded sandbox in {home}" in out.stderr
    assert not home.exists()
    integration_id = run_cli("install", str(acme(tmp_path, "noop")), home=home).stdout.split()[-1]
    header, row = run_cli("list", home=home).stdout.splitlines()
    assert header.split() == ["NAME", "ID", "CONNECTOR", "VERSION", "MODE", "STEPS", "STATE"]
    assert row.split() == ["Acme", integration_id, "acme", "1.0.0", "settings", "1/1"]
    assert row.index(integration_id) == header.index("ID")
    other = run_cli("list", "--connector-id", "nobody", home=home)
    assert f"no integrations of connector nobody in the embedded sandbox in {home}" in other.stderr


def test_resume_and_uninstall_say_what_they_did(tmp_path: Path) -> None:
    """resume and uninstall each say in words what they did, the id still the last line."""
    home, directory = tmp_path / "home", acme(tmp_path, "noop", "verifyBundle")
    integration_id = run_cli("install", str(directory), home=home).stdout.split()[-1]
    (directory / "bundle-installed").write_text("")
    resumed = run_cli("resume", integration_id, home=home)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed {integration_id}: installed (mode settings, version 1.0.0, 2/2 steps)" in (
        resumed.stderr
    )
    assert resumed.stdout.splitlines()[-1] == integration_id
    removed = run_cli("uninstall", integration_id, home=home)
    assert removed.returncode == 0, removed.stderr
    assert f"uninstalled {integration_id}: undid 2 steps and deleted it" in removed.stderr
    assert removed.stdout.splitlines()[-1] == integration_id


def test_help_shows_no_type_after_flags() -> None:
    """--help lists flags bare (no `<bool>`); options that take a value keep their type."""
    for command in ((), ("install",), ("rollout",), ("list",)):
        text = help_of(*command)
        assert "<bool>" not in text
    assert "<path>" in help_of("install")


MIGRATE = """

@registry.function("migrateTo110")
def migrate_to_110(ctx):
    ctx.log.info("migrating", integration=ctx.integration.id)
    if ctx.integration.id in (HERE / "broken.txt").read_text().split():
        raise KeyError("bundleId")
"""


def fleet(tmp_path: Path, size: int) -> tuple[Path, Path, list[str]]:
    """``size`` integrations of acme 1.0.0, and acme 1.1.0 whose updateFunction fails for
    the ids listed in its broken.txt: the new version's folder, the home and the ids."""
    home = tmp_path / "home"
    v1 = acme(tmp_path / "v1", "noop")
    ids = [run_cli("install", str(v1), home=home).stdout.split()[-1] for _ in range(size)]
    v2 = tmp_path / "v2"
    shutil.copytree(v1, v2)
    manifest = json.loads((v2 / "connector.json").read_text())
    manifest.update(version="1.1.0", updateFunction="migrateTo110")
    (v2 / "connector.json").write_text(json.dumps(manifest))
    with (v2 / "functions.py").open("a") as functions:
        functions.write(MIGRATE)
    (v2 / "broken.txt").write_text("")
    return v2, home, ids


def on_a_terminal(*args: str, home: Path) -> tuple[int, list[str], str]:
    """``smartconnector ARGS`` with stderr on a terminal (a pty) as a person runs it: the
    exit code, the terminal's lines (each cursor move starts a new one) and stdout."""
    master, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCONNECTOR_")}
    env.update(SMARTCONNECTOR_HOME=str(home), COLUMNS="160", TERM="xterm")
    process = subprocess.Popen(
        [*CLI, *args], stdin=terminal, stderr=terminal, stdout=subprocess.PIPE, env=env
    )
    os.close(terminal)
    shown = b""
    with contextlib.suppress(OSError):  # the terminal closes with the process
        while chunk := os.read(master, 65536):
            shown += chunk
    os.close(master)
    assert process.stdout is not None
    stdout = process.stdout.read().decode()
    process.wait(60)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "\n", shown.decode(errors="replace"))
    return process.returncode, [line for line in text.splitlines() if line.strip()], stdout


def test_rollout_lines_name_each_integration_with_progress_and_phase(tmp_path: Path) -> None:
    """On a terminal, one line per integration ("updated 3/4 · phase 2 of 2 · ID"), the
    connector's log lines whole and apart from the live table; no line per step."""
    v2, home, ids = fleet(tmp_path, 4)
    code, lines, stdout = on_a_terminal("rollout", str(v2), "--all", "--phase", "50", home=home)
    assert code == 0, "\n".join(lines)
    for integration_id in ids:
        [mine] = [line for line in lines if line.endswith(f"· {integration_id}")]
        phase = 1 + ids.index(integration_id) // 2
        assert re.fullmatch(rf"updated [1-4]/4 · phase {phase} of 2 · {integration_id}", mine)
    logs = [line for line in lines if "migrating" in line]
    assert len(logs) == 4
    assert not any(mark in line for line in logs for mark in "│┃┏└")
    assert not any("(connector)" in line for line in lines)  # the per-step display is off
    assert "4 updated" in stdout


def test_a_stopped_rollout_names_the_failures_to_fix_first(tmp_path: Path) -> None:
    """After failures stop a rollout, the advice names the error, how many and which
    integrations, then says what running it again will do."""
    v2, home, ids = fleet(tmp_path, 4)
    (v2 / "broken.txt").write_text(ids[0])
    out = run_cli("rollout", str(v2), "--all", "--phase", "50", "--max-failures", "0", home=home)
    assert out.returncode == 1
    assert "stopped: 1 failures, over the limit of 0, after phase 1 of 2" in out.stdout
    advice = out.stdout.strip().splitlines()[-1]
    assert advice.startswith("  then: fix these failures first:")
    assert "function 'migrateTo110' failed: KeyError: 'bundleId'" in advice
    assert f"(1 integration: {ids[0]})" in advice
    assert "goes on with the 2 not reached" in advice
    events = [json.loads(x) for x in out.stderr.splitlines() if '"rollout outcome"' in x]
    assert {(e["integration_id"], e["progress"][1:], e["phase"]) for e in events} == {
        (ids[0], "/4", "1 of 2"),
        (ids[1], "/4", "1 of 2"),
    }


def test_a_rollout_says_when_it_holds_and_how_to_go_on(tmp_path: Path) -> None:
    """`rollout --pause` that holds says so, with its id and the command that resumes it;
    stopped there (Ctrl-C), it says no command runs it and what the next run will do."""
    v2, home, _ = fleet(tmp_path, 4)
    command = [*CLI, "rollout", str(v2), "--all", "--phase", "50", "--pause"]
    env = {**os.environ, "SMARTCONNECTOR_HOME": str(home), "SMARTCONNECTOR_LOG_FORMAT": "json"}
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    states = []
    for raw in process.stderr:
        if '"rollout state"' in raw:
            states.append(json.loads(raw))
            if states[-1]["state"] == "paused":
                process.send_signal(signal.SIGINT)
                break
    _, err = process.communicate(timeout=60)
    held = states[-1]
    assert (held["state"], held["phase"]) == ("paused", "1 of 2"), states
    assert held["next"].startswith(f"`smartconnector rollouts resume {held['rollout']}`")
    assert process.returncode == 130, err
    left = [json.loads(x) for x in err.splitlines() if '"rollout state"' in x]
    assert left[-1]["state"] == "paused", left
    assert "no rollout command runs it now" in left[-1]["next"]
    assert "it holds until `rollouts resume`" in left[-1]["next"]


def test_coverage_files_stay_out_of_the_work_tree() -> None:
    """Coverage's per-process files (an interrupted `pytest --cov` leaves them) go to an
    ignored cache folder, not the project's root; the gate is still set."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["coverage"]
    data_file = Path(config["run"]["data_file"])
    assert config["run"]["parallel"] is True and config["report"]["fail_under"] >= 90
    assert len(data_file.parts) > 1 and not data_file.is_absolute()
    leftover = data_file.parent / f"{data_file.name}.host.pid1.x"
    ignored = subprocess.run(["git", "check-ignore", "-q", str(leftover)], cwd=ROOT)
    assert ignored.returncode == 0, f"{leftover} is not ignored"
