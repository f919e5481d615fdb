"""The client's rate limit: a leaky bucket that never goes over its rate, admitting in groups."""

from __future__ import annotations

import asyncio
import contextlib

from engine.bucket import TICK, LeakyBucket


async def admissions(bucket: LeakyBucket, count: int) -> list[tuple[float, int]]:
    """``count`` tasks acquiring at once: when each was admitted, and in which turn of the
    event loop (tasks admitted together resume in the same turn)."""
    loop = asyncio.get_running_loop()
    turn = 0

    async def turns() -> None:
        nonlocal turn
        while True:
            await asyncio.sleep(0)
            turn += 1

    async def one() -> tuple[float, int]:
        await bucket.acquire()
        return loop.time(), turn

    counter = asyncio.create_task(turns())
    try:
        return list(await asyncio.gather(*(one() for _ in range(count))))
    finally:
        counter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await counter


async def test_the_bucket_never_admits_more_than_its_capacity_and_rate() -> None:
    """Beyond the bucket's capacity, requests are admitted no faster than its rate."""
    bucket = LeakyBucket(capacity=5, rate=200)
    times = sorted(t for t, _ in await admissions(bucket, 45))
    # Admission times are read after each task resumes, so lateness only loosens this.
    assert len(times) <= 5 + 200 * (times[-1] - times[0]) + 1e-6
    assert times[-1] - times[0] >= 40 / 200 * 0.99


async def test_waiting_requests_are_admitted_in_groups() -> None:
    """Once the bucket is full, waiters go out a group at a time, not one per wake-up."""
    bucket = LeakyBucket(capacity=20, rate=300)
    assert bucket.batch == int(300 * TICK) > 1
    admitted = await admissions(bucket, 60)
    waited = [turn for _, turn in admitted[20:]]
    assert len(set(waited)) <= len(waited) / 2


async def test_a_lone_waiter_needs_only_one_drop() -> None:
    """At a rate too low to group, each waiter is admitted on its own drop."""
    bucket = LeakyBucket(capacity=1, rate=20)
    assert bucket.batch == 1
    times = sorted(t for t, _ in await admissions(bucket, 3))
    assert times[2] - times[0] >= 2 / 20 * 0.99


async def test_a_cancelled_waiter_leaves_its_place_to_the_next() -> None:
    """A task cancelled while it waits is never admitted, and the one behind it is."""
    bucket = LeakyBucket(capacity=1, rate=20)
    await bucket.acquire()
    gone = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.wait_for(bucket.acquire(), timeout=5)
    assert gone.cancelled()
