"""The benchmarks still run: a smoke test at tiny sizes (figures are not checked here)."""

from __future__ import annotations

import asyncio

import pytest

from benchmarks import _common, overhead, requests, rollout, startup

TINY = _common.Sizes(
    overhead_steps=3, repeats=1, request_steps=(1, 4), fleet=10, fleet_steps=2, rollout=3
)


@pytest.mark.slow
def test_overhead_benchmark_runs_against_a_real_server() -> None:
    rows = overhead.overhead(TINY)
    assert rows[0].target == "ratio ≤ 1.10"
    assert rows[0].result.startswith("ratio ")
    assert len(rows) == 6


def test_request_counts_are_n_plus_2_on_the_sandbox_and_at_most_n_plus_6_elsewhere() -> None:
    """The request-count rows: exact on the sandbox, within N + 6 on the platform's ways."""
    rows = asyncio.run(requests.requests(TINY))
    assert [(r.ours, r.result) for r in rows] == [
        ("3", "within"),
        ("6", "within"),
        ("8", "within"),  # 5 steps and a connector installer: N + 3
        ("6", "within"),
        ("9", "within"),
        ("11", "within"),  # N + 6
        ("6", "within"),
        ("9", "within"),
        ("11", "within"),
    ]


def test_a_rollout_within_the_bucket_still_reports() -> None:
    """A fleet small enough to fit in the bucket (as with --quick) has no ideal time to
    divide by: each concurrency's row says so instead of failing; the CPU row follows."""
    *timed, cpu = rollout.rollout_rate(TINY)
    assert len(timed) == len(rollout.CONCURRENCY)
    for row in timed:
        assert row.result == "all within the bucket of 1,000: no sustained rate to measure"
        assert "3 updated, 0 failed; 0 answered 429" in row.ours
    assert cpu.result.endswith("an update beyond start-up")


def test_startup_rows_set_each_command_beside_the_fastapi_path() -> None:
    """`--help` beside a bare interpreter, and each everyday command beside the same
    command with the embedded sandbox served by FastAPI's app."""
    rows = startup.startup(TINY)
    assert [r.benchmark for r in rows] == [
        "`smartconnector --help`",
        *(f"`smartconnector {c}` (embedded sandbox)" for c in startup.EVERYDAY),
    ]
    assert all("FastAPI" in r.baseline for r in rows[1:])
