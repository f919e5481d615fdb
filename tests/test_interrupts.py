"""Ctrl-C at any moment of a run, pressed in-process at chosen points rather than timed."""

from __future__ import annotations

import asyncio
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from engine.client import Document
from engine.drivers.interrupts import Interrupts
from engine.drivers.runner import Engine
from engine.errors import Interrupted
from engine.run.journal import Journal
from installers.fakes import FakeConnector, MemoryApi

STEPS = 3


class PressingApi(MemoryApi):
    """A fake API that presses Ctrl-C when its request number ``at`` goes out or comes back."""

    def __init__(self, interrupts: Interrupts, at: int | None, after: bool, presses: int) -> None:
        super().__init__()
        self.interrupts = interrupts
        self.at, self.after, self.presses = at, after, presses
        #: Only the run's own requests press (not the lease keeper's renewals).
        self.run_task: asyncio.Task[Any] | None = None

    def _maybe_press(self, done: bool) -> None:
        if asyncio.current_task() is not self.run_task:
            return
        if self.at is not None and self.requests_sent == self.at and done == self.after:
            for _ in range(self.presses):
                self.interrupts.press()

    async def create(
        self, resource: str, doc: dict[str, Any], *, repeatable: bool | None = None
    ) -> dict[str, Any]:
        self._maybe_press(False)
        created = await super().create(resource, doc, repeatable=repeatable)
        self._maybe_press(True)
        return created

    async def patch(self, resource: str, id: str, ops: Any) -> dict[str, Any]:
        self._maybe_press(False)
        patched = await super().patch(resource, id, ops)
        self._maybe_press(True)
        return patched


def connector_with_a_sync_step(
    interrupts: Interrupts, press_in: str | None, presses: int
) -> tuple[FakeConnector, dict[str, int]]:
    """Fakes, one step of which is a sync function (run in a thread), and success counts."""
    fake = FakeConnector(STEPS, connector_functions=True)
    successes: dict[str, int] = {}
    release = threading.Event()

    calls: list[str] = []

    def sync_step(ctx: Any) -> None:
        calls.append(ctx.idempotency_key)
        if press_in == "sync step" and len(calls) == 1:
            for _ in range(presses):
                interrupts.press()
            release.wait(0.05)  # still running when the presses arrive
        successes["sync step"] = successes.get("sync step", 0) + 1

    fake.registry._functions.pop("install step 2")
    fake.registry.add("install step 2", sync_step)
    if press_in is not None and press_in != "sync step":
        function = fake.functions[press_in]
        function.delay = 0.05

        def pressing(call: int) -> None:
            if call == 1:
                for _ in range(presses):
                    interrupts.press()

        function.behaviour = pressing
    return fake, successes


def comparable(doc: Document) -> Document:
    return {k: v for k, v in doc.items() if k not in ("_id", "lastModified")}


async def uninterrupted() -> Document:
    with tempfile.TemporaryDirectory() as tmp:
        fake, _ = connector_with_a_sync_step(Interrupts(), None, 0)
        engine = Engine(MemoryApi(), Journal(Path(tmp) / "j.db"))  # type: ignore[arg-type]
        return await engine.install(fake.connector())


FUNCTIONS = ["installerFunction", "install step 1", "sync step", "install step 3"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    where=st.one_of(
        st.tuples(st.just("request"), st.integers(1, 7), st.booleans()),
        st.tuples(st.just("function"), st.sampled_from(FUNCTIONS), st.just(False)),
        st.just(("before start", None, False)),
    ),
    presses=st.sampled_from([1, 2]),
)
def test_ctrl_c_anywhere_leaves_a_resumable_integration(
    where: tuple[str, Any, bool], presses: int
) -> None:
    """Pressed before the start, around any request or inside any function, once or twice:
    the run ends Interrupted naming the integration it made (or having made none), a function
    whose success was recorded never runs again, and resume ends as an unbroken run does."""
    asyncio.run(_interrupt_then_resume(where, presses))


async def _interrupt_then_resume(where: tuple[str, Any, bool], presses: int) -> None:
    kind, point, after = where
    interrupts = Interrupts()
    api = PressingApi(interrupts, point if kind == "request" else None, after, presses)
    fake, sync_successes = connector_with_a_sync_step(
        interrupts, point if kind == "function" else None, presses
    )
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(api, Journal(Path(tmp) / "j.db"), lease_ttl=0.05)  # type: ignore[arg-type]
        if kind == "before start":
            interrupts.press()
        interrupts.attach(engine)
        api.run_task = asyncio.current_task()
        ended_process = False
        try:
            await engine.install(fake.connector())
            interrupted_id = None
        except Interrupted as stop:
            interrupted_id = stop.integration_id
        except KeyboardInterrupt:  # a second press with no function to abandon
            ended_process = True
            interrupted_id = next(iter(engine.known), None)  # what the CLI then prints
        stored = await api.list("integrations")
        if interrupted_id is None:  # nothing may be left behind that nobody can name
            assert stored == [] or stored[0]["mode"] == "settings"
            if not stored:
                return
            interrupted_id = stored[0]["_id"]
        assert [d["_id"] for d in stored] == [interrupted_id]
        if ended_process:  # the process is gone: its lease lapses (at once, on this host)
            await asyncio.sleep(0.06)
        else:
            assert "lease" not in stored[0].get("smartconnector", {})
        interrupts.detach()
        engine.stop.clear()
        engine.abandon.clear()
        done = await engine.resume(interrupted_id)
    assert comparable(done) == comparable(await uninterrupted())
    for function in fake.functions.values():
        assert function.successes <= 1, function.name
    assert sync_successes.get("sync step", 0) <= 1 or presses == 2


def test_a_press_before_the_engine_exists_stops_the_run_before_it_creates_anything() -> None:
    """A press that came during start-up is remembered: install then creates nothing."""

    async def run() -> tuple[Engine, MemoryApi]:
        interrupts, api = Interrupts(), MemoryApi()
        interrupts.press()
        with tempfile.TemporaryDirectory() as tmp:
            engine = Engine(api, Journal(Path(tmp) / "j.db"))  # type: ignore[arg-type]
            interrupts.attach(engine)
            with pytest.raises(Interrupted, match="before anything was changed") as stop:
                await engine.install(FakeConnector(2).connector())
        assert stop.value.integration_id is None
        return engine, api

    _, api = asyncio.run(run())
    assert api.requests_sent == 0


def test_second_press_abandons_the_running_function_and_resume_runs_it_again() -> None:
    """Twice while a function runs: it is cut off, not recorded, and runs again on resume
    with the same idempotency key."""
    interrupts = Interrupts()
    keys: list[str] = []
    finished: list[str] = []

    async def slow(ctx: Any) -> None:
        keys.append(ctx.idempotency_key)
        if len(keys) == 1:
            interrupts.press()
            interrupts.press()
            await asyncio.Event().wait()  # hangs until abandoned
        finished.append(ctx.idempotency_key)

    async def run() -> Document:
        fake = FakeConnector(["slow", "next"])
        fake.registry._functions.pop("install slow")
        fake.registry.add("install slow", slow)
        with tempfile.TemporaryDirectory() as tmp:
            engine = Engine(MemoryApi(), Journal(Path(tmp) / "j.db"))  # type: ignore[arg-type]
            interrupts.attach(engine)
            with pytest.raises(Interrupted) as stop:
                await engine.install(fake.connector())
            assert stop.value.abandoned
            assert stop.value.context["function"] == "install slow"
            assert finished == []
            interrupts.detach()
            engine.stop.clear()
            engine.abandon.clear()
            return await engine.resume(str(stop.value.integration_id))

    done = asyncio.run(run())
    assert done["mode"] == "settings"
    assert len(keys) == 2 and keys[0] == keys[1] == finished[0]


def test_a_press_with_nothing_to_abandon_ends_the_process() -> None:
    """A second press while no function runs (or a third) raises KeyboardInterrupt."""
    interrupts = Interrupts()

    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            engine = Engine(MemoryApi(), Journal(Path(tmp) / "j.db"))  # type: ignore[arg-type]
            interrupts.attach(engine)
            interrupts.press()
            with pytest.raises(KeyboardInterrupt):
                interrupts.press()

    asyncio.run(run())
