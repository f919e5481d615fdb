"""A rollout on Temporal replays on this worker whichever way it was started: with a child
workflow per integration (histories recorded with the code of before update pages), or in
update pages. A worker that cannot replay a rollout's history cannot go on with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from engine.temporal._rollout import RolloutWorkflow
from engine.temporal._workflow import IntegrationWorkflow

HISTORIES = Path(__file__).parent / "histories"


@pytest.mark.parametrize("name", sorted(p.stem for p in HISTORIES.glob("rollout-*.json")), ids=str)
async def test_a_recorded_rollout_replays(name: str) -> None:
    """The recorded rollout (all at once, phases with a bake, or held after a phase and
    signalled) replays without a nondeterminism error; those of before pages replay their
    children, as they ran."""
    text = (HISTORIES / f"{name}.json").read_text()
    history = WorkflowHistory.from_json(f"smartconnector-rollout-{name}", text)
    children = "START_CHILD_WORKFLOW_EXECUTION" in text
    assert children == name.startswith("rollout-children-")
    replayer = Replayer(workflows=[RolloutWorkflow, IntegrationWorkflow])
    await replayer.replay_workflow(history)
