"""After install: settings, updates (interrupted and resumed) and rollouts to an install base."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from benchmarks._common import CountingTransport
from engine.client import ApiClient
from engine.drivers.runner import Engine
from engine.errors import BadInput, Interrupted, StepFailed
from engine.fleet.rollout import rollout, waves
from engine.run.documents import compare_versions
from engine.run.journal import Journal
from engine.run.progress import RUN_FIELD
from installers.fakes import FakeConnector, fails, succeeds

from .conftest import EXAMPLE, run_cli


def versions(steps: list[str], version: str, **kw: Any) -> FakeConnector:
    return FakeConnector(steps, version=version, extra_functions=("updateFunction",), **kw)


class Counting(Engine):
    """An engine that counts the updates it has going at once."""

    in_flight = peak = 0

    async def update(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await super().update(*args, **kwargs)
        finally:
            self.in_flight -= 1


async def installed(engine: Engine, steps: list[str] | None = None) -> dict[str, Any]:
    return await engine.install(FakeConnector(steps or ["a", "b"], version="1.0.0").connector())


@pytest.mark.parametrize(
    ("a", "b", "order"),
    [
        ("1.0.1", "1.0.1", 0),
        ("1.10.0", "1.9.2", 1),
        ("1.0.0", "1.0.1", -1),
        ("2.0.0-beta", "2.0.0", 1),
        ("1.0", "1.0.0", -1),
    ],
)
def test_compare_versions(a: str, b: str, order: int) -> None:
    """Dotted versions compare numerically, part by part."""
    assert compare_versions(a, b) == order


async def test_update_runs_update_function_and_new_steps(
    smartconnector_engine: Engine, sandbox_api: ApiClient
) -> None:
    """update: flag, updateFunction, the new version's steps, then version and flag last."""
    doc = await installed(smartconnector_engine)
    v2 = versions(["a", "b", "c"], "2.0.0")
    updated = await smartconnector_engine.update(doc["_id"], v2.connector())
    assert updated["version"] == "2.0.0" and updated["updateInProgress"] is False
    assert [s["name"] for s in updated["install"]] == ["a", "b", "c"]
    assert all(s["completed"] for s in updated["install"])
    assert RUN_FIELD not in updated
    assert v2.functions["updateFunction"].successes == 1
    assert v2.installer("c").successes == 1 and v2.installer("a").calls == []


async def test_same_version_is_a_no_op(
    smartconnector_engine: Engine, sandbox_transport: CountingTransport
) -> None:
    """Updating to the version installed reads the document and changes nothing."""
    doc = await installed(smartconnector_engine)
    before = sandbox_transport.sent
    same = versions(["a", "b"], "1.0.0")
    assert await smartconnector_engine.update(doc["_id"], same.connector()) == doc
    assert sandbox_transport.sent - before == 1
    assert same.functions["updateFunction"].calls == []


async def test_downgrade_needs_permission(smartconnector_engine: Engine) -> None:
    """An older version is refused (exit 2) unless allow_downgrade is given."""
    doc = await installed(smartconnector_engine)
    older = versions(["a", "b"], "0.9.0")
    with pytest.raises(BadInput, match="--allow-downgrade"):
        await smartconnector_engine.update(doc["_id"], older.connector())
    done = await smartconnector_engine.update(doc["_id"], older.connector(), allow_downgrade=True)
    assert done["version"] == "0.9.0"


async def test_interrupted_update_is_visible_and_resume_finishes(
    smartconnector_engine: Engine, sandbox_api: ApiClient
) -> None:
    """A failed update leaves updateInProgress: true and the old version; resume ends it."""
    doc = await installed(smartconnector_engine)
    v2 = versions(["a", "b", "c"], "2.0.0")
    v2.fail("c", times=1)
    with pytest.raises(StepFailed):
        await smartconnector_engine.update(doc["_id"], v2.connector())
    midway = await sandbox_api.get("integrations", doc["_id"])
    assert midway["updateInProgress"] is True and midway["version"] == "1.0.0"
    assert midway[RUN_FIELD]["update"] == {"to": "2.0.0"}
    finished = await smartconnector_engine.resume(doc["_id"])
    assert finished["version"] == "2.0.0" and finished["updateInProgress"] is False
    assert v2.functions["updateFunction"].successes == 1


async def test_a_failed_update_keeps_what_update_function_returned_in_the_document(
    smartconnector_engine: Engine, sandbox_api: ApiClient, tmp_path: Path
) -> None:
    """updateFunction's result waits for the update's last write; a step failing before then
    has it written with its error record, so a resume elsewhere (another journal, or a
    Temporal worker) does not run updateFunction again."""
    doc = await installed(smartconnector_engine)
    v2 = versions(["a", "b", "c"], "2.0.0")
    v2.functions["updateFunction"].behaviour = succeeds(
        {"stepsToUpdate": [{"name": "a", "_connectionId": "c-2"}]}
    )
    v2.fail("c", times=1)
    with pytest.raises(StepFailed):
        await smartconnector_engine.update(doc["_id"], v2.connector())
    midway = await sandbox_api.get("integrations", doc["_id"])
    assert midway[RUN_FIELD]["done"] == {"updateFunction": True}
    assert midway["install"][0]["_connectionId"] == "c-2"
    elsewhere = Engine(sandbox_api, Journal(tmp_path / "elsewhere.db"))
    finished = await elsewhere.resume(doc["_id"], v2.connector())
    assert finished["version"] == "2.0.0" and finished["install"][0]["_connectionId"] == "c-2"
    assert len(v2.functions["updateFunction"].calls) == 1


async def test_ctrl_c_during_update(smartconnector_engine: Engine) -> None:
    """Ctrl-C during the update stops after the function; resume completes it."""
    doc = await installed(smartconnector_engine)
    v2 = versions(["a", "b"], "2.0.0")
    v2.functions["updateFunction"].behaviour = lambda call: smartconnector_engine.stop.set()
    with pytest.raises(Interrupted):
        await smartconnector_engine.update(doc["_id"], v2.connector())
    smartconnector_engine.stop.clear()
    assert (await smartconnector_engine.resume(doc["_id"]))["version"] == "2.0.0"
    assert v2.functions["updateFunction"].successes == 1


async def test_resume_refuses_another_version_mid_update(smartconnector_engine: Engine) -> None:
    """An update to 2.0.0 in progress is not finished with the 3.0.0 connector."""
    doc = await installed(smartconnector_engine)
    v2 = versions(["a", "b"], "2.0.0")
    v2.functions["updateFunction"].behaviour = fails(1)
    with pytest.raises(StepFailed):
        await smartconnector_engine.update(doc["_id"], v2.connector())
    with pytest.raises(BadInput, match=r"update to 2\.0\.0 is in progress"):
        await smartconnector_engine.resume(doc["_id"], versions(["a", "b"], "3.0.0").connector())


async def test_only_installed_integrations_update(smartconnector_engine: Engine) -> None:
    """An integration still installing cannot be updated (exit 2 naming its mode)."""
    fake = FakeConnector(["a"], version="1.0.0")
    fake.fail("a")
    with pytest.raises(StepFailed) as info:
        await smartconnector_engine.install(fake.connector())
    with pytest.raises(BadInput, match="mode 'install'"):
        await smartconnector_engine.update(
            info.value.context["integration_id"], versions(["a"], "2.0.0").connector()
        )


async def test_settings_pass_through_persist_settings(
    smartconnector_engine: Engine, sandbox_api: ApiClient
) -> None:
    """persistSettings gets the pending settings and may correct them; the result is saved."""
    fake = FakeConnector(["a"], extra_functions=("persistSettingsFunction",))
    doc = await smartconnector_engine.install(fake.connector())
    persist = fake.functions["persistSettingsFunction"]
    persist.behaviour = lambda call: {
        "success": True,
        "pending": {**persist.calls[-1].options["pending"], "checked": True},
    }
    saved = await smartconnector_engine.save_settings(doc["_id"], {"sections": [{"x": 1}]})
    assert saved["settings"] == {"sections": [{"x": 1}], "checked": True}
    assert persist.calls[-1].settings == {"sections": [{"x": 1}]}
    assert RUN_FIELD not in saved


async def test_settings_refused_when_persist_fails(
    smartconnector_engine: Engine, sandbox_api: ApiClient
) -> None:
    """A persistSettings that fails (success: false) leaves the settings as they were."""
    fake = FakeConnector(["a"], extra_functions=("persistSettingsFunction",))
    doc = await smartconnector_engine.install(fake.connector())
    fake.functions["persistSettingsFunction"].behaviour = succeeds(
        {"success": False, "message": "sections must not be empty"}
    )
    with pytest.raises(StepFailed, match="sections must not be empty"):
        await smartconnector_engine.save_settings(doc["_id"], {"sections": []})
    assert (await sandbox_api.get("integrations", doc["_id"]))["settings"] == doc["settings"]


async def test_rollout_updates_skips_and_reports(
    smartconnector_engine: Engine, sandbox_api: ApiClient
) -> None:
    """--all: each integration of the connector updated once; others and current ones not."""
    base = [await installed(smartconnector_engine) for _ in range(9)]
    other = await smartconnector_engine.install(
        FakeConnector(["z"], connector_id="someone-else").connector()
    )
    v2 = versions(["a", "b"], "2.0.0")
    bad = {base[3]["_id"], base[7]["_id"]}
    update_fn = v2.functions["updateFunction"]
    update_fn.behaviour = lambda call: (
        (_ for _ in ()).throw(RuntimeError("quota"))
        if (update_fn.calls[-1].integration.id in bad)
        else None
    )
    seen: list[str] = []
    report = await rollout(
        smartconnector_engine,
        v2.connector(),
        concurrency=4,
        on_outcome=lambda o: seen.append(o.status),
    )
    assert report.counts() == {
        "updated": 7,
        "skipped": 0,
        "failed": 2,
        "interrupted": 0,
        "not attempted": 0,
    }
    assert {o.integration_id for o in report.failed} == bad
    assert all("quota" in (o.reason or "") for o in report.failed)
    assert len(seen) == 9
    assert (await sandbox_api.get("integrations", other["_id"]))["version"] == "1.0.0"

    bad.clear()
    again = await rollout(smartconnector_engine, v2.connector(), concurrency=4)
    assert again.counts() == {
        "updated": 2,
        "skipped": 7,
        "failed": 0,
        "interrupted": 0,
        "not attempted": 0,
    }
    assert update_fn.successes == 9


async def test_phases_stop_when_failures_pass_the_limit(smartconnector_engine: Engine) -> None:
    """In phases, a phase whose failures pass --max-failures is the last one attempted."""
    for _ in range(10):
        await installed(smartconnector_engine)
    v2 = versions(["a", "b"], "2.0.0")
    v2.functions["updateFunction"].behaviour = fails()
    report = await rollout(smartconnector_engine, v2.connector(), phase_pct=20, max_failures=1)
    assert report.counts() == {
        "updated": 0,
        "skipped": 0,
        "failed": 2,
        "interrupted": 0,
        "not attempted": 8,
    }
    assert report.stopped and "after phase 1 of 5" in report.stopped


async def test_rollout_of_a_listed_subset(smartconnector_engine: Engine) -> None:
    """--integrations: only the listed integrations are touched."""
    docs = [await installed(smartconnector_engine) for _ in range(3)]
    v2 = versions(["a", "b"], "2.0.0")
    report = await rollout(smartconnector_engine, v2.connector(), [docs[0]["_id"]])
    assert report.counts()["updated"] == 1 and v2.functions["updateFunction"].successes == 1


def test_waves_cover_every_integration_once() -> None:
    """Phases split the list in order, each at most PCT percent, together all of it."""
    ids = [str(i) for i in range(23)]
    assert waves(ids, None) == [ids]
    chunks = waves(ids, 10)
    assert [i for chunk in chunks for i in chunk] == ids
    assert max(len(c) for c in chunks) == 3


def example_v2(tmp_path: Path) -> Path:
    """The example connector, one version on, with an updateFunction that records its runs."""
    directory = tmp_path / "v2"
    shutil.copytree(EXAMPLE, directory, ignore=shutil.ignore_patterns("__pycache__", "test_*"))
    manifest = json.loads((directory / "connector.json").read_text())
    manifest.update(
        version="1.1.0", updateFunction="connectorUpdate", persistSettingsFunction="persistSettings"
    )
    (directory / "connector.json").write_text(json.dumps(manifest))
    with (directory / "functions.py").open("a") as functions:
        functions.write(
            "\n\n@registry.function('connectorUpdate')\n"
            "def connector_update(ctx):\n"
            "    with open(__file__ + '.updates', 'a') as log:\n"
            "        log.write(ctx.integration.id + '\\n')\n\n\n"
            "@registry.function('persistSettings')\n"
            "def persist_settings(ctx):\n"
            "    return {'success': True, 'pending': {**ctx.settings, 'persisted': True}}\n"
        )
    return directory


def test_cli_update_settings_and_rollout(tmp_path: Path) -> None:
    """The commands end to end on the embedded sandbox."""
    home = tmp_path / "home"
    ids = [
        run_cli("install", str(EXAMPLE), home=home).stdout.strip().splitlines()[-1]
        for _ in range(3)
    ]
    v2 = example_v2(tmp_path)

    out = run_cli("update", ids[0], "--connector", str(v2), "--json", home=home)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1])["version"] == "1.1.0"

    listed = tmp_path / "ids.txt"
    listed.write_text(f"# the first two\n{ids[0]}\n{ids[1]}\n")
    out = run_cli("rollout", str(v2), "--integrations", str(listed), "--json", home=home)
    summary = json.loads(out.stdout)
    assert out.returncode == 0 and summary["counts"]["updated"] == 1
    assert summary["counts"]["skipped"] == 1

    out = run_cli("rollout", str(v2), "--all", "--concurrency", "2", home=home)
    assert out.returncode == 0, out.stderr
    assert "1 updated, 2 skipped" in out.stdout
    updates = (v2 / "functions.py.updates").read_text().split()
    assert sorted(updates) == sorted(ids)

    settings_file = tmp_path / "settings.json"
    settings_file.write_text(json.dumps({"sections": [], "commonresources": {"a": 1}}))
    out = run_cli(
        "settings", ids[2], "--file", str(settings_file), "--connector", str(v2), home=home
    )
    assert out.returncode == 0, out.stderr
    status = run_cli("status", ids[2], "--json", home=home)
    assert json.loads(status.stdout)["version"] == "1.1.0"

    assert run_cli("rollout", str(v2), home=home).returncode == 2
    settings_file.write_text("[1, 2]")
    bad = run_cli("settings", ids[2], "--file", str(settings_file), home=home)
    assert bad.returncode == 2 and "JSON object" in bad.stderr


async def test_ctrl_c_stops_a_rollout_as_interrupted_and_a_second_finishes(
    smartconnector_engine: Engine,
) -> None:
    """Ctrl-C during a rollout: the update running finishes or is left to finish, none is
    counted as failed, the report says interrupted (exit 130); the same rollout again ends it."""
    for _ in range(4):
        await installed(smartconnector_engine)
    v2 = versions(["a", "b"], "2.0.0")
    v2.functions["updateFunction"].behaviour = lambda call: (
        smartconnector_engine.stop.set() if call == 1 else None
    )
    report = await rollout(smartconnector_engine, v2.connector(), concurrency=1)
    assert report.interrupted
    assert report.failed == []
    assert report.counts()["interrupted"] == 4
    smartconnector_engine.stop.clear()
    again = await rollout(smartconnector_engine, v2.connector(), concurrency=1)
    assert not again.interrupted
    assert again.counts()["updated"] == 4


@pytest.mark.parametrize("added", [0, 1, 3])
async def test_an_update_from_a_held_document_makes_2_plus_k_requests(
    smartconnector_engine: Engine,
    sandbox_api: ApiClient,
    sandbox_transport: CountingTransport,
    added: int,
) -> None:
    """A rollout that holds the documents from its list makes one PATCH taking the lease and
    setting the flag, k for the steps the version adds, one writing the version; `update
    ID` reads first (N + 3 at most)."""
    base = [await installed(smartconnector_engine) for _ in range(3)]
    v2 = versions(["a", "b", *[f"new{i}" for i in range(added)]], "2.0.0")
    before = sandbox_transport.sent
    report = await rollout(smartconnector_engine, v2.connector(), concurrency=2)
    assert report.counts()["updated"] == 3
    assert sandbox_transport.sent - before == 1 + 3 * (2 + added)  # one list, then 2 + k
    doc = await sandbox_api.get("integrations", base[0]["_id"])
    assert doc["version"] == "2.0.0" and doc["updateInProgress"] is False
    assert [s["completed"] for s in doc["install"]] == [True] * (2 + added)
    assert RUN_FIELD not in doc

    v3 = versions(["a", "b", *[f"new{i}" for i in range(added)]], "3.0.0")
    before = sandbox_transport.sent
    await smartconnector_engine.update(base[0]["_id"], v3.connector())
    assert sandbox_transport.sent - before == 3  # GET, then the two PATCHes


async def test_update_function_results_land_with_the_last_write(
    smartconnector_engine: Engine, sandbox_api: ApiClient
) -> None:
    """What updateFunction returns (stepsToUpdate) is in the document after the update."""
    doc = await installed(smartconnector_engine)
    v2 = versions(["a", "b"], "2.0.0")
    v2.functions["updateFunction"].behaviour = succeeds(
        {"stepsToUpdate": [{"name": "a", "_connectionId": "c-2"}]}
    )
    await smartconnector_engine.update(doc["_id"], v2.connector())
    updated = await sandbox_api.get("integrations", doc["_id"])
    assert updated["install"][0]["_connectionId"] == "c-2"


async def test_rollout_all_pages_through_the_fleet_with_bounded_documents_in_flight(
    sandbox_store: Any, sandbox_token: str, tmp_path: Path
) -> None:
    """--all reads the list a page at a time and has at most --concurrency updates going;
    every integration is updated once."""
    import httpx

    from engine.pytest_plugin import fast_retry
    from engine.run.journal import Journal
    from sandbox import create_app

    transport = httpx.ASGITransport(app=create_app(sandbox_store, page_size=5))
    api = ApiClient("http://s/v1", sandbox_token, transport=transport, retry=fast_retry())
    engine = Counting(api, Journal(tmp_path / "j.db"))
    for _ in range(23):
        await installed(engine)
    pages_read: list[int] = []
    real_pages = api.pages

    async def pages(resource: str, **filters: str) -> Any:
        async for page in real_pages(resource, **filters):
            pages_read.append(len(page))
            yield page

    api.pages = pages  # type: ignore[method-assign]
    v2 = versions(["a", "b"], "2.0.0")
    v2.functions["updateFunction"].delay = 0.01  # each update waits, so they overlap
    report = await rollout(engine, v2.connector(), concurrency=3)
    assert report.counts()["updated"] == 23
    assert pages_read == [5, 5, 5, 5, 3]
    assert engine.peak == 3
    assert v2.functions["updateFunction"].successes == 23
    await api.aclose()


async def test_a_rollout_on_the_embedded_sandbox_runs_its_concurrency_at_once(
    sandbox_api: ApiClient, tmp_path: Path
) -> None:
    """In-process, a request still yields to the event loop as one over a network does:
    with functions that never wait, --concurrency 3 has 3 updates going, not one task doing
    every update in a single turn of the loop (where the timers the runs cancel were never
    swept, and grew with the fleet)."""
    engine = Counting(sandbox_api, Journal(tmp_path / "j.db"))
    for _ in range(6):
        await installed(engine)
    report = await rollout(engine, versions(["a", "b"], "2.0.0").connector(), concurrency=3)
    assert report.counts()["updated"] == 6
    assert engine.peak == 3


async def test_a_fleet_logs_each_function_call_at_debug_level(
    smartconnector_engine: Engine,
) -> None:
    """Under fleet_events (the rollout command's), a function's success is a debug event:
    the rollout's one line per integration is what is logged at info; alone it is info."""
    from structlog.testing import capture_logs

    from engine.logs import fleet_events

    for _ in range(2):
        await installed(smartconnector_engine)
    with capture_logs() as fleet, fleet_events():
        await rollout(smartconnector_engine, versions(["a", "b"], "2.0.0").connector())
    alone = await installed(smartconnector_engine)
    with capture_logs() as single:
        await smartconnector_engine.update(alone["_id"], versions(["a", "b"], "3.0.0").connector())
    succeeded = [e["log_level"] for e in fleet if e["event"] == "function succeeded"]
    assert succeeded == ["debug", "debug"]
    assert [e["log_level"] for e in single if e["event"] == "function succeeded"] == ["info"]
