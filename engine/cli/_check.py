"""``check``: crash-test a connector's own functions, and say what to do about them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from engine.cli._app import app, guard, load
from engine.cli._options import ConnectorDir, LogFormat

if TYPE_CHECKING:
    from rich.table import Table

    from engine.check import Report


ReportJson = Annotated[
    bool, typer.Option("--json", help='Print {"ok", "functions": [...], "leaks": [...]}.')
]
AnswersFile = Annotated[
    Path | None,
    typer.Option(
        "--input-file",
        help="JSON object of answers for the fields the connector's waiting steps ask for.",
    ),
]


@app.command(
    "check",
    epilog=(
        "Examples:  smartconnector check examples/bigcommerce_netsuite   ·   smartconnector"
        " check my_connector --json --input-file answers.json"
    ),
)
def check_command(
    connector_dir: ConnectorDir,
    as_json: ReportJson = False,
    input_file: AnswersFile = None,
    log_format: LogFormat = None,
) -> None:
    """Crash-test a connector's own functions, on throwaway sandboxes.

    For every function an install and an uninstall call, a run in which the process dies
    right after that function returns (before its success is recorded), then is resumed:
    running the function again must make nothing twice and must not fail. Then whether
    the uninstall leaves anything the install made.

    Works in a temporary home on sandboxes of its own: never $SMARTCONNECTOR_HOME or
    --api-url. Exit 0 when every function is safe to run again and nothing leaks, 1
    otherwise, 2 for a connector that does not load.
    """
    import asyncio
    import logging

    from engine import logs
    from engine.check import check_connector
    from engine.cli._answers import read_answers

    # Every function runs once per crashed run: its log lines would say nothing new.
    logs.configure(log_format, level=logging.ERROR)
    answers = read_answers(input_file) if input_file is not None else None
    load(connector_dir)  # a connector that does not load: exit 2, as every command says it
    report = guard(lambda: asyncio.run(check_connector(connector_dir, input=answers)))
    if as_json:
        typer.echo(json.dumps(report.to_json()))
    else:
        show_report(report)
    raise typer.Exit(0 if report.ok else 1)


VERDICTS = {True: "[green]safe[/]", False: "[bold red]unsafe[/]", None: "[yellow]not reached[/]"}


def show_report(report: Report) -> None:
    """The verdicts as a table, the leaks, then one line of what to do."""
    from rich.console import Console

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    console.print(
        f"[bold]{report.connector}[/] {report.version}: each function's success lost once"
        f" in a crash, then resumed [dim]({report.seconds:.1f} s)[/]",
        soft_wrap=True,
    )
    console.print(_table(report))
    if report.leaks:
        console.print(f"[bold red]{len(report.leaks)} left after uninstall[/] (made by install):")
        for leak in report.leaks:
            what = leak.resource
            console.print(
                f"  {what.resource} {what.name!r} ({what.id}), made by step"
                f" {leak.step or '(connector)'!r}"
            )
    else:
        console.print("Uninstall left nothing the install made.")
    console.print(advice(report), soft_wrap=True)


def _table(report: Report) -> Table:
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("function", "step", "phase", "verdict", "problem"):
        table.add_column(column, overflow="fold")
    for verdict in report.verdicts:
        call = verdict.call
        table.add_row(
            call.function,
            call.step or "(connector)",
            call.phase,
            VERDICTS[verdict.rerun_safe],
            verdict.problem or "",
        )
    return table


def advice(report: Report) -> str:
    """One line: what to change in the connector, what to give to check the rest, or that
    nothing needs changing."""
    if report.ok:
        return "[green]Safe to resume:[/] every function can run again after a crash."
    todo = _fixes(report)
    said = ["To fix: " + "; ".join(todo) + "."] if todo else []
    waiting = report.waiting
    if waiting is not None and any(v.rerun_safe is None for v in report.verdicts):
        asked = ", ".join(waiting.asked) or "nothing"
        step = waiting.call.step if waiting.call else None
        said.append(
            f"To check the rest: step {step or '(connector)'!r} waits for a person (asks for:"
            f" {asked}); give the answers with --input-file answers.json."
        )
    return " ".join(said) or "Some functions were not reached."


def _fixes(report: Report) -> list[str]:
    unsafe = {v.call.phase for v in report.verdicts if v.rerun_safe is False and not v.first_run}
    todo = []
    if any(v.first_run for v in report.verdicts):
        todo.append("make the function that fails on its first run work (its problem says where)")
    if "install" in unsafe:
        todo.append(
            "look for what an earlier try made before making it (tag it with"
            " ctx.idempotency_key, e.g. as sourceKey, and list by it)"
        )
    if "uninstall" in unsafe:
        todo.append("treat a resource that is already gone as deleted (catch NotFound)")
    if report.leaks:
        todo.append("delete what each step made in its uninstallerFunction")
    return todo
