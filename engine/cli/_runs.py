"""install, resume, uninstall, status, plan and diagram."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from engine.cli._answers import answers_for_resume, install_answering, read_answers
from engine.cli._app import (
    DEFAULT_HOME,
    ApiBurst,
    ApiRate,
    ApiUrl,
    ConnectorDir,
    ConnectorOpt,
    EngineOpt,
    ExtensionUrl,
    Home,
    JsonOut,
    LogFormat,
    RetryBudget,
    StepRetries,
    StepTimeout,
    TaskQueue,
    TemporalAddress,
    TokenFile,
    Verbose,
    app,
    fail,
    guard,
    load,
    open_extension,
    settings_from,
    with_engine,
)
from engine.cli._report import print_status, report_outcome, resumed, steps_done
from engine.defaults import API_BURST, API_RATE, RETRY_BUDGET

InputFile = Annotated[
    Path | None,
    typer.Option(
        "--input-file",
        help="JSON object of answers for the fields a waiting step asks for (without it, on"
        " a terminal, resume asks for them itself, secret ones hidden).",
    ),
]

if TYPE_CHECKING:
    from engine.config import Settings
    from engine.runner import Engine
    from installers import Connector


@app.command(
    epilog=(
        "Examples:  smartconnector install examples/bigcommerce_netsuite   "
        "·   smartconnector install my_connector --atomic --json"
    ),
)
def install(
    connector_dir: ConnectorDir,
    integration: Annotated[
        str | None,
        typer.Option(
            "--integration", help="Install into this existing integration instead of creating one."
        ),
    ] = None,
    atomic: Annotated[
        bool,
        typer.Option(
            "--atomic",
            help="On a failed step, undo the completed steps and delete the integration.",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan; change nothing.")
    ] = False,
    as_json: JsonOut = False,
    input_file: InputFile = None,
    verbose: Verbose = False,
    step_timeout: StepTimeout = None,
    step_retries: StepRetries = 0,
    api_url: ApiUrl = None,
    extension_url: ExtensionUrl = None,
    engine: EngineOpt = "local",
    temporal_address: TemporalAddress = None,
    task_queue: TaskQueue = "smartconnector",
    retry_budget: RetryBudget = RETRY_BUDGET,
    api_rate: ApiRate = API_RATE,
    api_burst: ApiBurst = API_BURST,
    token_file: TokenFile = None,
    home: Home = DEFAULT_HOME,
    log_format: LogFormat = None,
) -> None:
    """Install a connector: create the integration, run every step.

    Prints the integration id as the last line (with --json: its status). A failed step
    leaves the integration resumable: fix the cause, then `smartconnector resume ID`.

    With --input-file, a step that stops to ask for answers gets them from the file and
    runs again at once, so an install that asks can run unattended.
    """
    settings = settings_from(locals())
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
def resume(
    integration_id: Annotated[str, typer.Argument(help="The integration to go on with.")],
    connector: ConnectorOpt = None,
    input_file: InputFile = None,
    as_json: JsonOut = False,
    verbose: Verbose = False,
    step_timeout: StepTimeout = None,
    step_retries: StepRetries = 0,
    api_url: ApiUrl = None,
    extension_url: ExtensionUrl = None,
    engine: EngineOpt = "local",
    temporal_address: TemporalAddress = None,
    task_queue: TaskQueue = "smartconnector",
    retry_budget: RetryBudget = RETRY_BUDGET,
    api_rate: ApiRate = API_RATE,
    api_burst: ApiBurst = API_BURST,
    token_file: TokenFile = None,
    home: Home = DEFAULT_HOME,
    log_format: LogFormat = None,
) -> None:
    """Go on with an install, uninstall or update that stopped.

    The integration document says where: steps already done are not run again. A step that
    waited for a person runs again, now that they have acted, with the answers it asked for.
    """
    settings = settings_from(locals())
    loaded = load(connector) if connector else None
    given = read_answers(input_file) if input_file is not None else None

    async def job(engine: Engine) -> dict[str, Any]:
        answers = await answers_for_resume(engine, integration_id, given)
        return await engine.resume(integration_id, loaded, input=answers)

    report_outcome(settings, job, as_json, verbose, said=resumed)


@app.command(
    epilog=("Example:  smartconnector uninstall 6b0480442d82113bd629b566 --connector my_connector"),
)
def uninstall(
    integration_id: Annotated[str, typer.Argument(help="The integration to remove.")],
    connector: ConnectorOpt = None,
    verbose: Verbose = False,
    step_timeout: StepTimeout = None,
    step_retries: StepRetries = 0,
    api_url: ApiUrl = None,
    extension_url: ExtensionUrl = None,
    engine: EngineOpt = "local",
    temporal_address: TemporalAddress = None,
    task_queue: TaskQueue = "smartconnector",
    retry_budget: RetryBudget = RETRY_BUDGET,
    api_rate: ApiRate = API_RATE,
    api_burst: ApiBurst = API_BURST,
    token_file: TokenFile = None,
    home: Home = DEFAULT_HOME,
    log_format: LogFormat = None,
) -> None:
    """Undo every completed step, in reverse order, then delete.

    Runs the connector's preUninstallFunction, each completed step's uninstallerFunction
    (last step first) and the connector's uninstallerFunction, then deletes the integration.
    """
    settings = settings_from(locals())
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
def status(
    integration_id: Annotated[str, typer.Argument(help="The integration to show.")],
    as_json: JsonOut = False,
    api_url: ApiUrl = None,
    retry_budget: RetryBudget = RETRY_BUDGET,
    api_rate: ApiRate = API_RATE,
    api_burst: ApiBurst = API_BURST,
    token_file: TokenFile = None,
    home: Home = DEFAULT_HOME,
    log_format: LogFormat = None,
) -> None:
    """Show an integration's mode, version, steps and what stopped it.

    Exit 6 if it does not exist (the message says where it looked).
    """
    settings = settings_from(locals())
    doc = with_engine(settings, lambda e: e.status(integration_id), creates=False)
    print_status(doc, as_json)


def show_plan(connector: Connector, settings: Settings, as_json: bool = False) -> None:
    """Print what install would do: numbered calls, or the actions as a JSON array."""
    from engine.functions import resolve_functions
    from engine.plan import install_plan

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
def plan(
    target: Annotated[
        str,
        typer.Argument(
            help="A connector directory (what install would do) or an integration id"
            " (what resume would do; --uninstall or --update for those).",
            metavar="CONNECTOR_DIR|ID",
        ),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the actions as a JSON array.")
    ] = False,
    uninstall: Annotated[
        bool, typer.Option("--uninstall", help="For an id: what uninstall would do.")
    ] = False,
    update: Annotated[
        bool, typer.Option("--update", help="For an id: what update to --connector would do.")
    ] = False,
    connector: ConnectorOpt = None,
    api_url: ApiUrl = None,
    token_file: TokenFile = None,
    home: Home = DEFAULT_HOME,
    extension_url: ExtensionUrl = None,
    log_format: LogFormat = None,
) -> None:
    """Show what a run would do, changing nothing.

    For a connector directory, what install would do; for an integration id, what resume
    (or uninstall, or update) would do, from its document and run state.

    --json prints the actions in order, each with its function (null for an action that
    calls none, such as a mode change) and step (null for connector-level functions).

    With --extension-url, functions not defined in Python are expected on that server,
    which must answer its health check (the protocol cannot list functions).
    """
    settings = settings_from(locals())
    if Path(target).is_dir() or (Path(target) / "connector.json").exists():
        show_plan(load(Path(target)), settings, as_json)
        return
    from engine.plan import Intent

    if uninstall and update:
        fail("give at most one of --uninstall or --update", 2)
    intent = Intent.UNINSTALL if uninstall else Intent.UPDATE if update else Intent.RESUME
    wanted = load(connector) if connector is not None else None
    actions = with_engine(settings, lambda e: e.plan_for(target, intent, wanted), creates=False)
    shown = [a.to_json() for a in actions]
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
