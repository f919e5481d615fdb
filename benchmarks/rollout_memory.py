"""A rollout's memory as the fleet grows: it reads the list a page at a time, so its peak
should stay flat however many integrations the API holds.

The API is the sandbox in-process over httpx's ASGI transport, so the fleet's documents
live in SQLite, outside the Python heap that tracemalloc measures: what it sees is the
rollout's own working set (pages, documents in flight, runs, the report). The transport
is the embedded sandbox's (:func:`engine.client.in_process`): each request yields to the
loop, as over a network.
"""

from __future__ import annotations

import asyncio
import tempfile
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks._common import Row, Sizes

if TYPE_CHECKING:
    from engine.fleet.rollout import RolloutReport
    from sandbox import Store

CONCURRENCY = 10


def rollout_memory(sizes: Sizes) -> list[Row]:
    small, large = (1_000, 10_000) if sizes.fleet >= 10_000 else (100, 1_000)
    peaks = {n: asyncio.run(_peak(n)) for n in (small, large)}
    return [
        Row(
            f"rollout --all working set, concurrency {CONCURRENCY}, in-process sandbox paged"
            f" by 100 ({small:,} vs {large:,} integrations, tracemalloc peak)",
            f"{peaks[large] / 1024:,.0f} KB at {large:,}",
            f"{peaks[small] / 1024:,.0f} KB at {small:,}",
            f"{peaks[large] / peaks[small]:.2f}x for {large // small}x the fleet;"
            f" {peaks[large] / CONCURRENCY / 1024:.1f} KB per integration in flight",
            "flat in fleet size",
        )
    ]


def _not_recording(fake: Any) -> Any:
    """The fake's connector with plain functions: fakes keep every context they are called
    with (for tests to look at), which here would be the memory measured."""
    from installers import Registry

    registry = Registry("no-op")

    async def noop(ctx: Any) -> None:
        return None

    for function in fake.registry:
        registry.add(function.name, noop)
    fake.registry = registry
    return fake


async def _peak(count: int) -> float:
    from sandbox import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "fleet.db")
        _write_fleet(store, count)
        report, peak = await _traced_rollout(store, Path(tmp) / "j.db")
        store.close()
    assert report.counts()["updated"] == count, report.counts()
    return float(peak)


def _write_fleet(store: Store, count: int) -> None:
    """``count`` integrations of the fake connector's 1.0.0, written straight into the
    store: the fleet exists before the rollout starts."""
    from installers.fakes import FakeConnector

    v1 = FakeConnector(["a"], version="1.0.0", extra_functions=("updateFunction",))
    steps = [{**s.to_wire(), "completed": True} for s in v1.connector().manifest.install]
    for i in range(count):
        store.create(
            "integrations",
            {
                "name": f"i{i}",
                "_connectorId": "fake-connector",
                "version": "1.0.0",
                "mode": "settings",
                "install": steps,
                "updateInProgress": False,
            },
        )


async def _traced_rollout(store: Store, journal: Path) -> tuple[RolloutReport, int]:
    """A rollout of 2.0.0 over the in-process sandbox, and the peak of the memory it
    allocated (tracemalloc's, from the rollout's start)."""
    from engine.client import ApiClient, in_process
    from engine.drivers.runner import Engine
    from engine.fleet.rollout import rollout
    from engine.policy import RateLimit
    from engine.run.journal import Journal
    from installers.fakes import FakeConnector
    from sandbox import create_app

    transport = in_process(create_app(store, rate=1e9, burst=1e9, page_size=100))
    unlimited = RateLimit(rate=1e9, burst=1e9)
    async with ApiClient(
        "http://s/v1",
        store.create_token(["all.User"]),
        transport=transport,
        rate_limit=unlimited,
    ) as api:
        engine = Engine(api, Journal(journal))
        v2 = _not_recording(
            FakeConnector(["a"], version="2.0.0", extra_functions=("updateFunction",))
        )
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        report = await rollout(engine, v2.connector(), concurrency=CONCURRENCY)
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
    return report, peak
