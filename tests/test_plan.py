"""The plan as a value: one pure function of the document, executed as it says."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings, strategies as st

from engine.client import Document
from engine.drivers.runner import Engine
from engine.errors import (
    BadInput,
    LeaseHeld,
    NotFound,
    SmartConnectorError,
    StepFailed,
    WaitingForUser,
    from_wire,
    to_wire,
)
from engine.run import plan as plans
from engine.run.documents import new_integration
from engine.run.integration import IntegrationRun
from engine.run.journal import Journal
from engine.run.machine import ModeMachine
from engine.run.plan import Action, Call, Delete, Intent, plan_run
from engine.run.progress import RunState
from engine.run.writer import DocumentWriter, Owner
from installers.fakes import FakeConnector, MemoryApi


def versions(steps: int) -> tuple[FakeConnector, FakeConnector]:
    """The same connector at 1.0.0 and at 2.0.0, which adds one step."""
    names = [f"s{i}" for i in range(steps)]
    extra = ("updateFunction",)
    v1 = FakeConnector(names, connector_functions=True, extra_functions=extra)
    v2 = FakeConnector(
        [*names, "added"], version="2.0.0", connector_functions=True, extra_functions=extra
    )
    return v1, v2


async def execute(
    api: MemoryApi, journal: Journal, connector: FakeConnector, doc: Document, actions: list[Action]
) -> None:
    """Run ``actions`` on ``doc`` under a fresh lease, as a stopped run leaves it."""
    writer = DocumentWriter(api, doc, Owner.here())  # type: ignore[arg-type]
    await writer.acquire()
    run = IntegrationRun(
        writer=writer,
        connector=connector.connector(),
        api=api,  # type: ignore[arg-type]
        journal=journal,
        machine=ModeMachine(),
        stop=asyncio.Event(),
        observe=lambda *a: None,
    )
    await run.execute(actions)
    if actions and isinstance(actions[-1], Delete):
        return
    if RunState.of(writer.doc).lease_owner == writer.owner.run_id:
        await writer.write([], release=True)  # what a stopped run does


async def starting_point(
    direction: str, steps: int, tmp: Path
) -> tuple[MemoryApi, Journal, FakeConnector, str]:
    """An API holding the integration a run in ``direction`` starts from."""
    api, journal = MemoryApi(), Journal(tmp / "j.db")
    v1, v2 = versions(steps)
    engine = Engine(api, journal)  # type: ignore[arg-type]
    if direction == "install":
        doc = await api.create("integrations", new_integration(v1.connector(), Owner.here(), 30))
        await api.patch("integrations", doc["_id"], [RunState.release()])
        return api, journal, v1, doc["_id"]
    doc = await engine.install(v1.connector())
    return api, journal, v2 if direction == "update" else v1, doc["_id"]


INTENTS = {"install": Intent.INSTALL, "uninstall": Intent.UNINSTALL, "update": Intent.UPDATE}


async def run_stopped_after(
    direction: str, steps: int, stop_after: int | None
) -> tuple[Document | None, list[Action], list[Action]]:
    with tempfile.TemporaryDirectory() as tmp:
        api, journal, connector, doc_id = await starting_point(direction, steps, Path(tmp))
        doc = await api.get("integrations", doc_id)
        manifest = connector.connector().manifest
        first = plan_run(doc, manifest, INTENTS[direction])
        await execute(api, journal, connector, doc, first[:stop_after])
        try:
            doc = await api.get("integrations", doc_id)
        except NotFound:
            return None, first, []
        again = plan_run(doc, manifest, INTENTS[direction])  # the same command, run again
        await execute(api, journal, connector, doc, again)
        for function in connector.functions.values():
            assert function.successes <= 1, function.name
        try:
            return await api.get("integrations", doc_id), first, again
        except NotFound:
            return None, first, again


def comparable(doc: Document | None) -> Document | None:
    return (
        None if doc is None else {k: v for k, v in doc.items() if k not in ("_id", "lastModified")}
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    direction=st.sampled_from(["install", "uninstall", "update"]),
    steps=st.integers(1, 3),
    data=st.data(),
)
def test_a_run_stopped_after_any_action_ends_where_an_unbroken_one_does(
    direction: str, steps: int, data: Any
) -> None:
    """Stop after any action in any direction, plan again from the document: the end is the
    unbroken run's, nothing the document records as done is planned again, and no function
    runs twice (what only the journal holds is replayed)."""
    unbroken, plan, _ = asyncio.run(run_stopped_after(direction, steps, None))
    stop_after = data.draw(st.integers(0, len(plan)))
    ended, first, again = asyncio.run(run_stopped_after(direction, steps, stop_after))
    assert comparable(ended) == comparable(unbroken)
    # updateFunction's result is written with the update's last act, so until then only the
    # journal has it: planned again, it is replayed, not run (successes <= 1, checked above)
    recorded = {
        (a.function, a.step)
        for a in first[:stop_after]
        if isinstance(a, Call) and a.kind != "updateFunction"
    }
    assert not recorded & {(a.function, a.step) for a in again if isinstance(a, Call)}


def test_install_plan_of_a_fresh_document() -> None:
    """Create, the connector installer, each step in order, then mode settings."""
    fake = FakeConnector(["a", "b"], connector_functions=True)
    actions = plan_run(None, fake.connector().manifest, Intent.INSTALL)
    shown = [a.to_json() for a in actions]
    assert [(a["action"], a["function"], a["step"]) for a in shown] == [
        ("create", None, None),
        ("call", "installerFunction", None),
        ("call", "install a", "a"),
        ("call", "install b", "b"),
        ("mode", None, None),
    ]


def test_local_execution_makes_the_plans_calls_in_order() -> None:
    """What `plan` prints is what an install calls."""
    fake = FakeConnector(["a", "b", "c"], connector_functions=True)
    order: list[str] = []
    for function in fake.functions.values():
        function.behaviour = lambda call, name=function.name: order.append(name)

    async def install() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            await Engine(MemoryApi(), Journal(Path(tmp) / "j.db")).install(  # type: ignore[arg-type]
                fake.connector()
            )

    asyncio.run(install())
    planned = plan_run(None, fake.connector().manifest, Intent.INSTALL)
    assert order == [a.function for a in planned if isinstance(a, Call)]


def test_errors_cross_a_boundary_as_the_same_class_with_their_facts() -> None:
    """to_wire/from_wire keep the class, message, context and typed facts."""
    errors: list[SmartConnectorError] = [
        StepFailed(
            "boom",
            integration_id="i",
            step="s",
            function="f",
            raised_at="x.py:3, in f",
            rolled_back=["a"],
            deleted=True,
        ),
        WaitingForUser("wait", url="https://x", integration_id="i"),
        BadInput("bad", field="mode"),
        LeaseHeld("held", integration_id="i"),
        NotFound("gone", method="GET", path="/integrations/i", status=404),
    ]
    for error in errors:
        back = from_wire(to_wire(error))
        assert type(back) is type(error)
        assert str(back) == str(error) and back.context == error.context
        assert back.exit_code == error.exit_code
        facts = {k: v for k, v in vars(error).items() if k not in ("message", "context")}
        assert {k: getattr(back, k) for k in facts} == facts


def test_actions_cross_a_boundary_as_the_same_values() -> None:
    """Every action of every kind of plan comes back from its wire form equal, typed."""
    v1, v2 = versions(2)
    fresh = plan_run(None, v1.connector().manifest, Intent.INSTALL)
    installed = {
        "_id": "i",
        "mode": "settings",
        "version": "1.0.0",
        "install": [{**s, "completed": True} for s in v1.manifest_data["install"]],
    }
    updating = plan_run(installed, v2.connector().manifest, Intent.UPDATE)
    removing = plan_run(installed, v1.connector().manifest, Intent.UNINSTALL)
    for action in [*fresh, *updating, *removing, plans.Release()]:
        assert plans.from_wire(plans.to_wire(action)) == action


def test_plan_of_an_integration_refuses_another_connector_as_its_commands_do() -> None:
    """`plan ID --connector DIR` of an integration another connector installed: exit 2
    naming both, as `resume` with that connector would refuse."""

    async def scenario() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            api = MemoryApi()
            engine = Engine(api, Journal(Path(tmp) / "j.db"))  # type: ignore[arg-type]
            doc = await engine.install(FakeConnector(1).connector())
            other = FakeConnector(1, connector_id="another-connector").connector()
            for refused in (
                engine.plan_for(doc["_id"], Intent.UNINSTALL, other),
                engine.resume(doc["_id"], other),
            ):
                try:
                    await refused
                except BadInput as exc:
                    assert "belongs to connector fake-connector, not another-connector" in str(exc)
                else:
                    raise AssertionError("another connector's plan was made")

    asyncio.run(scenario())


@given(mode=st.one_of(st.lists(st.text(max_size=3), max_size=2), st.integers(), st.none()))
def test_a_document_whose_mode_is_no_text_is_refused_not_crashed_on(mode: Any) -> None:
    """install --integration of a document whose mode is a list, a number or missing: exit 2
    naming the mode (reading it must not raise)."""
    from engine.run.documents import check_installable

    try:
        check_installable({"_id": "i1", "mode": mode})
    except BadInput as exc:
        assert f"is in mode {mode!r}" in str(exc)
    else:
        raise AssertionError("a document in no mode was taken as installable")
