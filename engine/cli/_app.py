"""The CLI's shared pieces: the Typer apps, how a command runs and how its errors end it.

Heavy modules are imported inside functions, so ``smartconnector --help`` stays fast.
"""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from engine.client import ApiClient
    from engine.drivers.config import Settings
    from engine.drivers.runner import Engine
    from installers import Connector
    from installers.remote import ExtensionServer

T = TypeVar("T")


class OneLineErrors(TyperGroup):
    """A usage error (an unknown command or option, a bad value) as one line,
    ``error: ... (see `COMMAND --help`)``, exit 2, as every other error of this CLI: Typer
    would draw a box of five or six lines."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        call = (args, prog_name, complete_var, False, windows_expand_args)
        if not standalone_mode:
            return super().main(*call, **extra)
        from typer._click.exceptions import ClickException

        try:
            code = super().main(*call, **extra)
        except ClickException as exc:
            if type(exc).__name__ != "NoArgsIsHelpError":  # the help is printed already
                context = getattr(exc, "ctx", None)
                see = f" (see `{context.command_path} --help`)" if context is not None else ""
                typer.echo(f"error: {exc.format_message()}{see}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("Aborted.", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
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


def fail(message: str, code: int) -> NoReturn:
    from engine.logs import redactor

    label = "interrupted" if code == 130 else "error"
    typer.echo(f"{label}: {redactor.scrub(message)}", err=True)
    raise typer.Exit(code)


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
            from engine.cli._usage import unreachable_hint

            message += f"; {unreachable_hint(api_url)}"
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
    from engine.drivers.runner import Engine

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

    Ctrl-C is handled from before anything is opened (see :mod:`engine.drivers.interrupts`). A job
    that only acts on existing integrations (``creates=False``) makes no embedded sandbox
    where there is none: it says where it looked instead.
    """
    if not creates:
        _installed_here(settings)
    from engine.drivers.config import open_client
    from engine.drivers.interrupts import Interrupts
    from engine.run.journal import Journal

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
            _interrupted(list(engines[0].known) if engines else [])


def _interrupted(begun: list[str]) -> NoReturn:
    """Exit 130 after Ctrl-C, naming each integration the run had begun, to resume."""
    typer.echo("interrupted" + ("" if begun else "; nothing was changed"), err=True)
    for integration_id in begun:
        typer.echo(f"  resumable: smartconnector resume {integration_id}", err=True)
        typer.echo(integration_id)
    raise typer.Exit(130) from None


def with_api(settings: Settings, job: Callable[[ApiClient], Awaitable[T]]) -> T:
    """Open the API client alone and run ``job`` on it, for a command that only reads (no
    engine, journal or connector code to load); errors become their message and exit code.
    Makes no embedded sandbox where there is none: it says where it looked instead."""
    _installed_here(settings)
    from engine.drivers.config import open_client

    async def main() -> T:
        async with guard(lambda: open_client(settings)) as api:
            return await job(api)

    import asyncio  # here, not at start-up: --help and usage errors never run a loop

    return guard(lambda: asyncio.run(main()), looked_in(settings), settings.api_url)


def _installed_here(settings: Settings) -> None:
    """Exit 6 where the embedded sandbox of ``--home`` does not exist: nothing was installed
    with it, and reading it must not make one."""
    if settings.embedded and not settings.sandbox_db.exists():
        fail(
            f"nothing was installed with home {settings.home.resolve()}: it holds no embedded"
            " sandbox. Pass --home DIR (or set SMARTCONNECTOR_HOME) to the home you installed"
            " with, or --api-url URL for a server",
            6,
        )


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


MAX_FILE_BYTES = 5 * 1024 * 1024


def read_json_file(path: Path, option: str) -> Any:
    """A JSON file given on the command line; exit 2 naming the option when it is unusable."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        fail(f"{option}: cannot read {path}: {exc.strerror}", 2)
    if len(raw) > MAX_FILE_BYTES:
        fail(f"{option}: {path} is {len(raw)} bytes, over the {MAX_FILE_BYTES} byte limit", 2)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        fail(f"{option}: {path} is not valid JSON: {exc}", 2)
