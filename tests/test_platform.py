"""The engine on every write way: the sandbox, the platform as documented, and PUT only.

Each test runs on the sandbox's three profiles (SPEC §5a) through the same fixture; the way
is found by the engine's own probe, not told.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.client import ApiClient, Document
from engine.drivers.runner import Engine
from engine.errors import (
    ApiUnavailable,
    LeaseHeld,
    NotFound,
    PermissionDenied,
    StepFailed,
    WaitingForUser,
)
from engine.pytest_plugin import fast_retry
from engine.run.journal import Journal
from engine.run.progress import RUN_FIELD
from engine.writes import REMEMBERED, WriteWay, WriteWays
from installers.fakes import FakeConnector, fails, succeeds, waits_for_user
from sandbox import Store, create_app

PROFILES = {
    "default": WriteWay.JSON_PATCH_TEST,
    "platform": WriteWay.REPLACE_ONLY,
    "put-only": WriteWay.PUT_ONLY,
}
URL = "http://sandbox.test/v1"
Fake = Callable[..., FakeConnector]


class Counted:
    """An ASGI app that counts the requests it answers by method, and can lose answers."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, str]] = []
        #: Methods whose next answer is lost after the request was applied.
        self.lose: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        self.seen.append((scope["method"], scope["path"]))
        await asyncio.sleep(0)
        if scope["method"] in self.lose:
            self.lose.remove(scope["method"])

            async def dropped(message: Any) -> None:
                return None

            await self.app(scope, receive, dropped)
            raise httpx.ReadTimeout("the answer was lost")
        await self.app(scope, receive, send)

    def count(self) -> int:
        return len(self.seen)


class Platform:
    """One sandbox of a profile, and engines on it that share a home."""

    def __init__(self, profile: str, tmp: Path) -> None:
        self.profile = profile
        self.store = Store(tmp / f"{profile}.db")
        self.token = self.store.create_token(["all.User"])
        self.app = Counted(create_app(self.store, profile=profile))
        self.home = tmp / "home"
        self.apis: list[ApiClient] = []

    def api(self) -> ApiClient:
        api = ApiClient(
            URL,
            self.token,
            transport=httpx.ASGITransport(app=self.app),
            retry=fast_retry(),
            writes=WriteWays.at_home(URL, self.home),
        )
        self.apis.append(api)
        return api

    def engine(self, journal: str = "journal.db", **options: Any) -> Engine:
        options.setdefault("claim_wait", 0.05)
        return Engine(self.api(), Journal(self.home / journal), **options)

    def raw(self, integration_id: str) -> Document | None:
        """The document as the API stores it, without the engine's view."""
        return self.store.get("integrations", integration_id)

    def kept_state(self, integration_id: str) -> Any:
        found, value = self.store.state_get(f"integrations/{integration_id}", RUN_FIELD)
        return value if found else None


@pytest.fixture(params=list(PROFILES))
async def platform(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Platform]:
    """The same tests on each profile of the sandbox."""
    made = Platform(request.param, tmp_path)
    yield made
    for api in made.apis:
        await api.aclose()


def same_outcome(doc: Document) -> Document:
    """What two runs of one connector must agree on: everything but ids and times."""
    return {k: v for k, v in doc.items() if k not in ("_id", "lastModified", "createdAt")}


async def test_the_engine_finds_the_way_and_remembers_it(platform: Platform) -> None:
    """The probe tells each profile's way, changes nothing, and is made once per home."""
    engine = platform.engine()
    doc = await engine.install(FakeConnector(1).connector())
    assert engine.api.writes.way is PROFILES[platform.profile]
    assert str(platform.home / REMEMBERED) and (platform.home / REMEMBERED).exists()
    again = platform.engine()
    assert again.api.writes.way is PROFILES[platform.profile]  # no probe this time
    assert doc["mode"] == "settings"


async def test_an_install_leaves_no_run_state_and_counts_its_requests(
    platform: Platform, fake_connector: Fake
) -> None:
    """N + 2 requests on the sandbox, at most N + 6 elsewhere, and nothing of the run left."""
    engine = platform.engine()
    await engine.install(FakeConnector(1, connector_id="warm-up").connector())  # way known
    fake = fake_connector(["a", "b", "c", "d", "e"])
    before = platform.app.count()
    doc = await engine.install(fake.connector())
    sent = platform.app.count() - before
    limit = 5 + 2 if PROFILES[platform.profile] is WriteWay.JSON_PATCH_TEST else 5 + 6
    assert sent <= limit, platform.app.seen[before:]
    assert doc["mode"] == "settings" and all(s["completed"] for s in doc["install"])
    stored = platform.raw(doc["_id"])
    assert stored is not None and RUN_FIELD not in stored
    assert platform.kept_state(doc["_id"]) is None
    assert all(fake.installer(n).successes == 1 for n in "abcde")


async def test_a_failed_install_resumes_to_the_document_of_an_uninterrupted_one(
    platform: Platform, fake_connector: Fake
) -> None:
    """A failure is recorded where the way keeps run state; resume ends where a clean run
    ends, and no function that succeeded runs again."""
    clean = await platform.engine().install(fake_connector(["a", "b", "c"]).connector())
    fake = fake_connector(["a", "b", "c"])
    fake.installer("b").behaviour = fails(1)
    engine = platform.engine()
    with pytest.raises(StepFailed) as failed:
        await engine.install(fake.connector())
    integration_id = str(failed.value.integration_id)
    status = await engine.status(integration_id)
    assert status[RUN_FIELD]["error"]["step"] == "b"
    done = await platform.engine().resume(integration_id, fake.connector())
    assert same_outcome(done) == same_outcome(clean)
    assert [fake.installer(n).successes for n in "abc"] == [1, 1, 1]
    assert platform.kept_state(integration_id) is None


async def test_a_waiting_step_is_shown_and_resumed_with_its_answers(
    platform: Platform, fake_connector: Fake
) -> None:
    """What a waiting step asked is read back from wherever the run state lives."""
    fake = fake_connector(["bundle"])
    fake.installer("bundle").behaviour = waits_for_user("install it", "https://example.com/bundle")
    engine = platform.engine()
    with pytest.raises(WaitingForUser) as waiting:
        await engine.install(fake.connector())
    integration_id = str(waiting.value.integration_id)
    [listed] = await engine.integrations()
    assert listed[RUN_FIELD]["waiting"]["url"] == "https://example.com/bundle"
    done = await platform.engine().resume(integration_id, fake.connector())
    assert done["mode"] == "settings" and RUN_FIELD not in done


async def test_a_second_run_is_refused_and_calls_nothing(
    platform: Platform, fake_connector: Fake
) -> None:
    """While one run holds the integration another exits 4 before calling any function."""
    fake = fake_connector(["slow", "after"])
    fake.installer("slow").delay = 0.6
    first = platform.engine(lease_ttl=30)
    running = asyncio.create_task(first.install(fake.connector()))
    while not first.known:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # its claim is read back
    [integration_id] = list(first.known)
    rival = fake_connector(["slow", "after"])
    with pytest.raises(LeaseHeld):
        await platform.engine("other.db").resume(integration_id, rival.connector())
    assert rival.installer("slow").calls == [] and rival.installer("after").calls == []
    assert (await running)["mode"] == "settings"


async def test_uninstall_undoes_in_reverse_and_leaves_nothing(
    platform: Platform, fake_connector: Fake
) -> None:
    """Uninstall runs each uninstaller in reverse and deletes the integration and its state."""
    fake = fake_connector(["a", "b"])
    engine = platform.engine()
    doc = await engine.install(fake.connector())
    await engine.uninstall(doc["_id"], fake.connector())
    assert [fake.uninstaller(n).successes for n in "ab"] == [1, 1]
    assert platform.raw(doc["_id"]) is None
    with pytest.raises(NotFound):
        await engine.status(doc["_id"])


async def test_an_update_adds_its_steps_and_writes_the_version_last(
    platform: Platform, fake_connector: Fake
) -> None:
    """updateFunction runs once; the version and the cleared flag are the update's last act."""
    engine = platform.engine()
    old = fake_connector(["a"])
    doc = await engine.install(old.connector())
    new = FakeConnector(["a", "b"], version="1.1.0", extra_functions=("updateFunction",))
    updated = await engine.update(doc["_id"], new.connector())
    assert updated["version"] == "1.1.0" and updated["updateInProgress"] is False
    assert [s["completed"] for s in updated["install"]] == [True, True]
    assert new.functions["updateFunction"].successes == 1 and new.installer("a").calls == []
    assert platform.kept_state(doc["_id"]) is None
    stored = platform.raw(doc["_id"])
    assert stored is not None and stored["version"] == "1.1.0"


async def test_a_lost_answer_to_the_create_is_reconciled_not_repeated(
    platform: Platform, fake_connector: Fake
) -> None:
    """Where POST has no idempotency key, a lost answer adopts what it made: one integration."""
    engine = platform.engine()
    await engine.install(FakeConnector(1, connector_id="warm-up").connector())  # way known
    fake = fake_connector(["a"])
    platform.app.lose.append("POST")
    doc = await engine.install(fake.connector())
    listed = await engine.api.list("integrations", _connectorId="fake-connector")
    assert [d["_id"] for d in listed] == [doc["_id"]]
    assert doc["mode"] == "settings"


async def test_status_of_a_stopped_run_comes_from_its_run_state(
    platform: Platform, fake_connector: Fake
) -> None:
    """The document the API keeps has no engine field; the view the engine reads does."""
    fake = fake_connector(["a"])
    fake.installer("a").behaviour = fails(5)
    engine = platform.engine()
    with pytest.raises(StepFailed) as failed:
        await engine.install(fake.connector())
    integration_id = str(failed.value.integration_id)
    stored = platform.raw(integration_id)
    assert stored is not None
    if PROFILES[platform.profile] is not WriteWay.JSON_PATCH_TEST:
        assert RUN_FIELD not in stored
        assert platform.kept_state(integration_id)["error"]["function"] == "install a"
    view = await engine.status(integration_id)
    assert view[RUN_FIELD]["error"]["step"] == "a"
    assert "lease" not in view[RUN_FIELD]  # the failed run let go of it


async def test_succeeding_steps_record_their_results(
    platform: Platform, fake_connector: Fake
) -> None:
    """stepsToUpdate lands in the document on every way."""
    fake = fake_connector(["a"])
    fake.installer("a").behaviour = succeeds(
        {"stepsToUpdate": [{"name": "a", "_connectionId": "made-once"}]}
    )
    doc = await platform.engine().install(fake.connector())
    stored = platform.raw(doc["_id"])
    assert stored is not None and stored["install"][0]["_connectionId"] == "made-once"


async def test_a_token_that_cannot_write_calls_no_function(
    platform: Platform, fake_connector: Fake
) -> None:
    """Found before any function runs: a token without the patch scope exits 3, and the way
    of the API is not mistaken for another."""
    platform.token = platform.store.create_token(
        ["integration.get", "integrations.get", "integrations.post"]
    )
    fake = fake_connector(["a"])
    engine = platform.engine()
    with pytest.raises(PermissionDenied):
        await engine.install(fake.connector())
    assert fake.installer("a").calls == []
    remembered = WriteWays.at_home(URL, platform.home).way
    assert remembered in (None, PROFILES[platform.profile])  # never mistaken for another


async def test_a_lost_create_that_cannot_be_told_apart_stops_naming_the_candidates(
    platform: Platform, fake_connector: Fake
) -> None:
    """Two just-made integrations could be the one a lost POST made: exit 5 naming both,
    rather than adopting one by chance or making a third."""
    if PROFILES[platform.profile] is WriteWay.JSON_PATCH_TEST:
        pytest.skip("there the run state in the document names its run exactly")
    engine = platform.engine()
    await engine.install(FakeConnector(1, connector_id="warm-up").connector())  # way known
    fake = fake_connector(["a"])
    other = await engine.api.create(
        "integrations",
        {
            **fake.connector().manifest.model_dump(by_alias=True, mode="json"),
            "mode": "install",
            "install": [{"name": "a", "completed": False}],
        },
    )
    platform.app.lose.append("POST")
    with pytest.raises(ApiUnavailable) as stopped:
        await engine.install(fake.connector())
    assert other["_id"] in str(stopped.value) and len(stopped.value.context["candidates"]) == 2
    assert fake.installer("a").calls == []
    listed = await engine.api.list("integrations", _connectorId="fake-connector")
    assert len(listed) == 2


async def test_a_run_whose_lease_lapsed_and_was_taken_stops_before_writing(
    platform: Platform,
) -> None:
    """Each store of the run state renews the lease; a run whose lease lapsed and another
    run took finds out before it writes anything, and leaves the other's lease as it is."""
    from engine.run.progress import RunState
    from engine.run.state_writer import open_writer
    from engine.run.views import read_view
    from engine.run.writer import Owner

    way = PROFILES[platform.profile]
    if way is WriteWay.JSON_PATCH_TEST:
        pytest.skip("there every write tests the lease in the document itself")
    api = platform.api()
    doc = await api.create("integrations", {"name": "x", "mode": "install", "install": []})
    first = open_writer(way, api, doc, Owner.here(), ttl=0.6, claim_wait=0.01)
    await first.acquire(fresh=True)
    claimed = first.state.lease
    await asyncio.sleep(0.1)
    await first.write([RunState.mark_done("installerFunction")])
    assert first.state.lease != claimed  # renewed with the store it rode on
    await asyncio.sleep(0.7)  # the first run stalls past its lease
    rival = open_writer(way, api, await read_view(api, doc["_id"]), Owner.here(), ttl=30)
    await rival.acquire()
    with pytest.raises(LeaseHeld):
        await first.write([{"op": "replace", "path": "/name", "value": "mine"}])
    stored = platform.raw(doc["_id"])
    assert stored is not None and stored["name"] == "x"
    assert platform.kept_state(doc["_id"])["lease"]["owner"] == rival.owner.run_id


async def test_a_first_install_on_the_platform_makes_at_most_n_plus_6_requests(
    platform: Platform,
) -> None:
    """From a fresh home, with a connector-level installer: the dropped run state of the
    create tells the engine the API's kind, so no probe is spent (N + 6 on the platform;
    put-only learns its way from the first PATCH's 405, N + 7 once per home)."""
    if PROFILES[platform.profile] is WriteWay.JSON_PATCH_TEST:
        pytest.skip("the sandbox keeps the run state, so its test must be probed")
    fake = FakeConnector(5, connector_functions=True)
    engine = platform.engine()
    before = platform.app.count()
    doc = await engine.install(fake.connector())
    sent = platform.app.count() - before
    first_contact = 1 if platform.profile == "put-only" else 0
    assert sent <= 5 + 6 + first_contact, platform.app.seen[before:]
    assert doc["mode"] == "settings" and engine.api.writes.way is PROFILES[platform.profile]
