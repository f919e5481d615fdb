"""``rollouts``: list the rollouts, and ``status|pause|resume|abort ID`` one of them, from any
terminal or machine, whichever executor runs it (Argo Rollouts' ``get|pause|promote|abort``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

from engine.cli._app import app, fail, guard, looked_in
from engine.cli._options import API, TEMPORAL, common_options

if TYPE_CHECKING:
    from engine.drivers.config import Settings
    from engine.fleet.operations import Rollouts
    from engine.fleet.record import Control, RolloutRecord

T = TypeVar("T")
#: Seconds between two looks at a rollout being followed.
FOLLOW_EVERY = 0.5

rollouts_app = typer.Typer(
    help="List rollouts; follow, pause, resume or abort one, from anywhere.",
    epilog="Examples:  smartconnector rollouts   ·   smartconnector rollouts pause ID",
)
app.add_typer(rollouts_app, name="rollouts")

RolloutId = Annotated[
    str, typer.Argument(help="The rollout's id, <_connectorId>-<version> (`rollouts` lists them).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON (once).")]


def with_rollouts(settings: Settings, job: Callable[[Rollouts], Awaitable[T]]) -> T:
    """Run ``job`` over the API's rollouts (and Temporal's, given its address); errors become
    their message and exit code. Makes no embedded sandbox where there is none."""
    import asyncio  # here, not at start-up: --help and usage errors never run a loop

    from engine.drivers.config import open_client
    from engine.fleet.operations import Rollouts

    async def main() -> T:
        temporal = None
        if settings.temporal_address:
            from engine.temporal._client import connect

            temporal = await connect(settings.temporal_address)
        async with guard(lambda: open_client(settings)) as api:
            return await job(Rollouts(api, temporal))

    return guard(lambda: asyncio.run(main()), looked_in(settings))


def _installed(settings: Settings) -> None:
    """Exit 6 where the embedded sandbox holds nothing: no rollout ever ran there."""
    if settings.embedded and not settings.sandbox_db.exists():
        fail(f"no rollouts: nothing was installed with home {settings.home.resolve()}", 6)


def _unknown(settings: Settings, rollout_id: str) -> NoReturn:
    from engine.fleet.record import rollout_key

    where = f"{looked_in(settings)}, State API key {rollout_key(rollout_id)}"
    if settings.temporal_address:
        where += f", and Temporal at {settings.temporal_address}"
    fail(f"no rollout {rollout_id}: looked in {where}", 6)


@rollouts_app.callback(invoke_without_command=True)
@common_options(API, TEMPORAL)
def rollouts(settings: Settings, as_json: AsJson = False) -> None:
    """List every rollout the API knows: id, state, phase i of n, and counts.

    States: running, paused, baking, done, aborted, failed. `rollouts status ID` shows one
    with its failures; `rollouts pause|resume|abort ID` act on it.
    """
    _installed(settings)
    found = with_rollouts(settings, lambda r: r.list())
    if as_json:
        typer.echo(json.dumps([r.summary() for r in found]))
        return
    if not found:
        typer.echo(f"no rollouts in {looked_in(settings)}")
        return
    width = max(len(r.id) for r in found)
    typer.echo(f"{'ID':<{width}}  STATE    PHASE    UPDATED  FAILED  SKIPPED  REMAINING")
    for r in found:
        typer.echo(
            f"{r.id:<{width}}  {r.state:<7}  {_phase(r):<7}  {r.updated:>7}  {r.failed:>6}"
            f"  {r.skipped:>7}  {r.remaining:>9}"
            + ("  (no command runs it)" if r.abandoned else "")
        )


@rollouts_app.command(
    "status", epilog="Example:  smartconnector rollouts status my-connector-2.0.0 --json"
)
@common_options(API, TEMPORAL)
def status(
    settings: Settings,
    rollout_id: RolloutId,
    as_json: AsJson = False,
    once: Annotated[bool, typer.Option("--once", help="Print it once, do not follow.")] = False,
) -> None:
    """Show one rollout with its failures, following it until it ends.

    On a terminal it is redrawn as it goes; otherwise one line is printed per change of
    state or phase. --once (or --json) prints it once.
    """
    _installed(settings)

    async def job(rollouts: Rollouts) -> None:
        record = await rollouts.get(rollout_id)
        if record is None:
            _unknown(settings, rollout_id)
        if as_json:
            typer.echo(json.dumps(record.status()))
        elif once:
            typer.echo(describe(record))
        elif sys.stdout.isatty():
            await _follow_live(rollouts, record)
        else:
            await _follow_lines(rollouts, record)

    with_rollouts(settings, job)


def _act(settings: Settings, control: Control, rollout_id: str, as_json: bool) -> None:
    _installed(settings)
    record = with_rollouts(settings, lambda r: r.ask(rollout_id, control))
    if record is None:
        _unknown(settings, rollout_id)
    if as_json:
        typer.echo(json.dumps(record.status()))
    else:
        typer.echo(_answer(record, control))


@rollouts_app.command("pause", epilog="Example:  smartconnector rollouts pause my-connector-2.0.0")
@common_options(API, TEMPORAL)
def pause(settings: Settings, rollout_id: RolloutId, as_json: AsJson = False) -> None:
    """Stop the rollout starting updates; those in flight finish. `resume` goes on."""
    _act(settings, "pause", rollout_id, as_json)


@rollouts_app.command(
    "resume", epilog="Example:  smartconnector rollouts resume my-connector-2.0.0"
)
@common_options(API, TEMPORAL)
def resume(settings: Settings, rollout_id: RolloutId, as_json: AsJson = False) -> None:
    """Go on: after a pause, or after a phase held by `rollout --pause` (the promotion)."""
    _act(settings, "run", rollout_id, as_json)


@rollouts_app.command("abort", epilog="Example:  smartconnector rollouts abort my-connector-2.0.0")
@common_options(API, TEMPORAL)
def abort(settings: Settings, rollout_id: RolloutId, as_json: AsJson = False) -> None:
    """End the rollout: updates in flight finish, the rest are left untouched.

    Its rollout command exits 1 saying it was aborted; running it again goes on.
    """
    _act(settings, "abort", rollout_id, as_json)


# -- what is printed -------------------------------------------------------------------------


def _phase(record: RolloutRecord) -> str:
    return f"{record.phase} of {record.phases}"


def counts(record: RolloutRecord) -> str:
    return (
        f"updated {record.updated}, failed {record.failed}, skipped {record.skipped},"
        f" remaining {record.remaining}"
    )


def _heard(record: RolloutRecord) -> str:
    if record.executor == "temporal":
        return "on Temporal"
    if not record.runner:
        return "local, no command runs it"
    runner = record.runner
    silent = record.silent_for()
    ago = f", last heard {silent:.0f} s ago" if silent is not None and not record.ended else ""
    return f"local, pid {runner.get('pid')} on {runner.get('host')}{ago}"


def next_step(record: RolloutRecord) -> str | None:
    """The one piece of advice that is true now."""
    if record.abandoned:
        then = {
            "pause": "it holds until `rollouts resume`",
            "abort": "it ends as aborted (asked while no command ran it); once more goes on",
        }.get(record.control, "it goes on")
        return f"no rollout command runs it now: run the same `rollout` command again: {then}"
    if record.state == "paused" or (record.state == "baking" and record.control == "pause"):
        held = "" if record.state == "paused" else "it holds once the bake is over; "
        return f"{held}`smartconnector rollouts resume {record.id}` to go on, or `abort` to end it"
    if record.state in ("running", "baking"):
        return f"`smartconnector rollouts pause {record.id}` to hold it, or `abort` to end it"
    if record.state in ("aborted", "failed"):
        return "run the same `rollout` command again to go on where it stopped"
    return None


def describe(record: RolloutRecord) -> str:
    """A rollout in a few lines: state, phase, counts, a bar per phase, its failures."""
    lines = [
        f"rollout {record.id}: {record.state}, phase {_phase(record)} ({_heard(record)})",
        f"  connector {record.name or record.connector} ({record.connector}),"
        f" version {record.version}",
        f"  {counts(record)}" + (f", {record.inFlight} in flight" if record.inFlight else ""),
    ]
    for number, wave in enumerate(record.waves, 1):
        done = wave.updated + wave.failed + wave.skipped
        filled = round(20 * done / wave.size) if wave.size else 20
        lines.append(f"  phase {number:<3} {'█' * filled}{'░' * (20 - filled)} {done}/{wave.size}")
    if record.stopped:
        lines.append(f"  stopped: {record.stopped}")
    if record.failures:
        lines.append("  failures:")
        lines += [f"    {f['_id']}: {f['error']}" for f in record.failures]
    advice = next_step(record)
    if advice:
        lines.append(f"  next: {advice}")
    return "\n".join(lines)


def _answer(record: RolloutRecord, control: str) -> str:
    """What ``pause|resume|abort`` did, in one line (and the advice that follows)."""
    from engine.fleet.record import acted_on

    asked = {"run": "resume", "pause": "pause", "abort": "abort"}[control]
    where = f"rollout {record.id}: {record.state}, phase {_phase(record)}, {counts(record)}"
    if record.abandoned:
        return f"{where}\n  {asked} recorded; {next_step(record)}"
    if record.ended and record.state != {"abort": "aborted"}.get(control):
        return f"{where}\n  it has ended: nothing to {asked}"
    if not acted_on(record, control):
        return f"{where}\n  {asked} requested; it has not acted on it yet"
    advice = next_step(record)
    return where + (f"\n  next: {advice}" if advice else "")


def _line(record: RolloutRecord) -> str:
    from engine.fleet.record import now_iso

    return f"{now_iso()} {record.id} {record.state} phase {_phase(record)}: {counts(record)}"


async def _follow_lines(rollouts: Rollouts, record: RolloutRecord) -> None:
    """One line per change of state or phase, until the rollout ends (or nothing runs it)."""
    import asyncio

    seen: tuple[str, int] | None = None
    while True:
        if (record.state, record.phase) != seen:
            seen = (record.state, record.phase)
            typer.echo(_line(record))
        if record.ended or record.abandoned:
            if record.abandoned:
                typer.echo(f"  {next_step(record)}")
            return
        await asyncio.sleep(FOLLOW_EVERY)
        record = await rollouts.get(record.id) or record


async def _follow_live(rollouts: Rollouts, record: RolloutRecord) -> None:
    """The rollout redrawn on the terminal as it goes, until it ends; Ctrl-C stops following."""
    import asyncio

    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    with Live(Text(describe(record)), console=Console(), refresh_per_second=4) as live:
        while not (record.ended or record.abandoned):
            await asyncio.sleep(FOLLOW_EVERY)
            record = await rollouts.get(record.id) or record
            live.update(Text(describe(record)))
