"""After install: `settings`, `update` and `rollout` to the install base."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from engine.cli._app import app, fail, load, read_json_file, with_engine
from engine.cli._options import (
    API,
    EXTENSION,
    RATE,
    RETRY,
    RUN,
    ConnectorDir,
    ConnectorOpt,
    JsonOut,
    Verbose,
    common_options,
)
from engine.cli._progress import summarise
from engine.cli._report import report_outcome

if TYPE_CHECKING:
    from engine.drivers.config import Settings
    from engine.drivers.runner import Engine
    from engine.fleet.rollout import RolloutReport
    from installers import Connector


@app.command(
    "settings",
    epilog=("Example:  smartconnector settings 6b0480442d82113bd629b566 --file settings.json"),
)
@common_options(API, EXTENSION, RETRY, RATE)
def settings_command(
    settings: Settings,
    integration_id: Annotated[str, typer.Argument(help="The installed integration.")],
    file: Annotated[Path, typer.Option("--file", help="JSON object: the new settings.")],
    connector: ConnectorOpt = None,
    verbose: Verbose = False,
) -> None:
    """Change an installed integration's settings.

    The connector's persistSettingsFunction (if it has one) receives them as `pending` and
    may return corrected ones; then they are written. Only in settings mode.
    """
    pending = read_json_file(file, "--file")
    if not isinstance(pending, dict):
        fail(f"--file: {file} must hold a JSON object of settings, not {type(pending).__name__}", 2)
    loaded = load(connector) if connector else None
    report_outcome(
        settings, lambda e: e.save_settings(integration_id, pending, loaded), False, verbose
    )


@app.command(
    epilog=("Example:  smartconnector update 6b0480442d82113bd629b566 --connector my_connector_v2"),
)
@common_options(RUN)
def update(
    settings: Settings,
    integration_id: Annotated[str, typer.Argument(help="The installed integration.")],
    connector: ConnectorOpt = None,
    allow_downgrade: Annotated[
        bool,
        typer.Option("--allow-downgrade", help="Allow going to an older version than installed."),
    ] = False,
    as_json: JsonOut = False,
    verbose: Verbose = False,
) -> None:
    """Update an integration to the connector's version.

    Sets updateInProgress, runs the connector's updateFunction and the installers of steps
    the new version adds, then records the version and clears the flag as the last act. An
    interrupted update shows updateInProgress: true; `resume` finishes it.
    """
    loaded = load(connector) if connector else None
    report_outcome(
        settings,
        lambda e: e.update(integration_id, loaded, allow_downgrade=allow_downgrade),
        as_json,
        verbose,
    )


def read_integration_ids(path: Path) -> list[str]:
    """A JSON array of ids, or one id per line (blank lines and # comments ignored)."""
    text = path.read_text() if path.exists() else None
    if text is None:
        fail(f"--integrations: {path} does not exist", 2)
    if text.lstrip().startswith("["):
        ids = read_json_file(path, "--integrations")
        if not all(isinstance(i, str) and i for i in ids):
            fail(f"--integrations: {path} must list integration ids as strings", 2)
        return list(ids)
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


AllIntegrations = Annotated[
    bool, typer.Option("--all", help="Every integration with the connector's _connectorId.")
]
IntegrationsFile = Annotated[
    Path | None,
    typer.Option("--integrations", help="File of integration ids (JSON array, or one per line)."),
]
Concurrency = Annotated[int, typer.Option(min=1, max=1000, help="Integrations updated at once.")]
Phase = Annotated[
    float | None,
    typer.Option(
        "--phase",
        min=0.1,
        max=100,
        help="Go in phases of PCT percent each, checking --max-failures between them.",
    ),
]
MaxFailures = Annotated[
    int | None,
    typer.Option("--max-failures", min=0, help="Stop after the phase in which failures exceed N."),
]
Pause = Annotated[
    bool, typer.Option("--pause", help="Hold after each phase until `rollouts resume ID`.")
]
Bake = Annotated[
    float | None,
    typer.Option(
        "--bake",
        metavar="SECONDS",
        min=0,
        help="After each phase wait SECONDS, then look at its integrations again: one no"
        " longer at the version, updating or in error counts as a failure.",
    ),
]
SummaryJson = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]


@app.command(
    epilog=(
        "Examples:  smartconnector rollout my_connector_v2 --all "
        "--concurrency 20   ·   smartconnector rollout my_connector_v2 "
        "--all --phase 10 --max-failures 3"
    ),
)
@common_options(RUN)
def rollout(
    settings: Settings,
    connector_dir: ConnectorDir,
    all_integrations: AllIntegrations = False,
    integrations: IntegrationsFile = None,
    concurrency: Concurrency = 10,
    phase: Phase = None,
    max_failures: MaxFailures = None,
    pause: Pause = False,
    bake: Bake = None,
    as_json: SummaryJson = False,
) -> None:
    """Update a connector's install base to its version.

    Many integrations at once, --concurrency at a time.

    Integrations already at the version are skipped, so running it again continues where
    it stopped. Exits 1 when any integration failed (the summary says why).
    """
    if all_integrations == (integrations is not None):
        fail("give exactly one of --all or --integrations FILE", 2)
    connector = load(connector_dir)
    ids = read_integration_ids(integrations) if integrations is not None else None
    waves = {"concurrency": concurrency, "phase_pct": phase, "max_failures": max_failures}
    waves |= {"pause": pause, "bake": bake}
    on_temporal = settings.engine == "temporal"

    async def job(engine: Engine) -> RolloutReport:
        return await _roll_out(engine, on_temporal, connector, ids, waves, as_json)

    report = with_engine(settings, job, creates=False)
    summarise(report, as_json)
    if report.aborted:
        typer.echo(f"aborted: rollout {report.rollout_id} was aborted", err=True)
        raise typer.Exit(1)
    if report.interrupted:
        raise typer.Exit(130)
    if report.failed or report.stopped:
        raise typer.Exit(1)


async def _roll_out(
    engine: Engine,
    on_temporal: bool,
    connector: Connector,
    ids: list[str] | None,
    waves: dict[str, Any],
    as_json: bool,
) -> RolloutReport:
    """The rollout, here or on Temporal, ``waves`` its concurrency, phases, pause and bake;
    its progress shown as it goes."""
    from engine.cli._progress import RolloutProgress
    from engine.fleet.rollout import rollout as run_rollout
    from engine.logs import fleet_events

    engine.observe = quiet  # a line per integration says more than one per step
    with fleet_gc(), fleet_events(), RolloutProgress(as_json) as progress:
        if on_temporal:
            return await _on_temporal(engine, connector, ids, waves, progress.show)
        return await run_rollout(
            engine,
            connector,
            ids,
            **waves,
            recorded=True,
            on_outcome=progress.note,
            on_phase=progress.phase_started,
            on_state=progress.state_changed,
        )


async def _on_temporal(
    engine: Engine,
    connector: Connector,
    ids: list[str] | None,
    waves: dict[str, Any],
    show: Callable[[dict[str, int]], None],
) -> RolloutReport:
    """The rollout as a Temporal workflow: started, or attached to if it runs or ran."""
    from collections import Counter

    from engine.fleet.rollout import Outcome, RolloutReport
    from engine.temporal._client import rollout_on_temporal

    state = await rollout_on_temporal(
        engine, connector, ids, **waves, on_progress=lambda now: show(now.counts)
    )
    report = RolloutReport(state.version, Counter(state.counts), stopped=state.stopped)
    report.aborted, report.rollout_id = state.aborted, state.rollout
    report.outcomes = [Outcome(f["_id"], "failed", f["reason"]) for f in state.failed]
    return report


@contextmanager
def fleet_gc() -> Iterator[None]:
    """Collect reference cycles less often while many runs are in flight.

    Thousands of concurrent runs keep a large heap alive, and every full collection scans
    all of it: with the default thresholds that halves throughput (see benchmarks/RESULTS.md).
    Cycles still get collected, later; the thresholds are restored afterwards.
    """
    before = gc.get_threshold()
    gc.set_threshold(50_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def quiet(event: str, step: str | None, function: str, seconds: float | None) -> None:
    """No line per step: a rollout shows one per integration."""
