"""`smartconnector check`: each planted fault is found exactly where it is, and nothing else."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from hypothesis import given, settings, strategies as st

from engine import NotFound
from engine.check import check_connector as check
from engine.cli._check import advice
from engine.models import ConnectorManifest
from installers import Connector, Registry, StepContext
from installers.fakes import FakeConnector, waits_for_user

from .conftest import EXAMPLE, ROOT, Server

Check = Callable[..., Awaitable[dict[str, Any]]]
WriteConnector = Callable[..., Path]

#: A connector whose functions are all safe to run again, and faulty ones to swap in.
FUNCTIONS = '''
from engine import NotFound
from installers import Registry

registry = Registry("planted")


async def _once(ctx, resource, name):
    """The step's resource: the one an earlier try made (found by its key), else a new one."""
    found = await ctx.api.list(resource, sourceKey=ctx.idempotency_key)
    if found:
        return found[0]
    return await ctx.api.create(resource, {"name": name, "sourceKey": ctx.idempotency_key})


async def _gone(ctx, resource, name):
    for doc in await ctx.api.list(resource, name=name):
        await ctx.api.delete(resource, doc["_id"])


@registry.function("setUp")
async def set_up(ctx):
    await ctx.api.put_state("planted", {"ready": True})


@registry.function("tearDown")
async def tear_down(ctx):
    try:
        await ctx.api.delete_state("planted")
    except NotFound:
        pass


@registry.function("makeConnection")
async def make_connection(ctx):
    connection = await _once(ctx, "connections", "NetSuite")
    return {"stepsToUpdate": [{"name": ctx.step.name, "_connectionId": connection["_id"]}]}


@registry.function("dropConnection")
async def drop_connection(ctx):
    try:
        await ctx.api.delete("connections", ctx.step.connection_id)
    except NotFound:
        pass


@registry.function("makeExport")
async def make_export(ctx):
    await _once(ctx, "exports", "Orders")


@registry.function("dropExport")
def drop_export(ctx):
    import asyncio
    asyncio.run(_gone(ctx, "exports", "Orders"))


@registry.function("makeImport")
async def make_import(ctx):
    await _once(ctx, "imports", "Sink")


@registry.function("dropImport")
async def drop_import(ctx):
    await _gone(ctx, "imports", "Sink")


# -- faults ----------------------------------------------------------------------------


@registry.function("makeExportEveryRun")
async def make_export_every_run(ctx):
    await ctx.api.create("exports", {"name": "Orders"})


@registry.function("leaveImport")
async def leave_import(ctx):
    return None


@registry.function("dropConnectionOnce")
async def drop_connection_once(ctx):
    await ctx.api.delete("connections", ctx.step.connection_id)


@registry.function("makeExportFails")
async def make_export_fails(ctx):
    raise RuntimeError("NetSuite said no")


@registry.function("setUpWithFlow")
async def set_up_with_flow(ctx):
    await _once(ctx, "flows", "Nightly")
'''

STEPS = {
    "Connection": ("makeConnection", "dropConnection"),
    "Orders": ("makeExport", "dropExport"),
    "Sink": ("makeImport", "dropImport"),
}


def manifest(swap: dict[str, tuple[str, str]] | None = None, **top: str) -> dict[str, Any]:
    """The planted connector's connector.json, with some steps' functions swapped."""
    steps = {**STEPS, **(swap or {})}
    return {
        "name": "Planted",
        "_connectorId": "planted",
        "version": "1.0.0",
        "installerFunction": "setUp",
        "uninstallerFunction": "tearDown",
        **top,
        "install": [
            {"name": name, "installerFunction": make, "uninstallerFunction": drop}
            for name, (make, drop) in steps.items()
        ],
    }


def unsafe(report: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    return [
        (f["function"], f["step"], f["phase"])
        for f in report["functions"]
        if f["rerun_safe"] is not True
    ]


def problem_of(report: dict[str, Any], function: str) -> str:
    return str(next(f["problem"] for f in report["functions"] if f["function"] == function))


async def test_a_connector_without_faults_passes(
    check_connector: Check, write_connector: WriteConnector
) -> None:
    """Every function safe, in the order install and uninstall call them, and no leaks."""
    report = await check_connector(write_connector(manifest(), FUNCTIONS))
    assert report["ok"] is True
    assert report["leaks"] == []
    assert [(f["function"], f["step"], f["phase"]) for f in report["functions"]] == [
        ("setUp", None, "install"),
        ("makeConnection", "Connection", "install"),
        ("makeExport", "Orders", "install"),
        ("makeImport", "Sink", "install"),
        ("dropImport", "Sink", "uninstall"),
        ("dropExport", "Orders", "uninstall"),
        ("dropConnection", "Connection", "uninstall"),
        ("tearDown", None, "uninstall"),
    ]
    assert all(f["rerun_safe"] is True and f["problem"] is None for f in report["functions"])


async def test_an_installer_that_creates_an_export_every_run_is_the_only_unsafe_one(
    check_connector: Check, write_connector: WriteConnector
) -> None:
    """Its rerun makes a second export, named in the problem; nothing else is flagged."""
    swap = {"Orders": ("makeExportEveryRun", "dropExport")}
    report = await check_connector(write_connector(manifest(swap), FUNCTIONS))
    assert report["ok"] is False
    assert unsafe(report) == [("makeExportEveryRun", "Orders", "install")]
    assert problem_of(report, "makeExportEveryRun") == "made exports twice: 'Orders'"
    assert report["leaks"] == []


async def test_an_import_its_uninstaller_leaves_is_one_leak_of_that_step(
    check_connector: Check, write_connector: WriteConnector
) -> None:
    """The import the Sink step made is still there after uninstall: one leak, step Sink."""
    swap = {"Sink": ("makeImport", "leaveImport")}
    report = await check_connector(write_connector(manifest(swap), FUNCTIONS))
    assert report["ok"] is False
    assert unsafe(report) == []
    [leak] = report["leaks"]
    assert (leak["resource"], leak["step"]) == ("imports", "Sink")
    assert re.fullmatch(r"[0-9a-f]{24}", leak["_id"])


async def test_what_a_connector_level_function_leaves_has_no_step(
    check_connector: Check, write_connector: WriteConnector
) -> None:
    """A flow the connector's installerFunction made and nothing removes: step null."""
    report = await check_connector(
        write_connector(manifest(installerFunction="setUpWithFlow"), FUNCTIONS)
    )
    assert [(leak["resource"], leak["step"]) for leak in report["leaks"]] == [("flows", None)]
    assert unsafe(report) == []


async def test_an_uninstaller_that_fails_when_its_connection_is_gone_is_the_only_unsafe_one(
    check_connector: Check, write_connector: WriteConnector
) -> None:
    """Run again after its delete was lost, it meets a 404 and fails: said with where."""
    swap = {"Connection": ("makeConnection", "dropConnectionOnce")}
    report = await check_connector(write_connector(manifest(swap), FUNCTIONS))
    assert unsafe(report) == [("dropConnectionOnce", "Connection", "uninstall")]
    problem = problem_of(report, "dropConnectionOnce")
    assert problem.startswith("fails when run again: step 'Connection'")
    assert "NotFound" in problem and "functions.py" in problem
    assert report["leaks"] == []


async def test_a_function_that_fails_on_its_first_run_stops_what_comes_after_it(
    check_connector: Check, write_connector: WriteConnector
) -> None:
    """It is unsafe, saying so; the steps no run reached are null; the rest are judged."""
    swap = {"Orders": ("makeExportFails", "dropExport")}
    report = await check_connector(write_connector(manifest(swap), FUNCTIONS))
    verdicts = {(f["function"], f["phase"]): f["rerun_safe"] for f in report["functions"]}
    assert verdicts == {
        ("setUp", "install"): True,
        ("makeConnection", "install"): True,
        ("makeExportFails", "install"): False,
        ("makeImport", "install"): None,
        ("dropImport", "uninstall"): None,
        ("dropExport", "uninstall"): None,
        ("dropConnection", "uninstall"): True,
        ("tearDown", "uninstall"): True,
    }
    assert problem_of(report, "makeExportFails").startswith(
        "fails on its first run: step 'Orders': function 'makeExportFails' failed: RuntimeError"
    )


async def test_the_example_connector_passes(check_connector: Check) -> None:
    """The BigCommerce - NetSuite example is safe to resume and leaves nothing."""
    report = await check_connector(EXAMPLE)
    assert report["ok"] is True, report
    assert len(report["functions"]) == 8


def example_asking(tmp_path: Path) -> Path:
    """The example, set to ask for the NetSuite account and token."""
    directory = tmp_path / "asking"
    shutil.copytree(EXAMPLE, directory, ignore=shutil.ignore_patterns("__pycache__"))
    data = json.loads((directory / "connector.json").read_text())
    data["settings"]["askForCredentials"] = True
    (directory / "connector.json").write_text(json.dumps(data))
    return directory


async def test_steps_that_wait_are_checked_with_the_answers_given(
    check_connector: Check, tmp_path: Path, monkeypatch: Any
) -> None:
    """Without answers no function is reached (null, not ok, and the advice names the
    answers asked); with them, all are safe."""
    monkeypatch.delenv("NETSUITE_ACCOUNT", raising=False)
    directory = example_asking(tmp_path)
    report = await check(directory)
    unanswered = report.to_json()
    assert unanswered["ok"] is False
    assert {f["rerun_safe"] for f in unanswered["functions"]} == {None}
    assert "(asks for: account, token); give the answers with --input-file" in advice(report)
    answered = await check_connector(directory, input={"account": "TSTDRV1", "token": "t0k"})
    assert answered["ok"] is True, answered


async def test_a_fake_connector_whose_step_waits_once_is_checked_to_the_end(
    check_connector: Check, fake_connector: Callable[..., FakeConnector]
) -> None:
    """A step that waits for a person asking nothing is resumed, as after they acted; fakes
    make nothing, so every function, connector-level ones included, is safe."""
    fake = fake_connector(["Bundle", "Flows"], connector_functions=True)
    fake.installer("Bundle").behaviour = waits_for_user("install the bundle", times=1)
    report = await check_connector(fake)
    assert report["ok"] is True, report
    assert len(report["functions"]) == 7


def in_memory(idempotent: list[tuple[bool, bool]]) -> Connector:
    """A connector of steps whose installer and uninstaller each are, or are not, safe to
    run again: unsafe installers make an export every run, unsafe uninstallers fail when
    it is already gone."""
    registry = Registry("generated")
    steps = []
    for i, (make_once, drop_once) in enumerate(idempotent):
        name = f"step {i}"
        registry.add(f"make {i}", _maker(name, make_once))
        registry.add(f"drop {i}", _dropper(name, drop_once))
        steps.append(
            {"name": name, "installerFunction": f"make {i}", "uninstallerFunction": f"drop {i}"}
        )
    data = {"name": "Generated", "_connectorId": "generated", "version": "1.0.0", "install": steps}
    return Connector(ConnectorManifest.model_validate(data), registry, ROOT, "in memory")


def _maker(name: str, safe: bool) -> Callable[[StepContext], Awaitable[None]]:
    async def make(ctx: StepContext) -> None:
        if safe and await ctx.api.list("exports", sourceKey=ctx.idempotency_key):
            return
        await ctx.api.create("exports", {"name": name, "sourceKey": ctx.idempotency_key})

    return make


def _dropper(name: str, safe: bool) -> Callable[[StepContext], Awaitable[None]]:
    async def drop(ctx: StepContext) -> None:
        found = await ctx.api.list("exports", name=name)
        if not found and not safe:
            raise NotFound(f"export {name!r} is gone")
        for doc in found:
            await ctx.api.delete("exports", doc["_id"])

    return drop


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=3))
def test_check_flags_exactly_the_functions_that_are_not_idempotent(
    idempotent: list[tuple[bool, bool]],
) -> None:
    """For any mix of safe and unsafe steps, the unsafe functions and no others are flagged."""
    report = asyncio.run(check(in_memory(idempotent))).to_json()
    expected = {f"make {i}" for i, (once, _) in enumerate(idempotent) if not once}
    expected |= {f"drop {i}" for i, (_, once) in enumerate(idempotent) if not once}
    assert {f["function"] for f in report["functions"] if f["rerun_safe"] is False} == expected
    assert all(f["rerun_safe"] is not None for f in report["functions"])
    assert report["leaks"] == []
    assert report["ok"] is (not expected)


def console_script(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The installed ``smartconnector`` command, with no SMARTCONNECTOR_ settings but ``env``."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCONNECTOR_")}
    return subprocess.run(
        [str(Path(sys.executable).parent / "smartconnector"), "check", *args],
        capture_output=True,
        text=True,
        env={**inherited, "SMARTCONNECTOR_LOG_FORMAT": "json", **(env or {})},
        cwd=ROOT,
        timeout=120,
    )


def test_the_command_prints_the_report_and_exits_by_it(write_connector: WriteConnector) -> None:
    """--json prints the report alone; exit 0 all safe, 1 a fault, 2 a connector that does
    not load; the table names the unsafe function and says what to do."""
    safe = console_script(str(write_connector(manifest(), FUNCTIONS, name="safe")), "--json")
    assert safe.returncode == 0, safe.stderr
    report = json.loads(safe.stdout)
    assert set(report) == {"ok", "functions", "leaks"} and report["ok"] is True
    assert set(report["functions"][0]) == {"function", "step", "phase", "rerun_safe", "problem"}

    faulty = write_connector(
        manifest({"Orders": ("makeExportEveryRun", "dropExport")}), FUNCTIONS, name="faulty"
    )
    table = console_script(str(faulty))
    assert table.returncode == 1
    assert re.search(
        r"makeExportEveryRun\s+Orders\s+install\s+unsafe\s+made exports twice", table.stdout
    )
    assert "ctx.idempotency_key" in table.stdout.splitlines()[-1]  # what to do, one line

    broken = write_connector(
        {**manifest(), "installerFunction": "setUpp"}, FUNCTIONS, name="broken"
    )
    refused = console_script(str(broken))
    assert refused.returncode == 2
    assert "setUpp" in refused.stderr and refused.stdout == ""


def test_check_leaves_the_users_home_and_api_untouched(
    server: Server, tmp_path: Path, write_connector: WriteConnector
) -> None:
    """With SMARTCONNECTOR_HOME and SMARTCONNECTOR_API_URL set, check uses neither, and its
    throwaway directory is gone afterwards."""
    home, scratch = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    scratch.mkdir()
    (home / "kept").write_text("the user's")
    token = server.token()
    requests_before = requests_logged(server)
    before = api_contents(server.url, token)
    wait_for(lambda: requests_logged(server) == requests_before + len(before))
    done = console_script(
        str(write_connector(manifest(), FUNCTIONS)),
        env={
            "SMARTCONNECTOR_HOME": str(home),
            "SMARTCONNECTOR_API_URL": server.url,
            "SMARTCONNECTOR_API_TOKEN": token,
            "TMPDIR": str(scratch),
        },
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert requests_logged(server) == requests_before + len(before)  # not one, not a read
    assert api_contents(server.url, token) == before
    assert sorted(p.name for p in home.iterdir()) == ["kept"]
    assert list(scratch.iterdir()) == []


def requests_logged(server: Server) -> int:
    """How many requests the server has logged (a line each, once it has answered)."""
    return server.log.read_text().count('"event": "request"')


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def api_contents(url: str, token: str) -> dict[str, list[str]]:
    """The ids of every resource the API holds, by resource."""
    headers = {"Authorization": f"Bearer {token}"}
    return {
        resource: sorted(d["_id"] for d in httpx.get(f"{url}/{resource}", headers=headers).json())
        for resource in ("integrations", "connections", "exports", "imports", "flows")
    }


def test_the_readme_shows_the_examples_real_report() -> None:
    """README's "Is my connector safe to resume?" prints what check says of the example."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Is my connector safe to resume?", 1)[1]
    shown = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))  # type: ignore[union-attr]
    assert shown == asyncio.run(check(EXAMPLE)).to_json()
