"""A new user's first hour, second round: the answers a waiting step asks for, as the user
met them on the command line."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import ROOT, run_cli
from .test_input import SECRET, asking, everything_written


def install_waiting(tmp_path: Path) -> tuple[Path, Path, str]:
    """The asking connector installed until its step waits: its folder, home and id."""
    directory, home = asking(tmp_path), tmp_path / "home"
    out = run_cli("install", str(directory), home=home)
    assert out.returncode == 7, out.stderr
    return directory, home, out.stdout.strip().splitlines()[-1]


def answers_file(tmp_path: Path, answers: dict[str, str]) -> Path:
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(answers))
    return path


# -- 1. a waiting step names its answers ---------------------------------------------------

ASKED = [
    {"name": "account", "label": "Account ID", "secret": False},
    {"name": "token", "label": "Token", "secret": True},
]


def test_status_and_install_json_list_the_fields_asked(tmp_path: Path) -> None:
    """waiting.fields carries each answer asked (name, label, secret), in install --json
    and status --json alike."""
    directory, home = asking(tmp_path), tmp_path / "home"
    out = run_cli("install", str(directory), "--json", home=home)
    assert out.returncode == 7, out.stderr
    body = json.loads(out.stdout.strip().splitlines()[-1])
    assert body["waiting"]["fields"] == ASKED
    status = json.loads(run_cli("status", body["_id"], "--json", home=home).stdout)
    assert status["waiting"] == body["waiting"]


def test_a_waiting_run_names_each_answer_and_how_to_give_it(tmp_path: Path) -> None:
    """install's and status's text name each field with its label, and both ways to answer:
    --input-file with a JSON object, or resume at a terminal."""
    directory, home = asking(tmp_path), tmp_path / "home"
    out = run_cli("install", str(directory), home=home)
    integration_id = out.stdout.strip().splitlines()[-1]
    status = run_cli("status", integration_id, home=home).stdout
    for text in (out.stderr, status):
        assert "account (Account ID)" in text and "token (Token, secret)" in text
        assert f"smartconnector resume {integration_id} --input-file FILE" in text
        assert '{"account": "...", "token": "..."}' in text
        assert "at a terminal" in text


def test_resume_off_a_terminal_that_waits_again_mentions_input_file(tmp_path: Path) -> None:
    """resume with no terminal and no answers: the step waits again, and the output says
    how to hand it the answers."""
    _, home, integration_id = install_waiting(tmp_path)
    out = run_cli("resume", integration_id, home=home)
    assert out.returncode == 7
    assert "--input-file" in out.stderr and "token (Token, secret)" in out.stderr


def test_install_with_input_file_finishes_in_one_command(tmp_path: Path) -> None:
    """install --input-file hands the answers to the step that asks: one command, exit 0,
    and the secret is in no output and no file."""
    directory, home = asking(tmp_path), tmp_path / "home"
    answers = answers_file(tmp_path, {"account": "ACME-1", "token": SECRET})
    out = run_cli("install", str(directory), "--input-file", str(answers), home=home)
    assert out.returncode == 0, out.stderr
    assert (directory / "seen.txt").read_text() == f"{len(SECRET)} ACME-1"
    status = json.loads(run_cli("status", out.stdout.split()[-1], "--json", home=home).stdout)
    assert status["mode"] == "settings" and status["waiting"] is None
    answers.unlink()
    assert SECRET not in out.stdout + out.stderr + everything_written(home)


def test_an_answer_not_asked_for_is_exit_2_naming_it_and_nothing_runs(tmp_path: Path) -> None:
    """resume --input-file with a key the waiting step did not ask for (apikey, a typo):
    exit 2 naming it and the names asked, and the function is not run."""
    directory, home, integration_id = install_waiting(tmp_path)
    answers = answers_file(tmp_path, {"apikey": "k", "account": "A"})
    out = run_cli("resume", integration_id, "--input-file", str(answers), home=home)
    assert out.returncode == 2
    assert "'apikey'" in out.stderr and "asks for account, token" in out.stderr
    assert "Traceback" not in out.stderr
    calls = json.loads(run_cli("history", integration_id, "--json", home=home).stdout)
    assert [c["outcome"] for c in calls] == ["waiting"]
    assert not (directory / "seen.txt").exists()


def test_install_with_an_answer_not_asked_for_stops_naming_it(tmp_path: Path) -> None:
    """install --input-file whose key the step did not ask for: exit 2 naming it, the step
    is not run again, and the id is the last line so resume can take the right answers."""
    directory, home = asking(tmp_path), tmp_path / "home"
    answers = answers_file(tmp_path, {"Account": "A", "token": "t"})
    out = run_cli("install", str(directory), "--input-file", str(answers), home=home)
    assert out.returncode == 2, out.stderr
    assert "'Account'" in out.stderr and "did you mean 'account'?" in out.stderr
    integration_id = out.stdout.strip().splitlines()[-1]
    assert f"resume {integration_id} --input-file" in out.stderr
    assert not (directory / "seen.txt").exists()


def test_readme_shows_install_input_file() -> None:
    """The README tells a new user that install takes --input-file too."""
    readme = (ROOT / "README.md").read_text()
    assert "install CONNECTOR_DIR" in readme and "[--input-file FILE]" in readme
    assert "smartconnector install my_connector --input-file answers.json" in readme
