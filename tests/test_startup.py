"""Everyday commands start with only what they use: reading the embedded sandbox loads no
engine, no pydantic and no rich; what start-up leaves out of the libraries is still there
for whoever asks for it, and a value typed on the command line is still checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks._common import noop_connector

from .conftest import CLI

#: What a read of the embedded sandbox has no use for.
UNUSED_BY_READS = ("pydantic", "rich", "click", "engine.drivers.runner", "engine.models", "fastapi")
LAUNCH = (
    "import json, sys\n"
    "modules = json.loads(sys.argv[2])\n"
    "sys.argv = ['smartconnector', *json.loads(sys.argv[1])]\n"
    "from engine.cli import main\n"
    "try:\n    main()\nexcept SystemExit:\n    pass\n"
    "print(json.dumps({m: m in sys.modules for m in modules}), file=sys.stderr)\n"
)


def loaded(args: list[str], modules: tuple[str, ...], home: Path) -> dict[str, bool]:
    """Which of ``modules`` the command ``args`` imported, run as the console script is."""
    env = {**os.environ, "SMARTCONNECTOR_HOME": str(home), "SMARTCONNECTOR_LOG_FORMAT": "json"}
    out = subprocess.run(
        [sys.executable, "-c", LAUNCH, json.dumps(args), json.dumps(modules)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    return json.loads(out.stderr.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_reads_of_the_embedded_sandbox_load_no_engine_pydantic_or_rich(tmp_path: Path) -> None:
    """status, list and history read one API and print: no run code, no models, no rich."""
    env = {**os.environ, "SMARTCONNECTOR_HOME": str(tmp_path), "SMARTCONNECTOR_LOG_FORMAT": "json"}
    connector = noop_connector(tmp_path / "c", 1)
    made = subprocess.run(
        [*CLI, "install", str(connector)], env=env, capture_output=True, text=True, check=True
    )
    doc_id = made.stdout.strip().splitlines()[-1]
    for args in (["status", doc_id], ["list", "--json"], ["history", doc_id]):
        assert loaded(args, UNUSED_BY_READS, tmp_path) == dict.fromkeys(UNUSED_BY_READS, False)


def test_help_loads_no_traceback_renderer_or_highlighter(tmp_path: Path) -> None:
    """--help renders with rich, but not its tracebacks (pygments) nor httpx or pydantic."""
    unused = ("rich.traceback", "pygments", "httpx", "pydantic", "asyncio")
    assert loaded(["--help"], unused, tmp_path) == dict.fromkeys(unused, False)


def test_plan_of_a_connector_folder_loads_no_http_client(tmp_path: Path) -> None:
    """`plan DIR` reads a folder and prints: no HTTP client, no API client, no sandbox."""
    unused = ("httpx", "engine.client", "engine.sending", "installers.remote", "sandbox")
    connector = noop_connector(tmp_path / "c", 1)
    assert loaded(["plan", str(connector)], unused, tmp_path) == dict.fromkeys(unused, False)


def test_what_start_up_leaves_out_is_real_when_asked_for(tmp_path: Path) -> None:
    """Once the libraries have loaded, the modules left out of them import as themselves."""
    code = (
        "from engine.cli._startup import lighten\n"
        "lighten()\n"
        "import httpx, structlog, typer.rich_utils\n"
        "import httpx._main, rich.markdown, rich.traceback\n"
        "assert callable(httpx._main.main) and httpx.main is not httpx._main.main\n"
        "assert rich.traceback.Traceback.__module__ == 'rich.traceback'\n"
        "assert rich.markdown.Markdown.__module__ == 'rich.markdown'\n"
        "assert structlog.dev.rich is None\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.strip() == "ok", out.stderr


def test_a_value_typed_on_the_command_line_is_still_checked(tmp_path: Path) -> None:
    """Values Typer would refuse are refused as before (exit 2, naming the option)."""
    env = {**os.environ, "SMARTCONNECTOR_HOME": str(tmp_path), "COLUMNS": "300"}
    for args, said in (
        (["status", "x", "--api-rate", "0"], "greater than or equal to 0.1"),
        (["install", "x", "--step-retries", "500"], "less than or equal to 100"),
        (["list", "--connector-id"], "requires an argument"),
    ):
        out = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and said in " ".join(out.stderr.split()), out.stderr
