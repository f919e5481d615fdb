"""``rollouts`` for a rollout that runs on Temporal: its ``status`` query and its signals."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.service import RPCError

from engine.fleet.record import PREFIX, RolloutRecord

#: How long a query may wait for a worker to answer before the State API record is used.
ANSWER_WITHIN = timedelta(seconds=3)
SIGNALS = {"run": "resume", "pause": "pause", "abort": "abort"}


def workflow_of(rollout_id: str) -> str:
    """The rollout's workflow id (``smartconnector-rollout-<connector id>-<version>``)."""
    return PREFIX + rollout_id


async def running(client: Client, rollout_id: str) -> bool:
    """Whether the rollout's workflow is running now."""
    try:
        described = await client.get_workflow_handle(workflow_of(rollout_id)).describe(
            rpc_timeout=ANSWER_WITHIN
        )
    except RPCError:
        return False
    return described.status == WorkflowExecutionStatus.RUNNING


async def status(client: Client, rollout_id: str) -> RolloutRecord | None:
    """The running workflow's record, from its ``status`` query; ``None`` when it is not
    running or no worker answers in time."""
    if not await running(client, rollout_id):
        return None
    handle = client.get_workflow_handle(workflow_of(rollout_id))
    try:
        raw = await handle.query("status", rpc_timeout=ANSWER_WITHIN)
    except (RPCError, WorkflowQueryFailedError):
        return None
    return RolloutRecord.from_json(raw)


async def signal(client: Client, rollout_id: str, control: str) -> bool:
    """Send the signal for ``control`` (run: ``resume``); ``False`` when nothing runs it."""
    try:
        await client.get_workflow_handle(workflow_of(rollout_id)).signal(SIGNALS[control])
    except RPCError:
        return False
    return True
