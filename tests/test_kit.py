"""The connector developer's kit: new, list, history, and oversized input named by field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.pytest_plugin import write_connector_folder

from .conftest import run_cli, run_pytest
from .test_cli import stored
from .test_first_hour import acme, help_of


def test_new_connector_plans_installs_and_passes_its_own_test(tmp_path: Path) -> None:
    """`new DIR` as written: plan and install exit 0, and `pytest DIR` passes in a folder
    outside this project."""
    home = tmp_path / "home"
    out = run_cli("new", str(tmp_path / "acme_netsuite"), "--name", "Acme - NetSuite", home=home)
    assert out.returncode == 0, out.stderr
    folder = Path(out.stdout.strip().splitlines()[-1])
    assert sorted(p.name for p in folder.iterdir()) == [
        "connector.json",
        "functions.py",
        "test_connector.py",
    ]
    manifest = json.loads((folder / "connector.json").read_text())
    assert manifest["name"] == "Acme - NetSuite" and len(manifest["_connectorId"]) == 24
    assert run_cli("plan", str(folder), home=home).returncode == 0
    installed = run_cli("install", str(folder), home=home)
    assert installed.returncode == 0, installed.stderr
    tested = run_pytest(str(folder), cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "6 passed" in tested.stdout and "warning" not in tested.stdout.lower()
    for version in ("1.1.0", "2.0.0"):  # the developer's next step: bump it, update, test
        (folder / "connector.json").write_text(json.dumps({**manifest, "version": version}))
        tested = run_pytest(str(folder), cwd=tmp_path)
        assert tested.returncode == 0, tested.stdout + tested.stderr


def test_new_connector_shows_the_examples_idioms_each_with_its_test(tmp_path: Path) -> None:
    """`new` writes the example's idioms: a step that finds what an earlier try made by
    ctx.idempotency_key, that asks for a secret (only when its settings say so: the
    install above needed nobody), an updateFunction, and a test of each."""
    home = tmp_path / "home"
    folder = Path(run_cli("new", str(tmp_path / "acme"), home=home).stdout.split()[-1])
    manifest = json.loads((folder / "connector.json").read_text())
    assert manifest["updateFunction"] == "update"
    assert manifest["settings"]["askForCredentials"] is False
    source = (folder / "functions.py").read_text()
    for idiom in (
        'list("connections", sourceKey=ctx.idempotency_key)',
        "stepsToUpdate",
        "raise UserActionRequired(",
        "secret=True",
        '@registry.function("update")',
    ):
        assert idiom in source
    tests = (folder / "test_connector.py").read_text()
    for test in (
        "test_a_retry_finds_the_connection_the_first_try_made",
        "test_asks_for_a_secret_and_goes_on_with_the_answers",
        "test_update_brings_an_older_integration_to_the_new_version",
    ):
        assert f"def {test}(" in tests
    manifest["settings"]["askForCredentials"] = True
    (folder / "connector.json").write_text(json.dumps(manifest))
    asked = run_cli("install", str(folder), home=home)
    assert asked.returncode == 7 and "apiKey (API key, secret)" in asked.stderr
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps({"account": "A-1", "apiKey": "k-only-for-the-function"}))
    unattended = run_cli("install", str(folder), "--input-file", str(answers), home=home)
    assert unattended.returncode == 0, unattended.stderr


@pytest.mark.parametrize("kind", ["not empty", "a file"])
def test_new_refuses_a_folder_in_use_and_writes_nothing(tmp_path: Path, kind: str) -> None:
    """A non-empty folder, or a file: exit 2, a message naming it, nothing written."""
    target = tmp_path / "taken"
    if kind == "a file":
        target.write_text("mine")
    else:
        target.mkdir()
        (target / "notes.txt").write_text("mine")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    out = run_cli("new", str(target), home=tmp_path / "home")
    assert out.returncode == 2
    assert str(target) in out.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_list_shows_the_install_base_and_filters_by_connector(tmp_path: Path) -> None:
    """One line per integration with steps done of total and a badge; --json gives status
    objects; --connector and --connector-id filter."""
    home = tmp_path / "home"
    ok = acme(tmp_path / "a", "noop")
    waits = write_connector_folder(
        tmp_path / "b" / "acme",
        {
            **json.loads((ok / "connector.json").read_text()),
            "_connectorId": "other",
            "install": [
                {
                    "name": "Bundle",
                    "installerFunction": "verifyBundle",
                    "uninstallerFunction": "noop",
                }
            ],
        },
        (ok / "functions.py").read_text(),
    )
    first = run_cli("install", str(ok), home=home).stdout.split()[-1]
    second = run_cli("install", str(waits), home=home).stdout.split()[-1]
    lines = run_cli("list", home=home).stdout.splitlines()[1:]  # under the header
    assert len(lines) == 2
    assert first in lines[0] and "settings" in lines[0] and "1/1" in lines[0]
    assert second in lines[1] and "0/1" in lines[1] and lines[1].endswith("waiting")
    everything = json.loads(run_cli("list", "--json", home=home).stdout)
    assert [s["_id"] for s in everything] == [first, second]
    assert everything[1]["waiting"]["url"] == "https://acme.example/bundle"
    only = json.loads(run_cli("list", "--connector", str(ok), "--json", home=home).stdout)
    assert [s["_id"] for s in only] == [first]
    by_id = json.loads(run_cli("list", "--connector-id", "other", "--json", home=home).stdout)
    assert [s["_id"] for s in by_id] == [second]


def test_list_of_an_empty_home_is_empty(tmp_path: Path) -> None:
    """Nothing installed: an empty list, exit 0, and no sandbox made."""
    out = run_cli("list", "--json", home=tmp_path / "home")
    assert out.returncode == 0 and json.loads(out.stdout) == []
    assert not (tmp_path / "home").exists()


def test_history_lists_each_call_oldest_first(tmp_path: Path) -> None:
    """A failed call, then its success on resume, in order, with the JSON keys SPEC names;
    the text says what the document says now, and outlives the integration."""
    directory = acme(tmp_path, "noop", "failing")
    home = tmp_path / "home"
    integration_id = run_cli("install", str(directory), home=home).stdout.split()[-1]
    functions = directory / "functions.py"
    functions.write_text(
        functions.read_text().replace('return settings["bundleId"]', "return None")
    )
    assert run_cli("resume", integration_id, home=home).returncode == 0
    calls = json.loads(run_cli("history", integration_id, "--json", home=home).stdout)
    assert [(c["step"], c["function"], c["outcome"]) for c in calls] == [
        (None, "setUp", "succeeded"),
        ("Step 1", "noop", "succeeded"),
        ("Step 2", "failing", "failed"),
        ("Step 2", "failing", "succeeded"),
    ]
    assert all(set(c) == {"time", "phase", "step", "function", "outcome", "seconds"} for c in calls)
    assert calls[0]["phase"] == "installer" and calls[1]["phase"] == "install"
    assert calls[0]["time"] <= calls[-1]["time"] and "T" in calls[0]["time"]
    assert all(isinstance(c["seconds"], float) for c in calls)
    text = run_cli("history", integration_id, home=home).stdout
    assert "now: mode settings" in text
    assert run_cli("uninstall", integration_id, home=home).returncode == 0
    after = run_cli("history", integration_id, home=home)
    assert after.returncode == 0 and "no longer exists" in after.stdout


def test_history_of_an_unknown_integration_exits_6(tmp_path: Path) -> None:
    """Neither in the journal nor in the API: exit 6, naming the home."""
    home = tmp_path / "home"
    run_cli("install", str(acme(tmp_path, "noop")), home=home)
    out = run_cli("history", "6b0480442d82113bd629b566", home=home)
    assert out.returncode == 6 and str(home) in out.stderr


def test_an_oversized_connector_json_names_the_field(tmp_path: Path) -> None:
    """On the embedded default, a 10 MB description is named with its path and size, exit 2,
    and nothing is created."""
    directory = acme(tmp_path, "noop")
    manifest = json.loads((directory / "connector.json").read_text())
    manifest["install"][0]["description"] = "x" * (10 * 1024 * 1024)
    (directory / "connector.json").write_text(json.dumps(manifest))
    home = tmp_path / "home"
    out = run_cli("install", str(directory), home=home)
    assert out.returncode == 2
    assert "install[0].description: 10.0 MB" in out.stderr
    assert not (home / "sandbox.db").exists() or stored(home) == []


@pytest.mark.parametrize("command", ["new", "list", "history"])
def test_each_kit_command_has_help_with_an_example(command: str) -> None:
    """--help teaches: each ends with an example."""
    assert "Example" in help_of(command)


def test_api_rate_keeps_a_run_under_the_tokens_limit(tmp_path: Path) -> None:
    """Against a sandbox limited to 10 requests/s (bucket 10), an install of 25 steps given
    --api-rate 10 --api-burst 10 is never answered 429; without them it is."""
    from .conftest import start_server

    server = start_server(tmp_path, "--rate", "10", "--burst", "10")
    try:
        token = server.token()
        directory = acme(tmp_path, *["noop"] * 25)
        env = {"SMARTCONNECTOR_API_TOKEN": token, "SMARTCONNECTOR_API_URL": server.url}

        def statuses() -> list[int]:
            lines = [
                json.loads(x) for x in server.log.read_text().splitlines() if x.startswith("{")
            ]
            return [int(x["status"]) for x in lines if "status" in x]

        slow = run_cli(
            "install",
            str(directory),
            "--api-rate",
            "10",
            "--api-burst",
            "10",
            home=tmp_path / "a",
            env=env,
        )
        assert slow.returncode == 0, slow.stderr
        assert 429 not in statuses()
        fast = run_cli("install", str(directory), home=tmp_path / "b", env=env)
        assert fast.returncode == 0, fast.stderr
        assert 429 in statuses()  # the test can fail: the default rate overruns this token
    finally:
        server.stop()
