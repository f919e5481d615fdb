"""A rollout as a Temporal workflow: it outlives the command that started it.

Its id comes from the connector and the version, so the same command run again attaches to
the running rollout, or reports the finished one (one that was aborted or stopped by its
failures starts again, going on where it stopped). Phases, ``--max-failures``, ``--pause``
and ``--bake`` are decided inside it. ``pause``, ``resume`` and ``abort`` are its signals,
``status`` its query (the record :mod:`engine.fleet.record` describes), so they survive
worker restarts and the command being killed; it also writes that record to the State API
(at most once a second, through the ``record`` activity), where ``rollouts`` finds it as it
finds local ones.

The integrations go to ``update_page`` activities (:mod:`._rollout_pages`), up to
:data:`PAGE_UPDATES` each: ``--concurrency`` is split into pages at once and updates at once
in each, and each page keeps to its part of the workers' request rate. A pause or an abort
cancels the pages running: each lets its updates in flight finish and hands back the rest,
which wait in the queue (or, aborted, stay untouched). A page costs Temporal a handful of
history events, where a child workflow per integration cost some 25; rollouts started
before pages still run (and replay) that way (:mod:`._rollout_children`).

Without a list, phases, a pause or a bake it reads the connector's integrations a page at a
time and hands on the documents it listed, so an update makes 2 + k requests as locally;
the next page is read once every integration of this one is handed to an update page, and a
long rollout continues as new between pages, so neither its memory nor its history grows
with the fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import engine.telemetry as telemetry  # the worker's own, not a copy in the sandbox
    from engine.fleet.rollout import failure_stop, waves
    from engine.temporal._rollout_children import ChildUpdates
    from engine.temporal._rollout_data import (
        PAGE,
        Look,
        Page,
        PageRequest,
        RolloutRequest,
        RolloutState,
        Targets,
        fresh_state,
        rollout_id,
    )
    from engine.temporal._rollout_paging import PageUpdates
    from engine.temporal._workflow import API_RETRY

ROLLOUT_WORKFLOW = "smartconnector.rollout"
#: The marker of a rollout that updates in pages; one whose history has none (it started on
#: a worker of before) goes on with a child workflow per integration.
UPDATE_PAGES = "update-pages"
#: Seconds between two writes of the rollout's record: at most one a second, and for a
#: change of counts alone one every 5 seconds (what ``rollouts`` shows without Temporal's
#: address; with it, the query answers live). The writes are activities, within the task
#: queue's rate like the updates' own.
RECORD_EVERY = 1.0
COUNTS_EVERY = 5.0
ACTIVITY_TIMEOUT = timedelta(minutes=2)


@workflow.defn(name=ROLLOUT_WORKFLOW)
class RolloutWorkflow(PageUpdates, ChildUpdates):
    @workflow.init
    def __init__(self, request: RolloutRequest) -> None:
        # made here, not in run: a signal that comes with the start must find it
        self.state = request.state or fresh_state(request)
        self.waiting = 0
        self.baking = False
        #: The record changed since it was written; ``urgent``: its state or phase did.
        self.dirty = True
        self.urgent = True
        self.finishing = False
        self._pages_for(request)
        self.in_pages = True

    @workflow.query
    def progress(self) -> RolloutState:
        return self.state

    @workflow.query
    def status(self) -> dict[str, Any]:
        """The rollout's record, as ``rollouts status ID --json`` and the State API have it."""
        return self.state.record().to_json()

    @workflow.signal
    def pause(self) -> None:
        self._control("pause")

    @workflow.signal
    def resume(self) -> None:
        self._control("run")

    @workflow.signal
    def abort(self) -> None:
        self._control("abort")

    def _control(self, control: str) -> None:
        if not self.state.done:
            self.state.control = control
            self._changed(urgent=True)

    @workflow.run
    async def run(self, request: RolloutRequest) -> RolloutState:
        self.in_pages = workflow.patched(UPDATE_PAGES)
        recorder = asyncio.ensure_future(self._keep_record())
        if request.integration_ids is None and request.phase_pct is None and not request.pause:
            if request.bake is None:
                await self._paged(request, recorder)
            else:
                await self._phased(request)
        else:
            await self._phased(request)
        self.state.done = True
        self.state.state = self._final_state()
        self.state.in_flight = 0
        self._report()
        await self._close_record(recorder)
        return self.state

    def _final_state(self) -> str:
        if self.state.control == "abort":
            return "aborted"
        return "failed" if self.state.stopped or self.state.counts["failed"] else "done"

    # -- the record ---------------------------------------------------------------------------

    def _changed(self, urgent: bool = False) -> None:
        self.dirty = True
        self._report()
        if self.state.done:
            return
        before = self.state.state
        self.state.state = self._live_state()
        self.urgent = self.urgent or urgent or self.state.state != before

    def _live_state(self) -> str:
        if self.baking:
            return "baking"
        if self.state.control == "pause" and self.state.in_flight == 0:
            return "paused"
        return "running"

    async def _keep_record(self) -> None:
        """Write the record when it changed: within RECORD_EVERY seconds of a change of
        state or phase, within COUNTS_EVERY of one of counts alone."""
        while True:
            await workflow.wait_condition(lambda: self.dirty or self.finishing)
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self.urgent or self.finishing, timeout=COUNTS_EVERY
                )
            if self.finishing:
                return
            self.dirty = self.urgent = False
            await self._write_record()
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(lambda: self.finishing, timeout=RECORD_EVERY)

    async def _close_record(self, recorder: asyncio.Future[None]) -> None:
        self.finishing = True
        await recorder
        await self._write_record()

    async def _write_record(self) -> None:
        await workflow.execute_activity(
            "smartconnector.record",
            self.state.record().to_json(),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=API_RETRY,
        )

    # -- what to update -----------------------------------------------------------------------

    async def _paged(self, request: RolloutRequest, recorder: asyncio.Future[None]) -> None:
        """Every integration of the connector, a page of the list at a time."""
        if not self.in_pages:
            await self._paged_children(request, recorder)
            return
        cursor = request.cursor
        self.state.phase = 1
        if not self.state.waves:
            self.state.waves = [{"size": 0, "updated": 0, "failed": 0, "skipped": 0}]
        while True:
            page: Page = await workflow.execute_activity(
                "smartconnector.page",
                PageRequest(request.connector_id, request.version, cursor),
                result_type=Page,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=API_RETRY,
            )
            self.state.counts["skipped"] += page.skipped
            self.state.remaining += len(page.docs)
            self.state.waves[0]["size"] += len(page.docs)
            self._queued(page.docs, last=page.next is None)
            self._changed()
            if page.next is None:
                break
            cursor = page.next
            await self._hand_out(request, settle=False)  # the next page is read meanwhile
            if self.state.control == "abort":
                break
            if workflow.info().is_continue_as_new_suggested():
                await self._hand_out(request, settle=True)
                if self.state.control == "abort":
                    break
                await self._close_record(recorder)
                workflow.continue_as_new(replace(request, cursor=cursor, state=self.state))
        await self._hand_out(request, settle=True)
        if self.state.control == "abort":
            self.state.stopped = self._abort_reason(None)

    async def _phased(self, request: RolloutRequest) -> None:
        """The listed integrations (or all), phase by phase, stopping when too many fail,
        baking and holding after each as asked."""
        targets: Targets = await workflow.execute_activity(
            "smartconnector.targets",
            request,
            result_type=Targets,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=API_RETRY,
        )
        self.state.counts["skipped"] = targets.skipped
        for missing in targets.missing:
            self._failed(missing, "not found")
        phases = waves(targets.ids, request.phase_pct)
        self.state.phases = len(phases)
        self.state.remaining = len(targets.ids)
        self.state.waves = [
            {"size": len(w), "updated": 0, "failed": 0, "skipped": 0} for w in phases
        ]
        gate = asyncio.Semaphore(request.concurrency)
        for number, wave in enumerate(phases, 1):
            self.state.phase = number
            self._changed(urgent=True)
            updated = await self._phase(request, wave, gate)
            if await self._after_phase(request, number, len(phases), updated):
                break

    async def _phase(
        self, request: RolloutRequest, wave: list[str], gate: asyncio.Semaphore
    ) -> list[str]:
        """The phase's updates; the ids it updated."""
        if not self.in_pages:
            return await self._phase_children(request, wave, gate)
        self.phase_updated = []
        self._queued(wave, last=True)
        await self._hand_out(request, settle=True)
        updated, self.phase_updated = self.phase_updated, None
        return updated

    async def _after_phase(
        self, request: RolloutRequest, number: int, phases: int, updated: list[str]
    ) -> bool:
        """Bake, count failures, hold: ``True`` when the rollout ends here."""
        if self.state.control == "abort":
            self.state.stopped = self._abort_reason(number)
            return True
        if request.bake is not None and updated:
            await self._bake(request, updated)
            if self.state.control == "abort":
                self.state.stopped = self._abort_reason(number)
                return True
        stop = failure_stop(self.state.counts["failed"], request.max_failures, number, phases)
        if stop is not None:
            self.state.stopped = stop
            self.state.counts["not attempted"] = self.state.remaining
            return True
        if request.pause and updated and number < phases:
            self.state.control = "pause"
            self._changed(urgent=True)
            await workflow.wait_condition(lambda: self.state.control != "pause")
            if self.state.control == "abort":
                self.state.stopped = self._abort_reason(number)
                return True
        return False

    def _abort_reason(self, number: int | None) -> str:
        self.state.counts["not attempted"] = self.state.remaining
        where = f" in phase {number}" if number is not None else ""
        return f"aborted{where} by `smartconnector rollouts abort {self.state.rollout}`"

    async def _bake(self, request: RolloutRequest, updated: list[str]) -> None:
        """Wait ``bake`` seconds (or until aborted), then look at ``updated`` again: one
        no longer healthy counts as a failure."""
        assert request.bake is not None
        self.baking = True
        self._changed()
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self.state.control == "abort", timeout=request.bake
            )
        self.baking = False
        self._changed()
        if self.state.control == "abort":
            return
        if self.in_pages:
            problems = await self._look_pages(request, updated)
        else:
            problems = await self._look_each(request, updated)
        for integration_id, problem in zip(updated, problems, strict=True):
            if problem:
                self.state.counts["updated"] -= 1
                self.state.waves[self.state.phase - 1]["updated"] -= 1
                self._failed(integration_id, problem)

    # -- counts -------------------------------------------------------------------------------

    def _wave(self) -> dict[str, int]:
        return self.state.waves[max(0, self.state.phase - 1)]

    def _failed(self, integration_id: str, reason: str) -> None:
        self.state.counts["failed"] = self.state.counts.get("failed", 0) + 1
        self.state.failed.append({"_id": integration_id, "reason": reason})
        if self.state.waves:
            self._wave()["failed"] += 1
        self._changed()

    def _report(self) -> None:
        """The counts, for the worker's ``/metrics`` (not again when a worker replays the
        history: what it shows then is what it showed)."""
        if not workflow.unsafe.is_replaying():
            telemetry.rollout_counts(workflow.info().workflow_id, self.state.counts)


__all__ = [
    "PAGE",
    "ROLLOUT_WORKFLOW",
    "Look",
    "Page",
    "PageRequest",
    "RolloutRequest",
    "RolloutState",
    "RolloutWorkflow",
    "Targets",
    "rollout_id",
]
