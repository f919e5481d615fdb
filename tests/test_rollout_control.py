"""An operator's requests of a local rollout, against the rollout's own writes: the State API
has no compare-and-set, so a request goes under a key of its own and is taken up once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine.errors import BadInput
from engine.fleet.control import POLL, RolloutController
from engine.fleet.record import Request, RolloutRecords, control_key

LONG_AGO = "2000-01-01T00:00:00.000Z"


async def opened(api: Any, name: str) -> RolloutController:
    return await RolloutController.open(api, name, "2", {}, asyncio.Event())


async def killed(api: Any, controller: RolloutController) -> None:
    """Its command gone: nothing reads the requests any more, and its record goes quiet."""
    assert controller._task is not None
    controller._task.cancel()
    controller.record.heardAt = LONG_AGO
    await RolloutRecords(api).put(controller.record)
    stored = await RolloutRecords(api).stored(controller.record.id)
    assert stored is not None and stored.abandoned


async def still_holding(hold: asyncio.Task[bool]) -> bool:
    await asyncio.sleep(POLL * 3)
    return not hold.done()


async def test_a_request_is_never_written_over_the_rollouts_record(sandbox_api: Any) -> None:
    """`rollouts abort` writes the request, not the record: what the rollout wrote stays until
    it takes the abort up, and its end, written after, is what the record says."""
    controller = await opened(sandbox_api, "requests")
    assert controller._task is not None
    controller._task.cancel()  # nothing but the request changes the API meanwhile
    records = RolloutRecords(sandbox_api)
    before = await records.stored(controller.record.id)
    asked = await records.ask(controller.record.id, "abort", wait=0)
    assert asked is not None and asked.state == "running"
    assert await records.stored(controller.record.id) == before
    assert (await records.request(controller.record.id) or Request("", "")).control == "abort"
    await controller.sync()
    assert controller.aborted
    await controller.finish("aborted", None)
    found = await records.stored(controller.record.id)
    assert found is not None and (found.state, found.control) == ("aborted", "abort")


async def test_a_resume_releases_only_the_hold_its_operator_saw(sandbox_api: Any) -> None:
    """A resume asked before a hold (--pause, after a phase) leaves that hold in place; one
    asked of it releases it; the same resume again does not release the next hold."""
    controller = await opened(sandbox_api, "holds")
    records = RolloutRecords(sandbox_api)
    rollout_id = controller.record.id
    early = await records.ask(rollout_id, "run", wait=POLL * 4)
    assert early is not None and early.asked == (await records.request(rollout_id) or early).asked
    first = asyncio.create_task(controller.hold())
    assert await still_holding(first)
    resumed = await records.ask(rollout_id, "run")
    assert resumed is not None and resumed.state == "running"
    assert await asyncio.wait_for(first, POLL * 4) is True
    second = asyncio.create_task(controller.hold())
    stale = Request("run", "the same resume, clicked twice", first_hold := resumed.hold)
    await records.put_request(rollout_id, stale)
    assert await still_holding(second) and controller.record.hold == first_hold + 1
    await records.ask(rollout_id, "abort", wait=0)
    assert await asyncio.wait_for(second, POLL * 4) is False
    await controller.finish("aborted", None)


async def test_an_abort_is_final_and_ends_a_hold(sandbox_api: Any) -> None:
    """An abort asked as the rollout holds ends the hold; a resume asked after it does not
    take the abort back (the rollout would go on with integrations it gave up)."""
    controller = await opened(sandbox_api, "aborts")
    records = RolloutRecords(sandbox_api)
    holding = asyncio.create_task(controller.hold())
    await asyncio.sleep(POLL)
    await records.ask(controller.record.id, "abort", wait=0)
    assert await asyncio.wait_for(holding, POLL * 4) is False
    with pytest.raises(BadInput, match="was asked to abort"):
        await records.ask(controller.record.id, "run", wait=POLL * 4)
    assert controller.aborted
    await controller.finish("aborted", None)


async def test_a_request_made_while_no_command_ran_decides_the_next_run(
    sandbox_api: Any,
) -> None:
    """Operators see a request to a rollout nobody runs applied at once; run again, the
    command takes it up: a resume releases the hold, a pause holds, an abort ends that
    run at once (aborted) and the run after goes on; an ended rollout is asked nothing."""
    records = RolloutRecords(sandbox_api)
    first = await opened(sandbox_api, "restarts")
    rollout_id = first.record.id
    holding = asyncio.create_task(first.hold())
    await asyncio.sleep(POLL)
    await killed(sandbox_api, first)
    holding.cancel()
    seen = await records.ask(rollout_id, "run")
    assert seen is not None and seen.control == "run"
    second = await opened(sandbox_api, "restarts")
    assert second.record.control == "run"
    assert second._task is not None
    second._task.cancel()  # killed before it read the pause asked next
    await records.ask(rollout_id, "pause", wait=0)
    await killed(sandbox_api, second)
    third = await opened(sandbox_api, "restarts")
    assert third.record.control == "pause"
    await killed(sandbox_api, third)
    aborting = await records.ask(rollout_id, "abort")
    assert aborting is not None and (aborting.state, aborting.control) == ("paused", "abort")
    fourth = await opened(sandbox_api, "restarts")
    assert fourth.aborted  # the abort survives the command being killed and run again
    await fourth.finish("aborted", None)
    ended = await records.ask(rollout_id, "pause")
    assert ended is not None and ended.state == "aborted"
    fifth = await opened(sandbox_api, "restarts")
    assert fifth.record.control == "run" and fifth.record.hold == third.record.hold
    await fifth.finish("done", None)


async def test_ctrl_c_leaves_the_rollout_where_it_was_for_the_next_run(
    sandbox_api: Any,
) -> None:
    """A command stopped at a hold (Ctrl-C) writes no end: the record reads as run by no
    command, still holding, and the next run holds there until resumed."""
    records = RolloutRecords(sandbox_api)
    first = await opened(sandbox_api, "interrupts")
    holding = asyncio.create_task(first.hold())
    await asyncio.sleep(POLL)
    await first.leave()
    holding.cancel()
    left = await records.get(first.record.id)
    assert left is not None and left.abandoned and (left.state, left.hold) == ("paused", 1)
    again = await opened(sandbox_api, "interrupts")
    assert again.record.control == "pause" and again.record.hold == 1
    await again.finish("done", None)


async def test_a_rollout_reads_a_request_key_from_its_start(sandbox_api: Any) -> None:
    """A new rollout writes its request key (asked of nothing) as it begins: its polls read
    an answer, not a 404 every half second."""
    controller = await opened(sandbox_api, "polls")
    raw = await sandbox_api.get_state(control_key(controller.record.id))
    assert raw == {"control": "run", "asked": "", "hold": 0}
    await controller.finish("done", None)


async def test_the_pages_resume_releases_the_hold_the_page_showed(sandbox_api: Any) -> None:
    """The install page's buttons carry the hold the card showed: a Resume from a tab left
    open at an earlier hold does not release the one the rollout holds now."""
    from engine.fleet.operations import Rollouts
    from engine.ui._rollouts import rollouts_section

    controller = await opened(sandbox_api, "pages")
    holding = asyncio.create_task(controller.hold())
    assert await still_holding(holding)
    card = rollouts_section([controller.record], "csrf")
    assert f'name="hold" value="{controller.record.hold}"' in card
    stale = controller.record.hold - 1
    await Rollouts(sandbox_api).ask(controller.record.id, "run", hold=stale, wait=POLL * 3)
    assert await still_holding(holding)
    await Rollouts(sandbox_api).ask(controller.record.id, "run", hold=controller.record.hold)
    assert await asyncio.wait_for(holding, POLL * 4) is True
    await controller.finish("done", None)
