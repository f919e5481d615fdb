"""The CLI's shared pieces: the Typer apps, common options and how a command runs.

Heavy modules are imported inside functions, so ``smartconnector --help`` stays fast.
"""

from __future__ import annotations

import gc
import inspect
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from engine.defaults import API_BURST, API_RATE, RETRY_BUDGET

if TYPE_CHECKING:
    from engine.config import Settings
    from engine.runner import Engine
    from installers import Connector
    from installers.remote import ExtensionServer

T = TypeVar("T")
DEFAULT_HOME = Path(".smartconnector")

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
        rich_help_panel="API",
    ),
]
TokenFile = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        help="File holding the API token (else $SMARTCONNECTOR_API_TOKEN).",
        rich_help_panel="API",
    ),
]
Home = Annotated[
    Path,
    typer.Option(
        "--home",
        envvar="SMARTCONNECTOR_HOME",
        help="Journal and embedded sandbox directory.",
        rich_help_panel="API",
    ),
]
LogFormat = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        envvar="SMARTCONNECTOR_LOG_FORMAT",
        help="console or json (default: console on a terminal, else json).",
        rich_help_panel="Output",
    ),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the status object as JSON.")]
Verbose = Annotated[
    bool,
    typer.Option("--verbose", "-v", help="On a failed function, show its whole traceback."),
]
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
        rich_help_panel="Step policy",
    ),
]
StepRetries = Annotated[
    int,
    typer.Option(
        "--step-retries",
        min=0,
        max=100,
        help="Retries of a function raising RetryableError, for steps whose policy sets none.",
        rich_help_panel="Step policy",
    ),
]
ExtensionUrl = Annotated[
    str | None,
    typer.Option(
        "--extension-url",
        envvar="SMARTCONNECTOR_EXTENSION_URL",
        help="integrator.io extension server for functions the connector does not define in"
        " Python (token: $SMARTCONNECTOR_EXTENSION_TOKEN).",
        rich_help_panel="Extension server",
    ),
]
EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        help="local (in-process) or temporal (workflows run by `smartconnector worker`).",
        rich_help_panel="Temporal",
    ),
]
TemporalAddress = Annotated[
    str | None,
    typer.Option(
        "--temporal-address",
        envvar="SMARTCONNECTOR_TEMPORAL_ADDRESS",
        help="Temporal frontend HOST:PORT, for --engine temporal and `worker`.",
        rich_help_panel="Temporal",
    ),
]
TaskQueue = Annotated[
    str,
    typer.Option(
        "--task-queue",
        envvar="SMARTCONNECTOR_TASK_QUEUE",
        help="Temporal task queue.",
        rich_help_panel="Temporal",
    ),
]
ApiRate = Annotated[
    float,
    typer.Option(
        "--api-rate",
        envvar="SMARTCONNECTOR_API_RATE",
        min=0.1,
        help="Requests per second the token may make; the engine keeps under it (with"
        " --engine temporal, all workers of a task queue together).",
        rich_help_panel="API",
    ),
]
ApiBurst = Annotated[
    float,
    typer.Option(
        "--api-burst",
        envvar="SMARTCONNECTOR_API_BURST",
        min=1,
        help="The token's bucket: requests it may make at once before the rate applies.",
        rich_help_panel="API",
    ),
]
RetryBudget = Annotated[
    float,
    typer.Option(
        "--retry-budget",
        envvar="SMARTCONNECTOR_RETRY_BUDGET",
        min=0.1,
        help="Seconds to keep retrying a failing API request (5xx, 429, timeouts) before exit 5.",
        rich_help_panel="API",
    ),
]


def fail(message: str, code: int) -> NoReturn:
    from engine.logs import redactor

    label = "interrupted" if code == 130 else "error"
    typer.echo(f"{label}: {redactor.scrub(message)}", err=True)
    raise typer.Exit(code)


def resolve_settings(
    *,
    api_url: str | None = None,
    token_file: Path | None = None,
    home: Path = DEFAULT_HOME,
    log_format: str | None = None,
    step_timeout: float | None = None,
    step_retries: int = 0,
    retry_budget: float = RETRY_BUDGET,
    api_rate: float = API_RATE,
    api_burst: float = API_BURST,
    extension_url: str | None = None,
    engine: str = "local",
    temporal_address: str | None = None,
    task_queue: str = "smartconnector",
) -> Settings:
    from engine import logs
    from engine.client import RateLimit, RetryPolicy
    from engine.config import Settings
    from engine.models import StepPolicy

    if log_format not in (None, "console", "json"):
        fail(f"--log-format: {log_format!r} is not console or json", 2)
    logs.configure(log_format)
    token = api_token(api_url, token_file)
    logs.redactor.add(token)
    policy = None
    if step_timeout is not None or step_retries:
        policy = StepPolicy(timeout=step_timeout, retries=step_retries)
    extension_token = os.environ.get("SMARTCONNECTOR_EXTENSION_TOKEN") or None
    if extension_url and not extension_token:
        fail("--extension-url needs the extension token in SMARTCONNECTOR_EXTENSION_TOKEN", 2)
    logs.redactor.add(extension_token)
    if engine not in ("local", "temporal"):
        fail(f"--engine: {engine!r} is not local or temporal", 2)
    if engine == "temporal" and not temporal_address:
        fail(
            "--engine temporal needs --temporal-address HOST:PORT"
            " (or SMARTCONNECTOR_TEMPORAL_ADDRESS)",
            2,
        )
    return Settings(
        engine=engine,
        temporal_address=temporal_address,
        task_queue=task_queue,
        extension_url=extension_url or None,
        extension_token=extension_token,
        home=home,
        api_url=api_url or None,
        token=token,
        step_policy=policy,
        retry=RetryPolicy(budget=retry_budget),
        rate_limit=RateLimit(rate=api_rate, burst=api_burst),
    )


def api_token(api_url: str | None, token_file: Path | None) -> str | None:
    """The API token, once ``--api-url`` and ``--token-file`` are checked (exit 2 if not
    usable): from the file, else the environment."""
    from engine.cli._usage import api_options_problem
    from engine.config import read_token

    problem = api_options_problem(api_url, token_file)
    if problem:
        fail(problem, 2)
    return guard(lambda: read_token(token_file))


def settings_from(parameters: dict[str, Any]) -> Settings:
    """A command's common options, from its parameters by name (its ``locals()`` on entry):
    each command declares the options it takes, this resolves them the same way for all."""
    wanted = inspect.signature(resolve_settings).parameters
    return resolve_settings(**{k: v for k, v in parameters.items() if k in wanted})


def guard(action: Callable[[], T], looked_in: str | None = None, api_url: str | None = None) -> T:
    """Run ``action``; a :class:`SmartConnectorError` becomes its message and exit code.

    ``looked_in`` names the API a not-found answer came from, so the message says where;
    with ``api_url``, an API that did not answer (exit 5) is named with what to check.
    """
    from engine.errors import NotFound, SmartConnectorError

    try:
        return action()
    except SmartConnectorError as exc:
        message = str(exc)
        integration_id = exc.context.get("integration_id")
        if integration_id and integration_id not in message:
            message += f" (integration {integration_id})"
        if isinstance(exc, NotFound) and looked_in:
            message += f"; looked in {looked_in}"
        if exc.exit_code == 5 and api_url:
            from engine.cli._usage import version_hint

            message += f"; {version_hint(api_url)}"
        fail(message, exc.exit_code)


def looked_in(settings: Settings) -> str:
    """Where this command's integrations live, as a message should name it."""
    if settings.embedded:
        return (
            f"the embedded sandbox in {settings.home.resolve()}"
            " (--home or SMARTCONNECTOR_HOME to choose another, --api-url for a server)"
        )
    from engine.cli._usage import version_hint, versioned

    assert settings.api_url is not None
    hint = "" if versioned(settings.api_url) else f" ({version_hint(settings.api_url)})"
    return f"the API at {settings.api_url}{hint}"


async def make_engine(
    settings: Settings, api: Any, journal: Any, extension: ExtensionServer | None
) -> Engine:
    """The engine, running its plans here, or on Temporal with ``--engine temporal``."""
    from engine.runner import Engine

    options: dict[str, Any] = {
        "observe": observer(),
        "default_policy": settings.step_policy,
        "extension": extension,
    }
    if settings.engine == "temporal":
        from engine.temporal._client import TemporalExecutor, connect

        assert settings.temporal_address is not None
        client = await connect(settings.temporal_address)
        options["executor"] = TemporalExecutor(client, settings.task_queue)
    return Engine(api, journal, **options)


async def guard_async(pending: Awaitable[T]) -> T:
    """:func:`guard` for a coroutine: its error becomes its message and exit code."""
    from engine.errors import SmartConnectorError

    try:
        return await pending
    except SmartConnectorError as exc:
        fail(str(exc), exc.exit_code)


def with_engine(
    settings: Settings, job: Callable[[Engine], Awaitable[T]], *, creates: bool = True
) -> T:
    """Open client and journal, run ``job`` on an :class:`Engine`, map errors to exit codes.

    Ctrl-C is handled from before anything is opened (see :mod:`engine.interrupts`). A job
    that only acts on existing integrations (``creates=False``) makes no embedded sandbox
    where there is none: it says where it looked instead.
    """
    if settings.embedded and not creates and not settings.sandbox_db.exists():
        fail(
            f"nothing was installed with home {settings.home.resolve()}: it holds no embedded"
            " sandbox. Pass --home DIR (or set SMARTCONNECTOR_HOME) to the home you installed"
            " with, or --api-url URL for a server",
            6,
        )
    from engine.config import open_client
    from engine.interrupts import Interrupts
    from engine.journal import Journal

    interrupts = Interrupts(notify=lambda message: typer.echo(message, err=True))
    engines: list[Engine] = []

    async def main() -> T:
        async with guard(lambda: open_client(settings)) as api, open_extension(settings) as ext:
            journal = Journal(settings.home / "journal.db")
            engine = await guard_async(make_engine(settings, api, journal, ext))
            engines.append(engine)
            interrupts.attach(engine)
            try:
                return await job(engine)
            finally:
                interrupts.detach()

    import asyncio  # here, not at start-up: --help and usage errors never run a loop

    gc.freeze()  # what start-up made lives until exit: spare the collector walking it again
    with interrupts.installed():
        try:
            return guard(lambda: asyncio.run(main()), looked_in(settings), settings.api_url)
        except KeyboardInterrupt:
            begun = list(engines[0].known) if engines else []
            typer.echo("interrupted" + ("" if begun else "; nothing was changed"), err=True)
            for integration_id in begun:
                typer.echo(f"  resumable: smartconnector resume {integration_id}", err=True)
                typer.echo(integration_id)
            raise typer.Exit(130) from None


@asynccontextmanager
async def open_extension(settings: Settings) -> AsyncIterator[ExtensionServer | None]:
    if settings.extension_url is None or settings.extension_token is None:
        yield None
        return
    from installers.remote import ExtensionServer

    async with ExtensionServer(settings.extension_url, settings.extension_token) as server:
        yield server


def observer() -> Callable[[str, str | None, str, float | None], None]:
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


def load(directory: Path) -> Connector:
    from installers import load_connector

    return guard(lambda: load_connector(directory))
