"""How a rollout on Temporal updates its integrations: ``update_page`` activities
(:mod:`._rollout_pages`), fed from a queue.

At most ``slots`` pages run at once, each with ``in_page`` updates at once and
``1 / slots`` of the workers' request rate; none starts while the rollout is paused. A
pause or an abort cancels the pages running: each lets its updates in flight finish and
hands back the rest, which go back to the front of the queue.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, CancelledError

with workflow.unsafe.imports_passed_through():
    from engine.temporal._rollout_data import (
        PAGE_UPDATES,
        LookPage,
        PageDone,
        RolloutRequest,
        RolloutState,
        UpdatePage,
    )
    from engine.temporal._workflow import API_RETRY, FINAL, HEARTBEAT

ACTIVITY_TIMEOUT = timedelta(minutes=2)
#: A page's own limit is loose: its heartbeats tell a lost worker within HEARTBEAT, and each
#: function call ends at its own timeout.
PAGE_TIMEOUT = timedelta(hours=24)
#: A page that lost its worker is always tried again, going on from its last heartbeat.
PAGE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=0,
    non_retryable_error_types=[FINAL],
)

#: An integration waiting for an update page: its listed document, or its id.
Target = dict[str, Any] | str


class PageUpdates:
    """The rollout workflow's updates in pages (mixed into :class:`RolloutWorkflow`)."""

    state: RolloutState
    #: Integrations not yet handed to an update page, and the pages running.
    queue: deque[Target]
    pages: set[asyncio.Future[None]]
    #: The ids a phase updated, while a phase runs (for its bake).
    phase_updated: list[str] | None
    #: Integrations a page takes: PAGE_UPDATES, or fewer once the queue holds the last to
    #: update (of the rollout, or of the phase), split evenly between the pages at once so
    #: that none runs on alone at the end.
    page_size: int
    #: Updates at once in a page, and pages at once: ``--concurrency`` at most in all.
    in_page: int
    slots: int

    if TYPE_CHECKING:  # the rollout workflow's own

        def _changed(self, urgent: bool = False) -> None: ...
        def _failed(self, integration_id: str, reason: str) -> None: ...
        def _wave(self) -> dict[str, int]: ...

    def _pages_for(self, request: RolloutRequest) -> None:
        self.queue = deque()
        self.pages = set()
        self.phase_updated = None
        self.page_size = PAGE_UPDATES
        self.in_page = max(1, min(request.concurrency, PAGE_UPDATES))
        self.slots = max(1, request.concurrency // self.in_page)

    async def _hand_out(self, request: RolloutRequest, *, settle: bool) -> None:
        """Hand the queue to update pages, ``slots`` at once and none while paused, until it
        is empty or the rollout aborted; with ``settle``, until no page runs either."""

        def startable() -> bool:
            return bool(self.queue) and self.state.control == "run" and len(self.pages) < self.slots

        def handed_out() -> bool:
            if self.queue and self.state.control != "abort":
                return False
            return not (settle and self.pages)

        together, at = -1, workflow.now()  # pages started at the same moment, less one
        while True:
            await workflow.wait_condition(lambda: startable() or handed_out())
            if not startable():
                return
            targets = [self.queue.popleft() for _ in range(min(self.page_size, len(self.queue)))]
            together = together + 1 if workflow.now() == at else 0
            at = workflow.now()
            self.state.in_flight += len(targets)
            self._changed()
            task = asyncio.ensure_future(self._page(request, targets, together / self.slots))
            self.pages.add(task)
            task.add_done_callback(self.pages.discard)

    def _queued(self, targets: Sequence[Target], *, last: bool) -> None:
        """Queue ``targets``; ``last``: no more come before the queue is empty."""
        self.queue.extend(targets)
        self.page_size = PAGE_UPDATES
        if last:
            self.page_size = max(1, min(PAGE_UPDATES, -(-len(self.queue) // self.slots)))

    async def _page(self, request: RolloutRequest, targets: list[Target], offset: float) -> None:
        """One update page: cancelled when the rollout is paused or aborted (it then finishes
        the updates in flight and hands back the rest, put back in the queue)."""
        page = UpdatePage(
            workflow.info().workflow_id,
            request.connector_id,
            request.version,
            [t for t in targets if not isinstance(t, str)],
            [t for t in targets if isinstance(t, str)],
            concurrency=self.in_page,
            share=1 / self.slots,
            offset=offset % 1,
            lease_ttl=request.lease_ttl,
        )
        handle = workflow.start_activity(
            "smartconnector.update_page",
            page,
            result_type=PageDone,
            start_to_close_timeout=PAGE_TIMEOUT,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=PAGE_RETRY,
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        # conditions are checked once the activation's results are in: a page that ended
        # meanwhile is not cancelled, and what it did is not lost
        await workflow.wait_condition(lambda: handle.done() or self.state.control != "run")
        if not handle.done():
            handle.cancel()
        ids = [t if isinstance(t, str) else str(t["_id"]) for t in targets]
        try:
            done = await handle
        except ActivityError as exc:
            if isinstance(exc.cause, CancelledError):  # before it started, or between tries
                done = PageDone(left_ids=ids)  # read afresh: a try may have changed them
            else:
                reason = f"could not run: {exc.cause or exc}"
                done = PageDone(failed=[{"_id": i, "reason": reason} for i in ids])
        finally:
            self.state.in_flight -= len(targets)
        self._took(done)

    def _took(self, done: PageDone) -> None:
        """Count what a page did; put back in the queue what it did not start."""
        for integration_id in done.updated:
            self.state.counts["updated"] += 1
            self._wave()["updated"] += 1
            if self.phase_updated is not None:
                self.phase_updated.append(integration_id)
        for failure in done.failed:
            self._failed(failure["_id"], failure["reason"])
        self.state.remaining -= len(done.updated) + len(done.failed)
        self.queue.extendleft(reversed([*done.left_docs, *done.left_ids]))
        self._changed()

    async def _look_pages(self, request: RolloutRequest, updated: list[str]) -> list[str]:
        """What is wrong with each of ``updated`` after the bake ("" when nothing is), read
        a page at a time."""
        gate = asyncio.Semaphore(self.slots)

        async def look(ids: list[str]) -> list[str]:
            async with gate:
                problems: list[str] = await workflow.execute_activity(
                    "smartconnector.look_page",
                    LookPage(ids, request.version, self.in_page, 1 / self.slots),
                    result_type=list[str],
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    retry_policy=API_RETRY,
                )
                return problems

        pages = [updated[i : i + PAGE_UPDATES] for i in range(0, len(updated), PAGE_UPDATES)]
        return [p for found in await asyncio.gather(*(look(ids) for ids in pages)) for p in found]
