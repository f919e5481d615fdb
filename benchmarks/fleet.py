"""A fleet of in-flight integrations, the engine alone: memory and transitions per second."""

from __future__ import annotations

import asyncio
import contextlib
import time
import tracemalloc
from pathlib import Path
from typing import Any

from benchmarks._common import RecordingApi, Row, Sizes, replay


def fleet(sizes: Sizes) -> list[Row]:
    from engine.cli._fleet import fleet_gc

    memory = asyncio.run(_fleet_memory(sizes.fleet))
    rows = [
        Row(
            f"memory per in-flight integration ({sizes.fleet:,} at once, tracemalloc)",
            f"{memory / 1024:.1f} KB",
            "—",
            f"{memory / 1024:.1f} KB",
            "≤ 20 KB",
        )
    ]
    settings: list[tuple[str, contextlib.AbstractContextManager[None]]] = [
        ("default GC", contextlib.nullcontext()),
        ("GC as `rollout` sets it", fleet_gc()),
    ]
    for label, gc_setting in settings:
        with gc_setting:
            ours, baseline, transitions = asyncio.run(_fleet_speed(sizes.fleet, sizes.fleet_steps))
        alone = transitions / (ours - baseline)
        rows.append(
            Row(
                f"engine transitions/s, one core, fake API, {label} ({sizes.fleet:,} integrations"
                f" in flight x {sizes.fleet_steps + 1} transitions)",
                f"{transitions / ours:,.0f}/s counting the fake API's time",
                f"{transitions / baseline:,.0f}/s (the same calls replayed on the fake API)",
                f"engine alone {alone:,.0f}/s",
                "≥ 20,000/s",
            )
        )
    return rows


def _gated_connector(steps: int, gate: asyncio.Event | None) -> Any:
    from installers import Registry
    from installers.fakes import FakeConnector

    fake = FakeConnector(steps)
    registry = Registry("fleet")

    async def wait(ctx: Any) -> None:
        if gate is not None:
            await gate.wait()

    for function in fake.functions:
        registry.add(function, wait, origin="benchmark")
    fake.registry = registry
    return fake.connector()


async def _fleet_memory(count: int) -> float:
    from engine.drivers.runner import Engine
    from engine.run.journal import Journal
    from installers.fakes import MemoryApi

    gate = asyncio.Event()
    connector = _gated_connector(1, gate)
    engine = Engine(MemoryApi(), Journal(Path(":memory:")))  # type: ignore[arg-type]
    await engine.install(_gated_connector(1, None))  # warm caches and lazy imports
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tasks = [asyncio.create_task(engine.install(connector)) for _ in range(count)]
    while len(engine.known) < count + 1:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    in_flight = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    gate.set()
    await asyncio.gather(*tasks)
    return in_flight / count


async def _fleet_speed(count: int, steps: int) -> tuple[float, float, int]:
    from engine.drivers.runner import Engine
    from engine.run.journal import Journal
    from installers.fakes import MemoryApi

    api = RecordingApi()
    engine = Engine(api, Journal(Path(":memory:")))  # type: ignore[arg-type]
    connector = _gated_connector(steps, None)
    began = time.perf_counter()
    await asyncio.gather(*(engine.install(connector) for _ in range(count)))
    ours = time.perf_counter() - began
    transitions = count * (steps + 1)

    # the baseline: the very same creates and PATCHes, sent to the fake API with no engine
    bare = MemoryApi()
    began = time.perf_counter()
    await replay(bare, api.calls)
    baseline = time.perf_counter() - began
    assert bare._docs == api._docs, "the replay must end where the engine did"
    return ours, baseline, transitions


# -- 5. a rollout at the platform's rate limit ---------------------------------------------------
