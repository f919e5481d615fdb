"""Operating rollouts from anywhere: what ``rollouts``, ``rollouts status|pause|resume|abort
ID`` and the install page's ``/rollouts`` do, whichever executor runs the rollout.

A local rollout's record in the State API (:mod:`engine.fleet.record`) is where it says
where it is; an operator's request goes under a key of its own beside it. On Temporal the
requests are the rollout workflow's signals and where it is its ``status`` query; the
workflow also writes the same record, so one list shows both, and a rollout is found even
where Temporal is not reachable.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from engine.client import ApiClient
from engine.errors import BadInput
from engine.fleet.record import Control, RolloutRecord, RolloutRecords, acted_on

if TYPE_CHECKING:
    from temporalio.client import Client

#: Seconds a request waits to see the rollout act on it.
ACT_WITHIN = 3.0
VERBS = {"run": "resume", "pause": "pause", "abort": "abort"}


class Rollouts:
    """The rollouts one API knows (and Temporal runs, given a client), and requests of them."""

    def __init__(self, api: ApiClient, temporal: Client | None = None) -> None:
        self.records = RolloutRecords(api)
        self.temporal = temporal

    async def list(self) -> list[RolloutRecord]:
        """Every rollout with a record, as it is now (Temporal's from their query)."""
        found = await self.records.all()
        fresh = await asyncio.gather(*(self._live(r.id, r) for r in found))
        return [r for r in fresh if r is not None]

    async def get(self, rollout_id: str) -> RolloutRecord | None:
        """The rollout as it is now; ``None`` when there is no such rollout."""
        return await self._live(rollout_id, await self.records.get(rollout_id))

    async def _live(self, rollout_id: str, record: RolloutRecord | None) -> RolloutRecord | None:
        if self.temporal is None or (record is not None and record.executor != "temporal"):
            return record
        from engine.fleet import on_temporal

        return await on_temporal.status(self.temporal, rollout_id) or record

    async def ask(
        self,
        rollout_id: str,
        control: Control,
        *,
        wait: float = ACT_WITHIN,
        hold: int | None = None,
    ) -> RolloutRecord | None:
        """Ask the rollout to go on (``run``), ``pause`` or ``abort``, and wait (up to
        ``wait`` seconds) to see it do so; the rollout as it then is, or ``None`` when there
        is no such rollout. A local rollout's resume releases ``hold`` (the one its operator
        saw; default: the one it holds now)."""
        record = await self.get(rollout_id)
        if record is None or record.executor != "temporal":
            return await self.records.ask(rollout_id, control, wait=wait, hold=hold)
        if self.temporal is None:
            raise BadInput(
                f"rollout {rollout_id} runs on Temporal: give --temporal-address HOST:PORT"
                f" (or SMARTCONNECTOR_TEMPORAL_ADDRESS) to {VERBS[control]} it",
                field="--temporal-address",
            )
        from engine.fleet import on_temporal

        if not await on_temporal.signal(self.temporal, rollout_id, control):
            return record  # its workflow has ended
        deadline = time.monotonic() + wait
        while True:
            now = await self.get(rollout_id)
            if now is None or acted_on(now, control) or time.monotonic() >= deadline:
                return now
            await asyncio.sleep(0.2)
