"""What a person watching a rollout sees: a line per integration, a live table of counts,
and at the end a summary that says what to fix before running it again."""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from engine.fleet.record import RolloutRecord
    from engine.fleet.rollout import Outcome, RolloutReport

COUNTED = ("updated", "skipped", "failed")


class RolloutProgress:
    """On a terminal, ``updated 3/5 · phase 1 of 3 · ID`` per integration, printed above a
    live table of counts (so log lines never cut through it); otherwise one log event per
    integration carrying the same facts."""

    def __init__(self, quiet: bool) -> None:
        self.live: Any = None
        self.counts: dict[str, int] = {}
        self.quiet = quiet or not sys.stderr.isatty()
        self.done = 0
        #: How many integrations in all (``None`` while paging through the fleet).
        self.total: int | None = None
        self.phase: tuple[int, int] | None = None

    def __enter__(self) -> RolloutProgress:
        if not self.quiet:
            from rich.console import Console
            from rich.live import Live

            self.live = Live(self._table(), console=Console(stderr=True), refresh_per_second=4)
            self.live.__enter__()  # from here sys.stderr writes print above the table
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def phase_started(self, number: int, phases: int, total: int) -> None:
        self.phase = (number, phases) if phases > 1 else None
        self.total = total
        if self.live is not None:
            self.live.update(self._table())

    def state_changed(self, record: RolloutRecord) -> None:
        """The rollout's state, as its record now says, and what an operator can do."""
        import structlog

        from engine.cli._rollouts import next_step

        phase = f"{record.phase} of {record.phases}" if record.phases > 1 else None
        advice = next_step(record)
        if self.live is not None:
            said = f"rollout {record.id}: {record.state}" + (f", phase {phase}" if phase else "")
            said += f" · {advice}" if advice else ""
            self.live.console.print(said, markup=False, highlight=False)
        structlog.get_logger("smartconnector.rollout").info(
            "rollout state", rollout=record.id, state=record.state, phase=phase, next=advice
        )

    def show(self, counts: dict[str, int]) -> None:
        """Counts from elsewhere (a rollout on Temporal), as they are now."""
        self.counts = dict(counts)
        if self.live is not None:
            self.live.update(self._table())

    def note(self, outcome: Outcome) -> None:
        """One integration's outcome: its line, and the table's counts."""
        import structlog

        self.done += 1
        self.counts[outcome.status] = self.counts.get(outcome.status, 0) + 1
        progress = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        phase = f"{self.phase[0]} of {self.phase[1]}" if self.phase else None
        if self.live is not None:
            self.live.console.print(line(outcome, progress, phase), markup=False, highlight=False)
            self.live.update(self._table())
        structlog.get_logger("smartconnector.rollout").info(
            "rollout outcome",
            integration_id=outcome.integration_id,
            status=outcome.status,
            reason=outcome.reason,
            progress=progress,
            phase=phase,
        )

    def _table(self) -> Any:
        from rich.table import Table

        title = "rollout" + (f" · phase {self.phase[0]} of {self.phase[1]}" if self.phase else "")
        table = Table(title=title)
        for status in COUNTED:
            table.add_column(status, justify="right")
        table.add_row(*(str(self.counts.get(s, 0)) for s in COUNTED))
        return table


def line(outcome: Outcome, progress: str, phase: str | None) -> str:
    """``updated 3/5 · phase 1 of 3 · 6b04…``, and why for one that failed."""
    parts = [f"{outcome.status} {progress}", *([f"phase {phase}"] if phase else [])]
    parts.append(outcome.integration_id)
    why = f": {outcome.reason}" if outcome.status == "failed" and outcome.reason else ""
    return " · ".join(parts) + why


def summarise(report: RolloutReport, as_json: bool) -> None:
    """The counts, each failure, and what to do about them."""
    counts = report.counts()
    if as_json:
        failed = [{"_id": o.integration_id, "reason": o.reason} for o in report.failed]
        typer.echo(
            json.dumps(
                {
                    "version": report.version,
                    "counts": counts,
                    "stopped": report.stopped,
                    "interrupted": report.interrupted,
                    "failed": failed,
                }
            )
        )
        return
    typer.echo(f"rollout to {report.version}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    for outcome in report.failed:
        typer.echo(f"  failed {outcome.integration_id}: {outcome.reason}")
    if report.stopped:
        typer.echo(f"  stopped: {report.stopped}")
    advice = what_to_fix(report)
    if advice:
        typer.echo(f"  then: {advice}")


def what_to_fix(report: RolloutReport) -> str | None:
    """The failures to fix before the same command runs again, most common first; running
    it again before that only repeats them."""
    failed = report.failed
    if not failed:
        return "run the same command again to go on" if report.stopped else None
    reasons = Counter(o.reason or "no reason given" for o in failed)
    shown = []
    for reason, count in reasons.most_common(3):
        ids = [o.integration_id for o in failed if (o.reason or "no reason given") == reason]
        which = ", ".join(ids[:3]) + (", …" if len(ids) > 3 else "")
        shown.append(f"{reason} ({count} integration{'s' if count > 1 else ''}: {which})")
    more = f"; and {len(reasons) - 3} other errors" if len(reasons) > 3 else ""
    rest = counts_left(report)
    return (
        f"fix these failures first: {'; '.join(shown)}{more}."
        f" `smartconnector status ID` shows where each stopped. Then run the same command"
        f" again: it skips those already at {report.version}{rest}"
    )


def counts_left(report: RolloutReport) -> str:
    left = report.counts()["not attempted"] + report.counts()["interrupted"]
    return f" and goes on with the {left} not reached" if left else ""
