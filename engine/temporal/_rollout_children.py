"""How a rollout on Temporal updated its integrations before update pages: a child
:class:`IntegrationWorkflow` each, and a ``look`` activity each after a bake.

A rollout that started so replays so (its history holds no ``update-pages`` marker, see
:mod:`._rollout`), on any worker: these are the rollout workflow's methods of that time,
unchanged, and none of them may change while such a rollout can still be running.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from engine.temporal._rollout_data import Look, Page, PageRequest, RolloutRequest, RolloutState
    from engine.temporal._workflow import (
        API_RETRY,
        WORKFLOW_NAME,
        RunRequest,
        RunResult,
        run_failure,
    )

ACTIVITY_TIMEOUT = timedelta(minutes=2)


class ChildUpdates:
    """The rollout workflow's updates as children (mixed into :class:`RolloutWorkflow`)."""

    state: RolloutState
    #: Integrations of the pages read that have not started yet.
    waiting: int

    if TYPE_CHECKING:  # the rollout workflow's own

        def _changed(self, urgent: bool = False) -> None: ...
        def _failed(self, integration_id: str, reason: str) -> None: ...
        def _wave(self) -> dict[str, int]: ...
        def _abort_reason(self, number: int | None) -> str: ...
        async def _close_record(self, recorder: asyncio.Future[None]) -> None: ...

    async def _paged_children(
        self, request: RolloutRequest, recorder: asyncio.Future[None]
    ) -> None:
        """Every integration of the connector, a page at a time, ``concurrency`` at once."""
        gate = asyncio.Semaphore(request.concurrency)
        running: set[asyncio.Task[bool]] = set()
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
            self._changed()
            for doc in page.docs:
                task = asyncio.ensure_future(self._one(request, str(doc["_id"]), gate, doc))
                running.add(task)
                task.add_done_callback(running.discard)
            if page.next is None or self.state.control == "abort":
                break
            cursor = page.next
            await workflow.wait_condition(lambda: self.waiting == 0)
            if workflow.info().is_continue_as_new_suggested():
                await asyncio.gather(*running)
                await self._close_record(recorder)
                workflow.continue_as_new(replace(request, cursor=cursor, state=self.state))
        await asyncio.gather(*running)
        if self.state.control == "abort":
            self.state.stopped = self._abort_reason(None)

    async def _phase_children(
        self, request: RolloutRequest, wave: list[str], gate: asyncio.Semaphore
    ) -> list[str]:
        """The phase's updates; the ids it updated."""
        outcomes = await asyncio.gather(*(self._one(request, i, gate) for i in wave))
        return [i for i, ok in zip(wave, outcomes, strict=True) if ok]

    async def _look_each(self, request: RolloutRequest, updated: list[str]) -> list[str]:
        """What is wrong with each of ``updated`` after the bake ("" when nothing is)."""
        gate = asyncio.Semaphore(request.concurrency)

        async def look(integration_id: str) -> str:
            async with gate:  # "": healthy
                problem: str = await workflow.execute_activity(
                    "smartconnector.look",
                    Look(integration_id, request.version),
                    result_type=str,
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    retry_policy=API_RETRY,
                )
                return problem

        return list(await asyncio.gather(*(look(i) for i in updated)))

    async def _one(
        self,
        request: RolloutRequest,
        integration_id: str,
        gate: asyncio.Semaphore,
        doc: dict[str, Any] | None = None,
    ) -> bool:
        """One integration's update, once the rollout is not paused; ``False`` when it
        failed or was not started (aborted)."""
        self.waiting += 1
        async with gate:
            self.waiting -= 1
            await workflow.wait_condition(lambda: self.state.control != "pause")
            if self.state.control == "abort":
                return False
            self.state.in_flight += 1
            self._changed()
            try:
                return await self._child(request, integration_id, doc)
            finally:
                self.state.in_flight -= 1
                self.state.remaining -= 1
                self._changed()

    async def _child(
        self, request: RolloutRequest, integration_id: str, doc: dict[str, Any] | None
    ) -> bool:
        run = RunRequest(
            "update",
            integration_id,
            request.connector_id,
            str(workflow.uuid4())[:16],
            request.lease_ttl,
            request.version,
            doc,
        )
        try:
            await workflow.execute_child_workflow(
                WORKFLOW_NAME,
                run,
                id=f"smartconnector-{integration_id}",
                result_type=RunResult,
            )
        except (ChildWorkflowError, WorkflowAlreadyStartedError) as exc:
            failure = run_failure(exc)
            reason = str(failure.get("message")) if failure else f"could not run: {exc}"
            self._failed(integration_id, reason)
            return False
        self.state.counts["updated"] += 1
        self._wave()["updated"] += 1
        return True
