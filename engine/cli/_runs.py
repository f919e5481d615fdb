"""install, resume, uninstall, status, plan and diagram."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from engine.cli._answers import answers_for_resume, install_answering, read_answers
from engine.cli._app import app, fail, guard, load, open_extension, with_api, with_engine
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
from engine.cli._report import print_status, report_outcome, resumed, steps_done

InputFile = Annotated[
    Path | None,
    typer.Option(
        "--input-file",
        help="JSON object of answers for the fields a waiting step asks for (without it, on"
        " a terminal, resume asks for them itself, secret ones hidden).",
    ),
]

IntoIntegration = Annotated[
    str | None,
    typer.Option(
        "--integration", help="Install into this existing integration instead of creating one."
    ),
]
Atomic = Annotated[
    bool,
    typer.Option(
        "--atomic", help="On a failed step, undo the completed steps and delete the integration."
    ),
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Show the plan; change nothing.")]
PlanTarget = Annotated[
    str,
    typer.Argument(
        help="A connector directory (what install would do) or an integration id"
        " (what resume would do; --uninstall or --update for those).",
        metavar="CONNECTOR_DIR|ID",
    ),
]
ActionsJson = Annotated[bool, typer.Option("--json", help="Print the actions as a JSON array.")]
PlanUninstall = Annotated[
    bool, typer.Option("--uninstall", help="For an id: what uninstall would do.")
]
PlanUpdate = Annotated[
    bool, typer.Option("--update", help="For an id: what update to --connector would do.")
]

if TYPE_CHECKING:
    from engine.drivers.config import Settings
    from engine.drivers.runner import Engine
    from engine.run.plan import Intent
    from installers import Connector


@app.command(
    epilog=(
        "Examples:  smartconnector install examples/bigcommerce_netsuite   "
        "·   smartconnector install my_connector --atomic --json"
    ),
)
@common_options(RUN)
def install(
    settings: Settings,
    connector_dir: ConnectorDir,
    integration: IntoIntegration = None,
    atomic: Atomic = False,
    dry_run: DryRun = False,
    as_json: JsonOut = False,
    input_file: InputFile = None,
    verbose: Verbose = False,
) -> None:
    """Install a connector: create the integration, run every step.

    Prints the integration id as the last line (with --json: its status). A failed step
    leaves the integration resumable: fix the cause, then `smartconnector resume ID`.

    With --input-file, a step that stops to ask for answers gets them from the file and
    runs again at once, so an install that asks can run unattended.
    """
    given = read_answers(input_file) if input_file is not None else None
    connector = load(connector_dir)
    if dry_run:
        show_plan(connector, settings, as_json)
        return
    report_outcome(
        settings,
        lambda e: install_answering(e, connector, given, integration_id=integration, atomic=atomic),
        as_json,
        verbose,
        creates=True,
    )


@app.command(
    epilog=(
        "Examples:  smartconnector resume 6b0480442d82113bd629b566   ·   smartconnector"
        " resume 6b0480442d82113bd629b566 --input-file answers.json"
    ),
)
@common_options(RUN)
def resume(
    settings: Settings,
    integration_id: Annotated[str, typer.Argument(help="The integration to go on with.")],
    connector: ConnectorOpt = None,
    input_file: InputFile = None,
    as_json: JsonOut = False,
    verbose: Verbose = False,
) -> None:
    """Go on with an install, uninstall or update that stopped.

    The integration document says where: steps already done are not run again. A step that
    waited for a person runs again, now that they have acted, with the answers it asked for.
    """
    loaded = load(connector) if connector else None
    given = read_answers(input_file) if input_file is not None else None

    async def job(engine: Engine) -> dict[str, Any]:
        answers = await answers_for_resume(engine, integration_id, given)
        return await engine.resume(integration_id, loaded, input=answers)

    report_outcome(settings, job, as_json, verbose, said=resumed)


@app.command(
    epilog=("Example:  smartconnector uninstall 6b0480442d82113bd629b566 --connector my_connector"),
)
@common_options(RUN)
def uninstall(
    settings: Settings,
    integration_id: Annotated[str, typer.Argument(help="The integration to remove.")],
    connector: ConnectorOpt = None,
    verbose: Verbose = False,
) -> None:
    """Undo every completed step, in reverse order, then delete.

    Runs the connector's preUninstallFunction, each completed step's uninstallerFunction
    (last step first) and the connector's uninstallerFunction, then deletes the integration.
    """
    loaded = load(connector) if connector else None

    async def job(engine: Engine) -> dict[str, Any]:
        before = await engine.status(integration_id)
        await engine.uninstall(integration_id, loaded)
        return before

    def uninstalled(before: dict[str, Any]) -> str:
        done = steps_done(before).split("/")[0]
        undid = f"undid {done} step{'' if done == '1' else 's'}"
        return f"uninstalled {integration_id}: {undid} and deleted it"

    report_outcome(settings, job, False, verbose, said=uninstalled)


@app.command(
    epilog=("Example:  smartconnector status 6b0480442d82113bd629b566 --json"),
)
@common_options(API, RETRY, RATE)
def status(
    settings: Settings,
    integration_id: Annotated[str, typer.Argument(help="The integration to show.")],
    as_json: JsonOut = False,
) -> None:
    """Show an integration's mode, version, steps and what stopped it.

    Exit 6 if it does not exist (the message says where it looked).
    """
    from engine.run.views import read_view

    print_status(with_api(settings, lambda api: read_view(api, integration_id)), as_json)


def show_plan(connector: Connector, settings: Settings, as_json: bool = False) -> None:
    """Print what install would do: numbered calls, or the actions as a JSON array."""
    from engine.run.functions.resolve import resolve_functions
    from engine.run.plan import install_plan

    if settings.extension_url is not None:

        async def resolve() -> Connector:
            async with open_extension(settings) as extension:
                return await resolve_functions(connector, extension)

        import asyncio

        connector = guard(lambda: asyncio.run(resolve()))
    plan = guard(lambda: install_plan(connector))
    if as_json:
        typer.echo(json.dumps(plan.to_json()))
        return
    calls = plan.calls
    typer.echo(f"{plan.connector} {plan.version}: {len(calls)} function(s) to run")
    for i, call in enumerate(calls, 1):
        where = call.origin or "on the extension server"
        typer.echo(f"  {i}. {call.step or '(connector installer)'}: {call.function}  ({where})")
    typer.echo("  then the integration goes to mode settings")


@app.command(
    epilog=(
        "Examples:  smartconnector plan examples/bigcommerce_netsuite   ·   smartconnector"
        " plan 6b0480442d82113bd629b566 --uninstall --json"
    ),
)
@common_options(API, EXTENSION)
def plan(
    settings: Settings,
    target: PlanTarget,
    as_json: ActionsJson = False,
    uninstall: PlanUninstall = False,
    update: PlanUpdate = False,
    connector: ConnectorOpt = None,
) -> None:
    """Show what a run would do, changing nothing.

    For a connector directory, what install would do; for an integration id, what resume
    (or uninstall, or update) would do, from its document and run state.

    --json prints the actions in order, each with its function (null for an action that
    calls none, such as a mode change) and step (null for connector-level functions).

    With --extension-url, functions not defined in Python are expected on that server,
    which must answer its health check (the protocol cannot list functions).
    """
    if Path(target).is_dir() or (Path(target) / "connector.json").exists():
        show_plan(load(Path(target)), settings, as_json)
        return
    from engine.run.plan import Intent

    if uninstall and update:
        fail("give at most one of --uninstall or --update", 2)
    intent = Intent.UNINSTALL if uninstall else Intent.UPDATE if update else Intent.RESUME
    wanted = load(connector) if connector is not None else None
    actions = with_engine(settings, lambda e: e.plan_for(target, intent, wanted), creates=False)
    show_run_plan(intent, target, [a.to_json() for a in actions], as_json)


def show_run_plan(intent: Intent, target: str, shown: list[dict[str, Any]], as_json: bool) -> None:
    """Print what a run on an integration would do: numbered actions, or them as JSON."""
    if as_json:
        typer.echo(json.dumps(shown))
        return
    if all(a["action"] == "release" for a in shown):
        typer.echo(f"{intent.value} {target}: nothing to do")
        return
    calls = [a for a in shown if a["function"]]
    typer.echo(f"{intent.value} {target}: {len(calls)} function(s) to run")
    for i, action in enumerate(shown, 1):
        what = f"{action['step'] or '(connector)'}: {action['function']}"
        detail = what if action["function"] else action.get("to", "")
        typer.echo(f"  {i}. {action['action']} {detail}".rstrip())
