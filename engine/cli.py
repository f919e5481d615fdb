"""The ``smartconnector`` command; heavy modules are imported inside commands, for a fast --help."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from engine.config import Settings
    from engine.runner import Engine
    from installers import Connector
    from installers.remote import ExtensionServer

T = TypeVar("T")

app = typer.Typer(
    name="smartconnector",
    help=(
        "Install, resume and uninstall integrator.io SmartConnector integrations.\n\n"
        "Without --api-url everything runs against the embedded sandbox in"
        " $SMARTCONNECTOR_HOME (default ./.smartconnector): no server, no token.\n\n"
        "Exit codes: 0 done, 1 a function failed (resumable), 2 bad input, 3 auth,"
        " 4 conflict/lease held, 5 API unavailable, 6 not found, 7 waiting for a person,"
        " 130 interrupted (resumable)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
sandbox_app = typer.Typer(
    help="Run the integrator-compatible sandbox API server.", no_args_is_help=True
)
token_app = typer.Typer(help="Manage sandbox API tokens.", no_args_is_help=True)
sandbox_app.add_typer(token_app, name="token")
app.add_typer(sandbox_app, name="sandbox")

ApiUrl = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        envvar="SMARTCONNECTOR_API_URL",
        help="API base URL including the version, e.g. http://127.0.0.1:8700/v1."
        " Default: the embedded sandbox.",
    ),
]
TokenFile = Annotated[
    Path | None,
    typer.Option(
        "--token-file", help="File holding the API token (else $SMARTCONNECTOR_API_TOKEN)."
    ),
]
Home = Annotated[
    Path,
    typer.Option(
        "--home", envvar="SMARTCONNECTOR_HOME", help="Journal and embedded sandbox directory."
    ),
]
LogFormat = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        envvar="SMARTCONNECTOR_LOG_FORMAT",
        help="console or json (default: console on a terminal, else json).",
    ),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the status object as JSON.")]
ConnectorDir = Annotated[
    Path, typer.Argument(help="Connector directory holding connector.json (and functions.py).")
]
ConnectorOpt = Annotated[
    Path | None,
    typer.Option("--connector", help="Connector directory, when this home did not install it."),
]
StepTimeout = Annotated[
    float | None,
    typer.Option(
        "--step-timeout",
        min=0.001,
        help="Seconds a connector function may run, for steps whose policy sets none (300).",
    ),
]
StepRetries = Annotated[
    int,
    typer.Option(
        "--step-retries",
        min=0,
        max=100,
        help="Retries of a function raising RetryableError, for steps whose policy sets none.",
    ),
]
ExtensionUrl = Annotated[
    str | None,
    typer.Option(
        "--extension-url",
        envvar="SMARTCONNECTOR_EXTENSION_URL",
        help="integrator.io extension server for functions the connector does not define in"
        " Python (token: $SMARTCONNECTOR_EXTENSION_TOKEN).",
    ),
]
RetryBudget = Annotated[
    float,
    typer.Option(
        "--retry-budget",
        envvar="SMARTCONNECTOR_RETRY_BUDGET",
        min=0.1,
        help="Seconds to keep retrying a failing API request (5xx, 429, timeouts) before exit 5.",
    ),
]
DEFAULT_HOME = Path(".smartconnector")


def _fail(message: str, code: int) -> NoReturn:
    from engine.logs import redactor

    typer.echo(f"error: {redactor.scrub(message)}", err=True)
    raise typer.Exit(code)


def _settings(
    api_url: str | None,
    token_file: Path | None,
    home: Path,
    log_format: str | None,
    step_timeout: float | None = None,
    step_retries: int = 0,
    retry_budget: float = 60.0,
    extension_url: str | None = None,
) -> Settings:
    from engine import logs
    from engine.client import RetryPolicy
    from engine.config import Settings, read_token
    from engine.models import StepPolicy

    if log_format not in (None, "console", "json"):
        _fail(f"--log-format: {log_format!r} is not console or json", 2)
    logs.configure(log_format)
    token = _guard(lambda: read_token(token_file))
    logs.redactor.add(token)
    policy = None
    if step_timeout is not None or step_retries:
        policy = StepPolicy(timeout=step_timeout, retries=step_retries)
    extension_token = os.environ.get("SMARTCONNECTOR_EXTENSION_TOKEN") or None
    if extension_url and not extension_token:
        _fail("--extension-url needs the extension token in SMARTCONNECTOR_EXTENSION_TOKEN", 2)
    logs.redactor.add(extension_token)
    return Settings(
        extension_url=extension_url or None,
        extension_token=extension_token,
        home=home,
        api_url=api_url or None,
        token=token,
        step_policy=policy,
        retry=RetryPolicy(budget=retry_budget),
    )


def _guard(action: Callable[[], T]) -> T:
    """Run ``action``; a :class:`SmartConnectorError` becomes its message and exit code."""
    from engine.errors import SmartConnectorError

    try:
        return action()
    except SmartConnectorError as exc:
        integration_id = exc.context.get("integration_id")
        _fail(
            str(exc) + (f" (integration {integration_id})" if integration_id else ""), exc.exit_code
        )


@contextmanager
def _ctrl_c_stops(engine: Engine) -> Iterator[None]:
    """First Ctrl-C: finish the current function, record, exit 130. Second: stop now."""
    loop = asyncio.get_running_loop()

    def first() -> None:
        typer.echo("stopping after the current function (Ctrl-C again to abort)", err=True)
        engine.stop.set()
        loop.remove_signal_handler(signal.SIGINT)

    try:
        loop.add_signal_handler(signal.SIGINT, first)
    except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix loops
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def _with_engine(settings: Settings, job: Callable[[Engine], Awaitable[T]]) -> T:
    """Open client and journal, run ``job`` on an :class:`Engine`, map errors to exit codes."""
    from engine.config import open_client
    from engine.journal import Journal
    from engine.runner import Engine

    async def main() -> T:
        async with _guard(lambda: open_client(settings)) as api, _extension(settings) as ext:
            journal = Journal(settings.home / "journal.db")
            engine = Engine(
                api,
                journal,
                observe=_observer(),
                default_policy=settings.step_policy,
                extension=ext,
            )
            with _ctrl_c_stops(engine):
                return await job(engine)

    try:
        return _guard(lambda: asyncio.run(main()))
    except KeyboardInterrupt:
        _fail("interrupted", 130)


@asynccontextmanager
async def _extension(settings: Settings) -> AsyncIterator[ExtensionServer | None]:
    if settings.extension_url is None or settings.extension_token is None:
        yield None
        return
    from installers.remote import ExtensionServer

    async with ExtensionServer(settings.extension_url, settings.extension_token) as server:
        yield server


def _observer() -> Callable[[str, str | None, str, float | None], None]:
    """On a terminal, one line per step with its state and time; otherwise logs say it."""
    if not sys.stderr.isatty():
        return lambda *args: None
    from rich.console import Console

    console = Console(stderr=True)
    marks = {
        "started": "[cyan]…[/]",
        "succeeded": "[green]✓[/]",
        "error": "[red]✗[/]",
        "waiting": "[yellow]⏸[/]",
    }

    def show(event: str, step: str | None, function: str, seconds: float | None) -> None:
        took = f" [dim]{seconds:.2f}s[/]" if seconds is not None else ""
        console.print(f"{marks.get(event, event)} {step or '(connector)'} [dim]{function}[/]{took}")

    return show


def _load(directory: Path) -> Connector:
    from installers import load_connector

    return _guard(lambda: load_connector(directory))


def _print_status(doc: dict[str, Any], as_json: bool) -> None:
    from engine.runner import status_of, waiting_or_error

    status = status_of(doc)
    if as_json:
        typer.echo(json.dumps(status))
        return
    typer.echo(
        f"integration {status['_id']}  mode {status['mode']}  version {status['version']}"
        + ("  (update in progress)" if status["updateInProgress"] else "")
    )
    for step in status["install"]:
        typer.echo(f"  [{'x' if step['completed'] is True else ' '}] {step['name']}")
    stopped = waiting_or_error(doc)
    if stopped:
        where = f" — {stopped['url']}" if stopped.get("url") else ""
        typer.echo(
            f"  stopped at {stopped.get('step') or '(connector)'}"
            f" ({stopped.get('function')}): {stopped.get('message')}{where}"
        )


def _report_outcome(
    settings: Settings, job: Callable[[Engine], Awaitable[dict[str, Any]]], as_json: bool
) -> None:
    """Run an install-like job; print the id (or status) last, also when it stops early."""
    from engine.errors import SmartConnectorError

    async def job_keeping_id(engine: Engine) -> dict[str, Any]:
        try:
            return await job(engine)
        except SmartConnectorError as exc:
            integration_id = exc.context.get("integration_id")
            if integration_id and exc.exit_code in (1, 7, 130):
                stopped = await _status_quietly(engine, integration_id)
                _explain(exc)
                typer.echo(json.dumps(stopped) if as_json and stopped else integration_id)
                raise typer.Exit(exc.exit_code) from None
            raise

    doc = _with_engine(settings, job_keeping_id)
    if as_json:
        _print_status(doc, True)
    else:
        typer.echo(doc["_id"])


async def _status_quietly(engine: Engine, integration_id: str) -> dict[str, Any] | None:
    from engine.runner import status_of

    try:
        return status_of(await engine.status(integration_id))
    except Exception:
        return None


def _explain(exc: Exception) -> None:
    from engine.errors import WaitingForUser
    from engine.logs import redactor

    label = "waiting" if isinstance(exc, WaitingForUser) else "error"
    typer.echo(f"{label}: {redactor.scrub(str(exc))}", err=True)
    if isinstance(exc, WaitingForUser) and exc.url:
        typer.echo(f"  go to: {exc.url}", err=True)
    integration_id = getattr(exc, "context", {}).get("integration_id")
    if integration_id:
        typer.echo(f"  then: smartconnector resume {integration_id}", err=True)


@app.command()
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
    retry_budget: RetryBudget = 60.0,
    token_file: TokenFile = None,
    home: Home = DEFAULT_HOME,
    log_format: LogFormat = None,
) -> None:
    """Install a connector: create the integration and run every step in order.

    Prints the integration id as the last line (with --json: its status). A failed step
    leaves the integration resumable: fix the cause, then `smartconnector resume ID`.
    """
    settings = _settings(
        api_url,
        token_file,
        home,
        log_format,
        step_timeout,
        step_retries,
        retry_budget,
        extension_url,
    )
    connector = _load(connector_dir)
    if dry_run:
        _show_plan(connector, settings)
        return
    _report_outcome(
        settings,
        lambda e: e.install(connector, integration_id=integration, atomic=atomic),
        as_json,
    )


@app.command()
def resume(
    integration_id: Annotated[str, typer.Argument(help="The integration to go on with.")],
    connector: ConnectorOpt = None,
    as_json: JsonOut = False,
    step_timeout: StepTimeout = None,
    step_retries: StepRetries = 0,
    api_url: ApiUrl = None,
    extension_url: ExtensionUrl = None,
    retry_budget: RetryBudget = 60.0,
    token_file: TokenFile = None,
    home: Home = DEFAULT_HOME,
    log_format: LogFormat = None,
) -> None:
    """Continue an install or uninstall from where the integration document says it stopped."""
    settings = _settings(
        api_url,
        token_file,
        home,
        log_format,
        step_timeout,
        step_retries,
        retry_budget,
        extension_url,
    )
    loaded = _load(connector) if connector else None
    _report_outcome(settings, lambda e: e.resume(integration_id, loaded), as_json)


@app.command()
def uninstall(
    integration_id: Annotated[str, typer.Argument(help="The integration to remove.")],
    connector: ConnectorOpt = None,
    step_timeout: StepTimeout = None,
    step_retries: StepRetries = 0,
    api_url: ApiUrl = None,
    extension_url: ExtensionUrl = None,
    retry_budget: RetryBudget = 60.0,
    token_file: TokenFile = None,
    home: Home = DEFAULT_HOME,
    log_format: LogFormat = None,
) -> None:
    """Undo completed steps in reverse order, run the connector's uninstaller, then delete."""
    settings = _settings(
        api_url,
        token_file,
        home,
        log_format,
        step_timeout,
        step_retries,
        retry_budget,
        extension_url,
    )
    loaded = _load(connector) if connector else None

    async def job(engine: Engine) -> dict[str, Any]:
        await engine.uninstall(integration_id, loaded)
        return {"_id": integration_id}

    _report_outcome(settings, job, False)


@app.command()
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
    settings = _settings(api_url, token_file, home, log_format, retry_budget=retry_budget)
    _print_status(_with_engine(settings, lambda e: e.status(integration_id)), as_json)


def _show_plan(connector: Connector, settings: Settings) -> None:
    from engine.runner import Engine, resolve_functions

    if settings.extension_url is not None:

        async def resolve() -> Connector:
            async with _extension(settings) as extension:
                return await resolve_functions(connector, extension)

        connector = _guard(lambda: asyncio.run(resolve()))
    plan = _guard(lambda: Engine.plan_for(connector))
    typer.echo(f"{plan.connector} {plan.version}: {len(plan.steps)} function(s) to run")
    for i, step in enumerate(plan.steps, 1):
        typer.echo(f"  {i}. {step.name}: {step.function}  ({step.origin})")


@app.command()
def plan(
    connector_dir: ConnectorDir,
    extension_url: ExtensionUrl = None,
    log_format: LogFormat = None,
) -> None:
    """Validate a connector and show what install would run; changes nothing.

    With --extension-url, functions not defined in Python are expected on that server,
    which must answer its health check (the protocol cannot list functions).
    """
    settings = _settings(None, None, DEFAULT_HOME, log_format, extension_url=extension_url)
    _show_plan(_load(connector_dir), settings)


@app.command()
def diagram() -> None:
    """Print the integration state machine as a Mermaid diagram."""
    from engine.machine import mermaid

    typer.echo(mermaid())


@sandbox_app.command("serve")
def sandbox_serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8700,
    db: Annotated[
        Path | None, typer.Option(help="SQLite file (default $SMARTCONNECTOR_HOME/sandbox.db).")
    ] = None,
    faults: Annotated[
        str | None,
        typer.Option(help="Inject failures, e.g. 500:0.05,429:0.05,timeout:0.02,reset:0.02."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible faults.")] = None,
    fault_delay: Annotated[
        float, typer.Option(help="Seconds a `timeout` fault holds the request.")
    ] = 5.0,
    rate: Annotated[float, typer.Option(help="Rate limit: requests per second per token.")] = 300.0,
    burst: Annotated[float, typer.Option(help="Rate limit: bucket size per token.")] = 1000.0,
    home: Home = DEFAULT_HOME,
    log_format: LogFormat = None,
) -> None:
    """Serve the sandbox API at http://HOST:PORT/v1 (GET /healthz answers once ready)."""
    from engine.sandbox_cli import serve

    _settings(None, None, home, log_format)
    _guard(
        lambda: serve(
            host=host,
            port=port,
            db=db or home / "sandbox.db",
            faults=faults,
            seed=seed,
            fault_delay=fault_delay,
            rate=rate,
            burst=burst,
        )
    )


@token_app.command("create")
def token_create(
    scopes: Annotated[
        str,
        typer.Option(
            help="Comma-separated scopes, e.g. all.User or integration.get,integration.patch."
        ),
    ],
    db: Annotated[
        Path | None, typer.Option(help="SQLite file (default $SMARTCONNECTOR_HOME/sandbox.db).")
    ] = None,
    home: Home = DEFAULT_HOME,
) -> None:
    """Create a sandbox token and print it alone on stdout (works while the server runs)."""
    from engine.sandbox_cli import create_token

    typer.echo(_guard(lambda: create_token(db or home / "sandbox.db", scopes)))


extension_app = typer.Typer(
    help="Serve a Python connector over the extension protocol.", no_args_is_help=True
)
app.add_typer(extension_app, name="extension")


@extension_app.command("serve")
def extension_serve(
    connector_dir: ConnectorDir,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8701,
    log_format: LogFormat = None,
) -> None:
    """Serve CONNECTOR_DIR's functions as an integrator.io extension server.

    POST /function and GET /healthCheck, answered as the integrator-extension SDK does.
    Callers authenticate with $SMARTCONNECTOR_EXTENSION_TOKEN.
    """
    import uvicorn

    from installers.extension_server import create_extension_app

    _settings(None, None, DEFAULT_HOME, log_format)
    token = os.environ.get("SMARTCONNECTOR_EXTENSION_TOKEN")
    if not token:
        _fail("set SMARTCONNECTOR_EXTENSION_TOKEN: the token callers must present", 2)
    connector = _load(connector_dir)
    uvicorn.run(
        create_extension_app(connector, token),
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
    )


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
