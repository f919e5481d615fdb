"""A new user's first hour, second round: the answers a waiting step asks for, and usage
errors at the edges, each as the user met it on the command line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from .conftest import CLI, ROOT, Server, run_cli
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


def test_answers_for_an_integration_that_waits_for_none_are_refused(tmp_path: Path) -> None:
    """resume --input-file of an integration nothing stopped to ask: exit 2, saying so."""
    directory, home = asking(tmp_path), tmp_path / "home"
    answers = answers_file(tmp_path, {"account": "A", "token": "t"})
    done = run_cli("install", str(directory), "--input-file", str(answers), home=home)
    integration_id = done.stdout.split()[-1]
    out = run_cli("resume", integration_id, "--input-file", str(answers), home=home)
    assert out.returncode == 2
    assert f"integration {integration_id} is not waiting for answers" in out.stderr


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


# -- 2. usage errors, before anything runs -------------------------------------------------

BINARY = bytes(range(256))


@pytest.mark.parametrize(
    ("options", "token", "says"),
    [
        (["--api-url", "notaurl"], None, "'notaurl' is not an http(s) URL"),
        (["--api-url", "http://256.1.1.1/v1"], None, "Invalid IPv4 address"),
        (["--api-url", "localhost:8700/v1"], None, "did you mean http://localhost:8700/v1"),
        (["--api-url", "http://x/v1", "--token-file", "missing"], None, "cannot read"),
        (["--api-url", "http://x/v1", "--token-file", "token"], b"", "is empty"),
        (["--api-url", "http://x/v1", "--token-file", "token"], b"\n \n", "is empty"),
        (["--api-url", "http://x/v1", "--token-file", "token"], BINARY, "not a text file"),
        (["--api-url", "http://x/v1", "--token-file", "."], None, "cannot read"),
        (["--token-file", "token"], b"a-token", "--token-file is for a server"),
    ],
    ids=[
        "not-a-url",
        "no-valid-host",
        "no-scheme",
        "token-file-missing",
        "token-file-empty",
        "token-file-blank",
        "token-file-binary",
        "token-file-unreadable",
        "token-file-without-api-url",
    ],
)
def test_usage_errors_exit_2_in_one_line_without_a_traceback(
    tmp_path: Path, options: list[str], token: bytes | None, says: str
) -> None:
    """Each bad --api-url or token file: exit 2 at once, one line saying what to do, no
    traceback, nothing made."""
    if token is not None:
        (tmp_path / "token").write_bytes(token)
    options = [str(tmp_path / o) if o in ("missing", "token", ".") else o for o in options]
    home = tmp_path / "home"
    out = run_cli("install", str(asking(tmp_path)), *options, home=home, timeout=30)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert says in out.stderr
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("error: ") and (" give " in line or "; " in line)
    assert not home.exists()


def test_ui_on_a_taken_port_exits_2_and_prints_no_url(tmp_path: Path) -> None:
    """ui on a port something else listens on: exit 2 naming the port, and no URL (with
    its session token) is printed."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        out = run_cli("ui", "--port", str(port), home=tmp_path / "home", timeout=30)
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    assert f"port {port} on 127.0.0.1 is taken" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (("instal",), "No such command 'instal'. Did you mean 'install'"),
        (("install", "--bogus", "x"), "No such option: --bogus"),
        (("rollout",), "Missing argument"),
        (("rollout", ".", "--all", "--phase", "0"), "Invalid value for '--phase'"),
        (("ui", "--port", "abc"), "Invalid value for '--port'"),
    ],
)
def test_a_command_line_typo_is_one_line_naming_the_help_to_read(
    tmp_path: Path, command: tuple[str, ...], said: str
) -> None:
    """An unknown command or option, a missing argument or a bad value: exit 2 in one line,
    `error: ...` like every other error, naming the --help to read (no box of six lines)."""
    out = run_cli(*command, home=tmp_path / "home", timeout=30)
    assert out.returncode == 2, out.stderr
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("error: ") and said in line, line
    help_of = "" if command[0] == "instal" else f" {command[0]}"
    assert line.endswith(f"{help_of} --help`)"), line


SERVERS = {
    "ui": ("ui",),
    "sandbox": ("sandbox", "serve"),
    "extension": ("extension", "serve", str(ROOT / "examples" / "bigcommerce_netsuite")),
}
EXTENSION_TOKEN = {"SMARTCONNECTOR_EXTENSION_TOKEN": "a-token-of-realistic-length"}


@pytest.mark.parametrize("server", sorted(SERVERS))
@pytest.mark.parametrize("port", ["99999999", "65536", "-1"])
def test_a_server_on_a_port_out_of_range_is_a_usage_error(
    tmp_path: Path, server: str, port: str
) -> None:
    """ui, sandbox serve and extension serve with --port beyond 0-65535: exit 2 in one line
    naming the port, no traceback, no URL (the sandbox once served nothing, for good)."""
    command = (*SERVERS[server], "--port", port)
    out = run_cli(*command, home=tmp_path / "home", env=EXTENSION_TOKEN, timeout=30)
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    [line] = out.stderr.strip().splitlines()
    assert line == f"error: port {port} is out of range; pass --port from 0 (any free one) to 65535"


def test_ui_on_port_0_prints_the_port_it_took(tmp_path: Path) -> None:
    """ui --port 0 takes a free port and its URL names that port, not :0."""
    process = subprocess.Popen(
        [*CLI, "ui", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "SMARTCONNECTOR_HOME": str(tmp_path / "home")},
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        port = int(url.split(":")[2].split("/")[0])
        assert port > 0
        assert httpx.get(url, timeout=10).status_code == 200
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize(
    ("url", "advice"),
    [
        ("http://127.0.0.1:9/v1", "is the server up, and are its host and port right?"),
        ("http://127.0.0.1:9", "the base URL must include the version path (/v1)"),
    ],
)
def test_a_refused_api_is_retried_then_named_with_what_to_check(
    tmp_path: Path, url: str, advice: str
) -> None:
    """A port nothing listens on is retried within the budget like any failure; exit 5
    names the URL and what to check: the server and its port, or the missing /v1 (and
    never the version path for a URL that has it)."""
    out = run_cli(
        "status",
        "x",
        "--api-url",
        url,
        "--retry-budget",
        "1",
        home=tmp_path,
        env={"SMARTCONNECTOR_API_TOKEN": "a-token-of-realistic-length"},
    )
    assert out.returncode == 5, out.stderr
    assert '"retrying request"' in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert f"check --api-url {url}: {advice}" in last
    assert ("version path" in last) == url.endswith(":9")


def test_an_api_url_without_its_version_says_so(server: Server, tmp_path: Path) -> None:
    """A base URL missing /v1 is answered 404 by the server; the message says the base URL
    must include the version path."""
    unversioned = server.url.removesuffix("/v1")
    out = run_cli(
        "status",
        "6b0480442d82113bd629b566",
        "--api-url",
        unversioned,
        home=tmp_path,
        env={"SMARTCONNECTOR_API_TOKEN": server.token()},
    )
    assert out.returncode == 6, out.stderr
    assert f"the API at {unversioned}" in out.stderr and "version path (/v1)" in out.stderr


def test_readme_shows_install_input_file() -> None:
    """The README tells a new user that install takes --input-file too."""
    readme = (ROOT / "README.md").read_text()
    assert "install CONNECTOR_DIR" in readme and "[--input-file FILE]" in readme
    assert "smartconnector install my_connector --input-file answers.json" in readme
