"""install, resume, uninstall, status, plan and diagram."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

import typer

from engine.cli._app import (
    DEFAULT_HOME,
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
    app,
    guard,
    load,
    open_extension,
    print_status,
    report_outcome,
    resolve_settings,
    with_engine,
)

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
    step_timeout: StepTimeout = None,
    step_retries: StepRetries = 0,
    api_url: ApiUrl = None,
    extension_url: ExtensionUrl = None,
    engine: EngineOpt = "local",
    temporal_address: TemporalAddress = None,
    task_queue: TaskQueue = "smartconnector",
    retry_budget: RetryBudget = 60.0,
    token_file: TokenFile = None,
    home: Home = DEFAULT_HOME,
    log_format: LogFormat = None,
) -> None:
    """Install a connector: create the integration and run every step in order.

    Prints the integration id as the last line (with --json: its status). A failed step
    leaves the integration resumable: fix the cause, then `smartconnector resume ID`.
    """
    settings = resolve_settings(
        api_url,
        token_file,
        home,
        log_format,
        step_timeout,
        step_retries,
        retry_budget,
        extension_url,
        engine=engine,
        temporal_address=temporal_address,
        task_queue=task_queue,
    )
    connector = load(connector_dir)
    if dry_run:
        show_plan(connector, settings)
        return
    report_outcome(
        settings,
        lambda e: e.install(connector, integration_id=integration, atomic=atomic),
        as_json,
    )


@app.command(
    epilog=("Example:  smartconnector resume 6b0480442d82113bd629b566"),
)
def resume(
    integration_id: Annotated[str, typer.Argument(help="The integration to go on with.")],
    connector: ConnectorOpt = None,
    as_json: JsonOut = False,
    step_timeout: StepTimeout = None,
    step_retries: StepRetries = 0,
    api_url: ApiUrl = None,
    extension_url: ExtensionUrl = None,
    engine: EngineOpt = "local",
    temporal_address: TemporalAddress = None,
    task_queue: TaskQueue = "smartconnector",
    retry_budget: RetryBudget = 60.0,
    token_file: TokenFile = None,
    home: Home = DEFAULT_HOME,
    log_format: LogFormat = None,
) -> None:
    """Continue an install or uninstall from where the integration document says it stopped."""
    settings = resolve_settings(
        api_url,
        token_file,
        home,
        log_format,
        step_timeout,
        step_retries,
        retry_budget,
        extension_url,
        engine=engine,
        temporal_address=temporal_address,
        task_queue=task_queue,
    )
    loaded = load(connector) if connector else None
    report_outcome(settings, lambda e: e.resume(integration_id, loaded), as_json)


@app.command(
    epilog=("Example:  smartconnector uninstall 6b0480442d82113bd629b566 --connector my_connector"),
)
def uninstall(
    integration_id: Annotated[str, typer.Argument(help="The integration to remove.")],
    connector: ConnectorOpt = None,
    step_timeout: StepTimeout = None,
    step_retries: StepRetries = 0,
    api_url: ApiUrl = None,
    extension_url: ExtensionUrl = None,
    engine: EngineOpt = "local",
    temporal_address: TemporalAddress = None,
    task_queue: TaskQueue = "smartconnector",
    retry_budget: RetryBudget = 60.0,
    token_file: TokenFile = None,
    home: Home = DEFAULT_HOME,
    log_format: LogFormat = None,
) -> None:
    """Undo completed steps in reverse order, run the connector's uninstaller, then delete."""
    settings = resolve_settings(
        api_url,
        token_file,
        home,
        log_format,
        step_timeout,
        step_retries,
        retry_budget,
        extension_url,
        engine=engine,
        temporal_address=temporal_address,
        task_queue=task_queue,
    )
    loaded = load(connector) if connector else None

    async def job(engine: Engine) -> dict[str, Any]:
        await engine.uninstall(integration_id, loaded)
        return {"_id": integration_id}

    report_outcome(settings, job, False)


@app.command(
    epilog=("Example:  smartconnector status 6b0480442d82113bd629b566 --json"),
)
def status(
    integration_id: Annotated[str, typer.Argument(help="The integration to show.")],
    as_json: JsonOut = False,
    api_url: ApiUrl = None,
    retry_budget: RetryBudget = 60.0,
    token_file: TokenFile = None,
    home: Home = DEFAULT_HOME,
    log_format: LogFormat = None,
) -> None:
    """Show an integration's mode, version and steps (exit 6 if it does not exist)."""
    settings = resolve_settings(api_url, token_file, home, log_format, retry_budget=retry_budget)
    print_status(with_engine(settings, lambda e: e.status(integration_id)), as_json)


def show_plan(connector: Connector, settings: Settings) -> None:
    from engine.functions import resolve_functions
    from engine.runner import Engine

    if settings.extension_url is not None:

        async def resolve() -> Connector:
            async with open_extension(settings) as extension:
                return await resolve_functions(connector, extension)

        connector = guard(lambda: asyncio.run(resolve()))
    plan = guard(lambda: Engine.plan_for(connector))
    typer.echo(f"{plan.connector} {plan.version}: {len(plan.steps)} function(s) to run")
    for i, step in enumerate(plan.steps, 1):
        typer.echo(f"  {i}. {step.name}: {step.function}  ({step.origin})")


@app.command(
    epilog=("Example:  smartconnector plan examples/bigcommerce_netsuite"),
)
def plan(
    connector_dir: ConnectorDir,
    extension_url: ExtensionUrl = None,
    log_format: LogFormat = None,
) -> None:
    """Validate a connector and show what install would run; changes nothing.

    With --extension-url, functions not defined in Python are expected on that server,
    which must answer its health check (the protocol cannot list functions).
    """
    settings = resolve_settings(None, None, DEFAULT_HOME, log_format, extension_url=extension_url)
    show_plan(load(connector_dir), settings)


@app.command()
def diagram() -> None:
    """Print the integration state machine as a Mermaid diagram."""
    from engine.machine import mermaid

    typer.echo(mermaid())
