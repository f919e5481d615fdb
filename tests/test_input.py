"""A waiting step asks for answers (fields); its next try gets them, and a secret one
reaches the function and nothing else."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from engine.drivers.runner import Engine
from engine.errors import WaitingForUser
from engine.models import Integration
from engine.pytest_plugin import write_connector_folder
from installers import Field, StepContext
from installers.remote import ExtensionServer, RemoteFunction

from .conftest import EXAMPLE, run_cli

SECRET = "s3cr3t-answer-7f2c9d"

ASKING = """
from pathlib import Path
from installers import Field, Registry, UserActionRequired

registry = Registry("asking")
SEEN = Path(__file__).parent / "seen.txt"

@registry.function("connect")
def connect(ctx):
    if not ctx.input.get("account"):
        raise UserActionRequired(
            "Enter the account and its token",
            url="https://example.com/keys",
            fields=[Field("account", "Account ID"), Field("token", "Token", secret=True)],
        )
    # what a function does with a secret is its own business; here: prove it arrived
    SEEN.write_text(str(len(ctx.input["token"])) + " " + ctx.input["account"])
    ctx.log.info("connected", token=ctx.input["token"])  # even this is scrubbed

@registry.function("noop")
def noop(ctx):
    return None
"""


def asking(tmp_path: Path) -> Path:
    manifest = {
        "name": "Asking",
        "_connectorId": "asking",
        "version": "1.0.0",
        "install": [
            {"name": "Connection", "installerFunction": "connect", "uninstallerFunction": "noop"}
        ],
    }
    return write_connector_folder(tmp_path / "asking", manifest, ASKING)


def everything_written(*roots: Path) -> str:
    """Every byte of every file under ``roots`` (SQLite files and their write-ahead logs)."""
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                found.append(path.read_bytes().decode("latin-1"))
    return "\n".join(found)


def test_a_waiting_step_asks_and_resume_hands_the_answers_on(tmp_path: Path) -> None:
    """install exits 7 with the fields asked in the document; resume --input-file gives
    the next try ctx.input; the secret is in no output and no file."""
    directory, home = asking(tmp_path), tmp_path / "home"
    out = run_cli("install", str(directory), "--json", home=home)
    assert out.returncode == 7, out.stderr
    integration_id = json.loads(out.stdout.strip().splitlines()[-1])["_id"]
    status = json.loads(run_cli("status", integration_id, "--json", home=home).stdout)
    assert status["waiting"]["message"] == "Enter the account and its token"
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps({"account": "ACME-1", "token": SECRET}))
    resumed = run_cli(
        "resume", integration_id, "--input-file", str(answers), "--json", "--verbose", home=home
    )
    assert resumed.returncode == 0, resumed.stderr
    assert (directory / "seen.txt").read_text() == f"{len(SECRET)} ACME-1"
    answers.unlink()
    history = run_cli("history", integration_id, "--json", home=home)
    logs = out.stdout + out.stderr + resumed.stdout + resumed.stderr + history.stdout
    assert SECRET not in logs
    assert SECRET not in everything_written(home)
    assert "[redacted]" in resumed.stdout + resumed.stderr  # the function's own log line


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "must hold a JSON object"),
        ('{"account": 7}', "account: an answer is a string"),
        ("{not json", "not valid JSON"),
    ],
)
def test_a_bad_input_file_exits_2_naming_what_is_wrong(
    tmp_path: Path, content: str, message: str
) -> None:
    """--input-file that is not an object of strings: exit 2, and nothing runs."""
    bad = tmp_path / "answers.json"
    bad.write_text(content)
    out = run_cli("resume", "6b0480442d82113bd629b566", "--input-file", str(bad), home=tmp_path)
    assert out.returncode == 2
    assert message in out.stderr


async def test_the_answers_reach_only_the_call_that_asked(
    smartconnector_engine: Engine, fake_connector: Any
) -> None:
    """The waiting step's next try gets ctx.input; the steps after it get none."""
    fake = fake_connector(["ask", "after"])
    seen: dict[str, dict[str, str]] = {}
    registry = fake.registry
    registry._functions.pop("install ask")
    registry._functions.pop("install after")

    @registry.function("install ask")
    async def ask(ctx: StepContext) -> None:
        seen["ask"] = dict(ctx.input)
        if not ctx.input:
            from installers import UserActionRequired

            raise UserActionRequired("name?", fields=[Field("name", "Name")])

    @registry.function("install after")
    async def after(ctx: StepContext) -> None:
        seen["after"] = dict(ctx.input)

    with pytest.raises(WaitingForUser) as waiting:
        await smartconnector_engine.install(fake.connector())
    assert waiting.value.fields == [{"name": "name", "label": "Name", "secret": False}]
    await smartconnector_engine.resume(str(waiting.value.integration_id), input={"name": "Ada"})
    assert seen == {"ask": {"name": "Ada"}, "after": {}}


async def test_remote_functions_get_the_answers_in_options_input() -> None:
    """A remote function's request carries ctx.input as options.input."""
    sent: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json={"success": True})

    async with ExtensionServer("http://ext.test", "t") as server:
        server._http = httpx.AsyncClient(
            base_url="http://ext.test", transport=httpx.MockTransport(handler)
        )
        function = RemoteFunction(server, "c", "verify", "installer")

        class Api:
            public_url = None

            def bearer_token(self) -> str:
                return "b"

        ctx = StepContext(
            integration=Integration(mode="install", install=[]),
            step=None,
            api=Api(),  # type: ignore[arg-type]
            idempotency_key="k",
            log=structlog.get_logger(),
            input={"token": SECRET},
        )
        await function(ctx)
    assert sent[0]["options"]["input"] == {"token": SECRET}


def test_the_example_installs_without_a_person_and_asks_when_told(tmp_path: Path) -> None:
    """README's main job needs nobody (a test account); with askForCredentials its NetSuite
    step asks for the account and a secret token, and goes on with the answers."""
    import shutil

    work = tmp_path / "example"
    shutil.copytree(EXAMPLE, work)
    assert run_cli("install", str(work), home=tmp_path / "a").returncode == 0
    manifest = json.loads((work / "connector.json").read_text())
    manifest["settings"]["askForCredentials"] = True
    (work / "connector.json").write_text(json.dumps(manifest))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETSUITE_")}
    out = run_cli("install", str(work), home=tmp_path / "b", env=env)
    assert out.returncode == 7 and "NetSuite account ID" not in out.stdout
    integration_id = out.stdout.strip().splitlines()[-1]
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps({"account": "TSTDRV000000", "token": SECRET}))
    done = run_cli("resume", integration_id, "--input-file", str(answers), home=tmp_path / "b")
    assert done.returncode == 0, done.stderr
    answers.unlink()
    assert SECRET not in everything_written(tmp_path / "b")
