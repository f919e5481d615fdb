"""The engine's runs: install, failures and resume, waiting for a person, uninstall, leases."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks._common import CountingTransport
from engine.client import ApiClient, Document
from engine.drivers.runner import Engine
from engine.errors import (
    ApiUnavailable,
    DocumentInvalid,
    Interrupted,
    LeaseHeld,
    StepFailed,
    WaitingForUser,
)
from engine.policy import RetryPolicy
from engine.pytest_plugin import fast_retry
from engine.run.journal import Journal
from engine.run.progress import RUN_FIELD
from engine.writes import WriteWay, WriteWays
from installers import StepContext
from installers.fakes import FakeConnector, fails, succeeds, waits_for_user
from sandbox import Store, create_app

Fake = Callable[..., FakeConnector]


def completed(doc: Document) -> list[bool]:
    return [step["completed"] for step in doc["install"]]


async def test_install_runs_every_step_once(
    smartconnector_engine: Engine, sandbox_api: ApiClient, fake_connector: Fake
) -> None:
    """Install creates the integration, runs each installer once, ends in settings."""
    fake = fake_connector(3)
    doc = await smartconnector_engine.install(fake.connector())
    assert doc["mode"] == "settings" and completed(doc) == [True] * 3
    assert RUN_FIELD not in doc
    assert [f.successes for f in fake.installers()] == [1, 1, 1]
    assert await sandbox_api.get("integrations", doc["_id"]) == doc


async def test_install_makes_n_plus_2_requests(
    smartconnector_engine: Engine, sandbox_transport: CountingTransport, fake_connector: Fake
) -> None:
    """One POST, one PATCH per step, one PATCH for the mode: no re-reads between steps."""
    before = sandbox_transport.sent
    await smartconnector_engine.install(fake_connector(5).connector())
    assert sandbox_transport.sent - before == 5 + 2


async def test_install_names_its_new_integration_before_any_function_runs(
    smartconnector_engine: Engine, fake_connector: Fake
) -> None:
    """on_created is told the new id once the integration exists, before its first function
    runs, and only once: the install page follows the install from there."""
    told: list[str] = []
    fake = fake_connector(["a", "b"], connector_functions=True)
    seen_when_called: list[list[str]] = []
    fake.functions["installerFunction"].behaviour = lambda call: seen_when_called.append([*told])
    doc = await smartconnector_engine.install(fake.connector(), on_created=told.append)
    assert told == [doc["_id"]] and seen_when_called == [[doc["_id"]]]


async def test_failed_step_is_resumable(
    smartconnector_engine: Engine, sandbox_api: ApiClient, fake_connector: Fake
) -> None:
    """A failing step stops the run (exit 1) naming step and function; resume finishes it."""
    fake = fake_connector(["a", "b", "c"], connector_functions=True)
    fake.fail("b", times=1)
    with pytest.raises(StepFailed) as info:
        await smartconnector_engine.install(fake.connector())
    err = info.value
    assert err.exit_code == 1 and "'b'" in str(err) and "install b" in str(err)
    integration_id = err.context["integration_id"]
    doc = await sandbox_api.get("integrations", integration_id)
    assert doc["mode"] == "install" and completed(doc) == [True, False, False]
    assert doc[RUN_FIELD]["error"]["step"] == "b"
    assert "lease" not in doc[RUN_FIELD]

    doc = await smartconnector_engine.resume(integration_id)
    assert doc["mode"] == "settings" and completed(doc) == [True, True, True]
    assert fake.functions["installerFunction"].successes == 1
    assert [len(f.calls) for f in fake.installers()] == [1, 2, 1]


async def test_waiting_for_a_person(
    smartconnector_engine: Engine, sandbox_api: ApiClient, fake_connector: Fake
) -> None:
    """UserActionRequired exits 7 with message and URL, records them, and resume verifies again."""
    fake = fake_connector(["conn", "bundle"])
    fake.installer("bundle").behaviour = waits_for_user("install the bundle", "https://b.example")
    with pytest.raises(WaitingForUser) as info:
        await smartconnector_engine.install(fake.connector())
    assert info.value.exit_code == 7 and info.value.url == "https://b.example"
    integration_id = info.value.context["integration_id"]
    doc = await sandbox_api.get("integrations", integration_id)
    assert doc[RUN_FIELD]["waiting"] == {
        "step": "bundle",
        "function": "install bundle",
        "message": "install the bundle",
        "url": "https://b.example",
    }
    doc = await smartconnector_engine.resume(integration_id)
    assert doc["mode"] == "settings" and len(fake.installer("bundle").calls) == 2


async def test_uninstall_reverses_and_deletes(
    smartconnector_engine: Engine, sandbox_api: ApiClient, fake_connector: Fake
) -> None:
    """Uninstall: preUninstall, step uninstallers in reverse, connector uninstaller, DELETE."""
    fake = fake_connector(["a", "b", "c"], connector_functions=True)
    order: list[str] = []
    for name, function in fake.functions.items():
        function.behaviour = (lambda n: lambda call: order.append(n))(name)
    doc = await smartconnector_engine.install(fake.connector())
    order.clear()
    await smartconnector_engine.uninstall(doc["_id"], fake.connector())
    assert order == [
        "preUninstallFunction",
        "uninstall c",
        "uninstall b",
        "uninstall a",
        "uninstallerFunction",
    ]
    assert await sandbox_api.list("integrations") == []


async def test_uninstall_of_half_installed_undoes_only_what_was_done(
    smartconnector_engine: Engine, fake_connector: Fake
) -> None:
    """Only completed steps are undone."""
    fake = fake_connector(["a", "b", "c"])
    fake.fail("b")
    with pytest.raises(StepFailed) as info:
        await smartconnector_engine.install(fake.connector())
    await smartconnector_engine.uninstall(info.value.context["integration_id"], fake.connector())
    assert [len(fake.uninstaller(s).calls) for s in "abc"] == [1, 0, 0]


async def test_steps_to_update_lands_in_the_same_patch(
    smartconnector_engine: Engine, sandbox_transport: CountingTransport, fake_connector: Fake
) -> None:
    """stepsToUpdate changes named steps in the PATCH that completes the step."""
    fake = fake_connector(["conn", "bundle"])
    fake.installer("conn").behaviour = succeeds(
        {
            "stepsToUpdate": [
                {"name": "conn", "_connectionId": "c-1"},
                {"name": "bundle", "installURL": "https://u"},
            ]
        }
    )
    before = sandbox_transport.sent
    doc = await smartconnector_engine.install(fake.connector())
    assert doc["install"][0]["_connectionId"] == "c-1"
    assert doc["install"][1]["installURL"] == "https://u"
    assert sandbox_transport.sent - before == 2 + 2


@pytest.mark.parametrize(
    "result",
    [
        {"stepsToUpdate": [{"name": "nobody", "x": 1}]},
        {"stepsToUpdate": [{"name": "conn", "completed": "yes"}]},
        {"success": False, "message": "credentials rejected"},
        42,
    ],
)
async def test_bad_results_fail_the_step(
    smartconnector_engine: Engine, fake_connector: Fake, result: Any
) -> None:
    """A result naming an unknown step, a wrongly typed field, or success:false is a failure."""
    fake = fake_connector(["conn"])
    fake.installer("conn").behaviour = succeeds(result)
    with pytest.raises((StepFailed, DocumentInvalid)):
        await smartconnector_engine.install(fake.connector())


async def test_retryable_errors_follow_the_step_policy(
    smartconnector_engine: Engine, fake_connector: Fake
) -> None:
    """A step with retries set re-runs a RetryableError, with the same idempotency key."""
    from installers import RetryableError

    fake = fake_connector(["flaky"])
    fake.manifest_data["install"][0]["policy"] = {"retries": 2, "retryDelay": 0.001}
    fake.installer("flaky").behaviour = fails(2, RetryableError("busy"))
    doc = await smartconnector_engine.install(fake.connector())
    calls = fake.installer("flaky").calls
    assert doc["mode"] == "settings" and len(calls) == 3
    assert len({c.idempotency_key for c in calls}) == 1


async def test_step_timeout(smartconnector_engine: Engine, fake_connector: Fake) -> None:
    """A function running past its step's timeout fails the step, naming the timeout."""
    fake = fake_connector(["slow"])
    fake.manifest_data["install"][0]["policy"] = {"timeout": 0.05}
    fake.installer("slow").delay = 5
    with pytest.raises(StepFailed, match=r"timed out after 0\.05 s"):
        await smartconnector_engine.install(fake.connector())


async def test_ctrl_c_stops_after_the_current_function(
    smartconnector_engine: Engine, fake_connector: Fake
) -> None:
    """With stop set during a step, that step is recorded, then the run exits 130."""
    fake = fake_connector(["a", "b", "c"])
    fake.installer("b").behaviour = lambda call: smartconnector_engine.stop.set()
    with pytest.raises(Interrupted) as info:
        await smartconnector_engine.install(fake.connector())
    assert info.value.exit_code == 130
    smartconnector_engine.stop.clear()
    doc = await smartconnector_engine.resume(info.value.context["integration_id"])
    assert [f.successes for f in fake.installers()] == [1, 1, 1] and doc["mode"] == "settings"


def failing_patches(app: Any, fail_from: int) -> Any:
    """An ASGI app whose PATCHes from the ``fail_from``-th on never get through."""
    seen = 0

    async def wrapper(scope: Any, receive: Any, send: Any) -> None:
        nonlocal seen
        if scope["type"] == "http" and scope["method"] == "PATCH":
            seen += 1
            if seen >= fail_from:
                raise httpx.ConnectError("network gone")
        await app(scope, receive, send)

    return wrapper


async def test_journal_replays_a_success_the_api_never_heard_of(
    sandbox_store: Store, sandbox_token: str, tmp_path: Path, fake_connector: Fake
) -> None:
    """A function whose PATCH never landed is not run again: resume replays its result."""
    fake = fake_connector(["a", "b"])
    fake.installer("b").behaviour = succeeds(
        {"stepsToUpdate": [{"name": "b", "_connectionId": "made-once"}]}
    )
    journal = Journal(tmp_path / "journal.db")
    broken = httpx.ASGITransport(app=failing_patches(create_app(sandbox_store), 2))
    retry = RetryPolicy(attempts=2, budget=1, wait_initial=0, wait_max=0, wait_jitter=0)
    known = WriteWays("http://s/v1", forced=WriteWay.JSON_PATCH_TEST)  # no probe: PATCHes count
    async with ApiClient(
        "http://s/v1", sandbox_token, transport=broken, retry=retry, writes=known
    ) as api:
        with pytest.raises(ApiUnavailable):
            await Engine(api, journal, lease_ttl=0.05).install(fake.connector())
    assert fake.installer("b").successes == 1
    await asyncio.sleep(0.1)  # the lost run's lease runs out, as a crashed run's would
    [doc] = [d for d in sandbox_store.list("integrations", after=0, limit=10, filters={})[0]]
    healthy = httpx.ASGITransport(app=create_app(sandbox_store))
    async with ApiClient(
        "http://s/v1", sandbox_token, transport=healthy, retry=fast_retry()
    ) as api:
        done = await Engine(api, journal).resume(doc["_id"], fake.connector())
    assert fake.installer("b").successes == 1
    assert done["install"][1]["_connectionId"] == "made-once" and done["mode"] == "settings"


async def lease_from(api: ApiClient, doc_id: str, **lease: Any) -> None:
    doc = await api.get("integrations", doc_id)
    await api.patch(
        "integrations", doc_id, {RUN_FIELD: {"lease": lease, "done": {}}, "_": doc.get("_")}
    )


async def test_live_lease_refuses_a_second_run(
    smartconnector_engine: Engine, sandbox_api: ApiClient, fake_connector: Fake
) -> None:
    """A run held by someone else exits 4 naming the holder; nothing runs, nothing changes."""
    fake = fake_connector(["a", "b"])
    fake.fail("a")
    with pytest.raises(StepFailed) as info:
        await smartconnector_engine.install(fake.connector())
    doc_id = info.value.context["integration_id"]
    await lease_from(
        sandbox_api,
        doc_id,
        owner="other-run",
        host="elsewhere",
        pid=1,
        expiresAt="2999-01-01T00:00:00.000Z",
    )
    before = await sandbox_api.get("integrations", doc_id)
    calls = len(fake.installer("a").calls)
    with pytest.raises(LeaseHeld, match="other-run") as held:
        await smartconnector_engine.resume(doc_id)
    assert held.value.exit_code == 4
    assert len(fake.installer("a").calls) == calls
    assert await sandbox_api.get("integrations", doc_id) == before


@pytest.mark.parametrize(
    "lease",
    [
        {
            "owner": "crashed",
            "host": "elsewhere",
            "pid": 1,
            "expiresAt": "2000-01-01T00:00:00.000Z",
        },
        {"owner": "dead-local", "pid": 2**22 + 12345, "expiresAt": "2999-01-01T00:00:00.000Z"},
    ],
)
async def test_dead_leases_are_taken_over(
    smartconnector_engine: Engine,
    sandbox_api: ApiClient,
    fake_connector: Fake,
    lease: dict[str, Any],
) -> None:
    """An expired lease, or one whose holder was a process on this host now gone, is taken."""
    import socket

    lease.setdefault("host", socket.gethostname())
    fake = fake_connector(["a"])
    fake.fail("a", times=1)
    with pytest.raises(StepFailed) as info:
        await smartconnector_engine.install(fake.connector())
    doc_id = info.value.context["integration_id"]
    await lease_from(sandbox_api, doc_id, **lease)
    assert (await smartconnector_engine.resume(doc_id))["mode"] == "settings"


async def test_concurrent_runs_one_wins(
    sandbox_api: ApiClient, tmp_path: Path, fake_connector: Fake
) -> None:
    """Two engines resuming one integration at once: one runs, the other exits 4."""
    fake = fake_connector(["a", "b"])
    fake.fail("a", times=1)
    first = Engine(sandbox_api, Journal(tmp_path / "one.db"))
    with pytest.raises(StepFailed) as info:
        await first.install(fake.connector())
    doc_id = info.value.context["integration_id"]
    fake.installer("a").delay = 0.2
    second = Engine(sandbox_api, Journal(tmp_path / "two.db"))
    results = await asyncio.gather(
        first.resume(doc_id, fake.connector()),
        second.resume(doc_id, fake.connector()),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["LeaseHeld", "dict"]
    assert fake.installer("a").successes == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["install"][0].update(completed="yes"), "install[0].completed"),
        (lambda d: d.update(mode="paused"), "mode"),
        (lambda d: d.pop("install"), "install"),
        (
            lambda d: d["install"][0].update(installerFunction="nobodyKnowsMe"),
            "install[0].installerFunction",
        ),
    ],
)
async def test_bad_documents_are_refused_untouched(
    smartconnector_engine: Engine,
    sandbox_api: ApiClient,
    fake_connector: Fake,
    change: Callable[[Document], Any],
    field: str,
) -> None:
    """A hand-broken document exits 2 naming the field; no function runs; nothing changes."""
    fake = fake_connector(["a"])
    doc = await sandbox_api.create(
        "integrations",
        {
            "_connectorId": "fake-connector",
            "mode": "install",
            "install": [
                {
                    "name": "a",
                    "completed": False,
                    "installerFunction": "install a",
                    "uninstallerFunction": "uninstall a",
                }
            ],
        },
    )
    change(doc)
    doc = await sandbox_api.replace("integrations", doc["_id"], doc)
    with pytest.raises((DocumentInvalid, Exception)) as info:
        await smartconnector_engine.resume(doc["_id"], fake.connector())
    assert getattr(info.value, "field", None) == field and info.value.exit_code == 2  # type: ignore[attr-defined]
    assert await sandbox_api.get("integrations", doc["_id"]) == doc
    assert fake.installer("a").calls == []


async def test_context_carries_what_functions_need(
    smartconnector_engine: Engine, fake_connector: Fake
) -> None:
    """StepContext has the typed integration, the step, the api, settings and a stable key."""
    fake = fake_connector(["a"])
    await smartconnector_engine.install(fake.connector())
    ctx: StepContext = fake.installer("a").calls[0]
    assert ctx.step is not None and ctx.step.name == "a"
    assert ctx.integration.mode == "install" and ctx.settings == {"sections": []}
    assert len(ctx.idempotency_key) == 32 and ctx.api is smartconnector_engine.api


async def test_a_long_function_keeps_its_lease(
    sandbox_api: ApiClient, tmp_path: Path, fake_connector: Fake
) -> None:
    """While a function runs past the lease's TTL, the lease is renewed: a rival is refused."""
    fake = fake_connector(["slow"])
    fake.installer("slow").delay = 2.5
    first = Engine(sandbox_api, Journal(tmp_path / "one.db"), lease_ttl=0.6)
    running = asyncio.create_task(first.install(fake.connector()))
    while not first.known:
        await asyncio.sleep(0.01)
    await asyncio.sleep(1.5)  # more than twice the TTL
    [doc_id] = first.known
    rival = Engine(sandbox_api, Journal(tmp_path / "two.db"))
    with pytest.raises(LeaseHeld):
        await rival.resume(doc_id, fake.connector())
    assert (await running)["mode"] == "settings"


async def test_install_into_an_existing_integration(
    smartconnector_engine: Engine, sandbox_api: ApiClient, fake_connector: Fake
) -> None:
    """install --integration ID runs the steps of a document made elsewhere."""
    fake = fake_connector(["a", "b"])
    made = await sandbox_api.create(
        "integrations",
        {
            "_connectorId": "fake-connector",
            "mode": "install",
            "keep": "me",
            "install": [
                {
                    "name": n,
                    "completed": False,
                    "installerFunction": f"install {n}",
                    "uninstallerFunction": f"uninstall {n}",
                }
                for n in "ab"
            ],
        },
    )
    doc = await smartconnector_engine.install(fake.connector(), integration_id=made["_id"])
    assert doc["_id"] == made["_id"] and doc["mode"] == "settings" and doc["keep"] == "me"
    assert [f.successes for f in fake.installers()] == [1, 1]


async def test_log_events_carry_their_context(
    smartconnector_engine: Engine, fake_connector: Fake
) -> None:
    """Events are bound with integration id, step, function and mode, not repeated by hand."""
    from structlog.testing import capture_logs

    with capture_logs() as events:
        doc = await smartconnector_engine.install(fake_connector(["a"]).connector())
    [succeeded] = [e for e in events if e["event"] == "function succeeded"]
    assert succeeded["integration_id"] == doc["_id"]
    assert (succeeded["step"], succeeded["function"], succeeded["mode"]) == (
        "a",
        "install a",
        "install",
    )
    [mode] = [e for e in events if e["event"] == "mode change"]
    assert (mode["source"], mode["dest"]) == ("install", "settings")
