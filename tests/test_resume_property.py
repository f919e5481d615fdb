"""Property: however a run is broken up, resuming ends where an unbroken run ends, once each."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings, strategies as st

from engine.client import ApiClient, Document
from engine.drivers.runner import Engine
from engine.errors import SmartConnectorError
from engine.policy import RetryPolicy
from engine.run.journal import Journal
from installers.fakes import FakeConnector, fails
from sandbox import Store, create_app

NO_WAIT = RetryPolicy(attempts=2, budget=1, wait_initial=0, wait_max=0, wait_jitter=0)


@dataclass
class PatchCutter:
    """An ASGI wrapper whose PATCHes stop getting through after ``allowed`` more of them."""

    app: Any
    allowed: int | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "PATCH" and self.allowed is not None:
            if self.allowed <= 0:
                raise httpx.ConnectError("network cut")
            self.allowed -= 1
        await self.app(scope, receive, send)


def comparable(doc: Document) -> Document:
    return {k: v for k, v in doc.items() if k not in ("_id", "lastModified")}


async def install_uninterrupted(steps: int, connector_functions: bool) -> Document:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "s.db")
        transport = httpx.ASGITransport(app=create_app(store))
        async with ApiClient(
            "http://s/v1", store.create_token(["all.User"]), transport=transport
        ) as api:
            fake = FakeConnector(steps, connector_functions=connector_functions)
            doc = await Engine(api, Journal(Path(tmp) / "j.db")).install(fake.connector())
        store.close()
        return doc


async def install_broken_up(
    steps: int,
    connector_functions: bool,
    failures: dict[int, int],
    interrupts: set[int],
    patch_cuts: list[int],
) -> tuple[Document, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "s.db")
        cutter = PatchCutter(create_app(store))
        fake = FakeConnector(steps, connector_functions=connector_functions)
        journal = Journal(Path(tmp) / "j.db")
        async with ApiClient(
            "http://s/v1",
            store.create_token(["all.User"]),
            transport=httpx.ASGITransport(app=cutter),
            retry=NO_WAIT,
        ) as api:
            engine = Engine(api, journal, lease_ttl=0.05)
            for index, times in failures.items():
                fake.fail(fake.steps[index], times=times)
            for index in interrupts:
                fake.installer(fake.steps[index]).behaviour = _stop_once(engine)
            doc_id: str | None = None
            for attempt in range(40):
                cutter.allowed = patch_cuts[attempt] if attempt < len(patch_cuts) else None
                engine.stop.clear()
                try:
                    if doc_id is None:
                        doc = await engine.install(fake.connector())
                    else:
                        doc = await engine.resume(doc_id)
                    break
                except SmartConnectorError as exc:
                    doc_id = doc_id or exc.context.get("integration_id")
                    await asyncio.sleep(0.06)  # a cut-off run's lease runs out
            else:
                raise AssertionError("never finished")
        store.close()
        return doc, fake


def _stop_once(engine: Engine) -> Any:
    def behave(call: int) -> None:
        if call == 1:
            engine.stop.set()

    return behave


scenarios = st.integers(1, 5).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.booleans(),
        st.dictionaries(st.integers(0, n - 1), st.integers(1, 2), max_size=n),
        st.sets(st.integers(0, n - 1), max_size=2),
        st.lists(st.integers(0, n + 1), max_size=3),
    )
)


@given(scenario=scenarios)
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_broken_up_install_ends_like_an_unbroken_one(
    scenario: tuple[int, bool, dict[int, int], set[int], list[int]],
) -> None:
    """Failures, Ctrl-C and lost PATCHes anywhere: same final document, each success once."""
    steps, connector_functions, failures, interrupts, cuts = scenario
    interrupts -= set(failures)
    expected = asyncio.run(install_uninterrupted(steps, connector_functions))
    got, fake = asyncio.run(
        install_broken_up(steps, connector_functions, failures, interrupts, cuts)
    )
    assert comparable(got) == comparable(expected)
    assert [f.successes for f in fake.installers()] == [1] * steps
    if connector_functions:
        assert fake.functions["installerFunction"].successes == 1


def test_fails_helper_counts_calls() -> None:
    """The fake's fails(times) raises exactly that many times (the property relies on it)."""
    behave = fails(2)
    raised = 0
    for call in (1, 2, 3):
        try:
            behave(call)
        except RuntimeError:
            raised += 1
    assert raised == 2
