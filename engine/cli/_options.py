"""The options commands share, each declared once, and how a command takes them.

The settings options are the parameters of :func:`resolve_settings`. A command names the
groups of them it takes with :func:`common_options`; its signature lists only its own
arguments and options, and it is handed the resolved :class:`~engine.drivers.config.Settings`::

    @app.command()
    @common_options(API, RETRY)
    def status(settings: Settings, integration_id: str) -> None: ...

(This module's annotations are evaluated where they stand, not postponed: Typer reads the
options from them.)
"""

import functools
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Concatenate, ParamSpec, TypeVar

import typer

from engine.cli._app import fail, guard
from engine.defaults import API_BURST, API_RATE, RETRY_BUDGET

if TYPE_CHECKING:
    from engine.drivers.config import Settings
    from engine.models import StepPolicy

P = ParamSpec("P")
R = TypeVar("R")
DEFAULT_HOME = Path(".smartconnector")

# -- arguments and options of several commands, besides the settings --------------------------

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

# -- the settings options --------------------------------------------------------------------

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


def resolve_settings(
    *,
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
) -> "Settings":
    """The settings the options give (each option, else its environment variable, else its
    default), checked: a problem is exit 2 with one line saying what to do. Its parameters,
    in this order, are the settings options of every command and of its ``--help``."""
    from engine.drivers.config import Settings
    from engine.policy import RateLimit, RetryPolicy

    _check_choices(log_format, engine, temporal_address)
    token, extension_token = _tokens(log_format, api_url, token_file, extension_url)
    return Settings(
        engine=engine,
        temporal_address=temporal_address,
        task_queue=task_queue,
        extension_url=extension_url or None,
        extension_token=extension_token,
        home=home,
        api_url=api_url or None,
        token=token,
        step_policy=_step_policy(step_timeout, step_retries),
        retry=RetryPolicy(budget=retry_budget),
        rate_limit=RateLimit(rate=api_rate, burst=api_burst),
    )


def _step_policy(timeout: float | None, retries: int) -> "StepPolicy | None":
    """The policy ``--step-timeout`` and ``--step-retries`` set for steps that set none."""
    if timeout is None and not retries:
        return None
    from engine.models import StepPolicy  # pydantic's models: only for a run

    return StepPolicy(timeout=timeout, retries=retries)


def _check_choices(log_format: str | None, engine: str, temporal_address: str | None) -> None:
    """Exit 2 for a value an option does not offer, or an engine without what it needs."""
    if log_format not in (None, "console", "json"):
        fail(f"--log-format: {log_format!r} is not console or json", 2)
    if engine not in ("local", "temporal"):
        fail(f"--engine: {engine!r} is not local or temporal", 2)
    if engine == "temporal" and not temporal_address:
        fail(
            "--engine temporal needs --temporal-address HOST:PORT"
            " (or SMARTCONNECTOR_TEMPORAL_ADDRESS)",
            2,
        )


def _tokens(
    log_format: str | None, api_url: str | None, token_file: Path | None, extension_url: str | None
) -> tuple[str | None, str | None]:
    """The API's token and the extension server's, once logging is set up to redact both."""
    from engine import logs

    logs.configure(log_format)
    token = api_token(api_url, token_file)
    logs.redactor.add(token)
    extension_token = os.environ.get("SMARTCONNECTOR_EXTENSION_TOKEN") or None
    if extension_url and not extension_token:
        fail("--extension-url needs the extension token in SMARTCONNECTOR_EXTENSION_TOKEN", 2)
    logs.redactor.add(extension_token)
    return token, extension_token


def api_token(api_url: str | None, token_file: Path | None) -> str | None:
    """The API token, once ``--api-url`` and ``--token-file`` are checked (exit 2 if not
    usable): from the file, else the environment."""
    from engine.cli._usage import api_options_problem
    from engine.drivers.config import read_token

    problem = api_options_problem(api_url, token_file)
    if problem:
        fail(problem, 2)
    return guard(lambda: read_token(token_file))


# -- which commands take which -----------------------------------------------------------------

HOME = ("home",)
LOG = ("log_format",)
API = ("api_url", "token_file", *HOME, *LOG)
RETRY = ("retry_budget",)
RATE = ("api_rate", "api_burst")
EXTENSION = ("extension_url",)
TEMPORAL = ("temporal_address",)
QUEUE = ("task_queue",)
#: What a command that runs connector functions takes: every settings option.
RUN = ("step_timeout", "step_retries", *API, *RETRY, *RATE, *EXTENSION, "engine", *TEMPORAL, *QUEUE)

_SETTINGS_OPTIONS = inspect.signature(resolve_settings).parameters
_CONTEXT = inspect.Parameter(
    "typer_context", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context
)


def common_options(
    *groups: tuple[str, ...],
) -> Callable[[Callable[Concatenate["Settings", P], R]], Callable[..., R | None]]:
    """The command takes the settings options of ``groups`` besides its own, and is called
    with the :class:`~engine.drivers.config.Settings` they resolve to as its first argument.

    Its ``--help`` lists its own options without a panel first, then the settings options in
    the order :func:`resolve_settings` declares them, then its own options in panels of
    their own. A group's callback on its way to a subcommand resolves nothing and is not
    called: the subcommand takes the options.
    """
    wanted = {name for group in groups for name in group}
    unknown = wanted - set(_SETTINGS_OPTIONS)
    if unknown:
        raise TypeError(f"no settings option named {', '.join(sorted(unknown))}")
    shared = [p for name, p in _SETTINGS_OPTIONS.items() if name in wanted]

    def decorate(command: Callable[Concatenate["Settings", P], R]) -> Callable[..., R | None]:
        _, *written = inspect.signature(command).parameters.values()  # settings, then its own
        own = [_evaluated(p, command) for p in written]
        paneled = [p for p in own if _panel(p.annotation)]
        unpaneled = [p for p in own if not _panel(p.annotation)]
        call: Callable[..., R] = command  # with the command's own options, by name

        @functools.wraps(command)
        def run(typer_context: typer.Context, **given: Any) -> R | None:
            if typer_context.invoked_subcommand is not None:
                return None
            settings = resolve_settings(**{p.name: given.pop(p.name) for p in shared})
            return call(settings, **given)

        listed = [_CONTEXT, *unpaneled, *shared, *paneled]
        parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in listed]
        run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run

    return decorate


def _evaluated(parameter: inspect.Parameter, function: Callable[..., Any]) -> inspect.Parameter:
    """``parameter`` with its annotation evaluated where ``function`` was written (command
    modules postpone theirs)."""
    annotation = parameter.annotation
    if isinstance(annotation, str):
        annotation = eval(annotation, function.__globals__)  # the module's own source
    return parameter.replace(annotation=annotation)


def _panel(annotation: Any) -> str | None:
    """The help panel an ``Annotated[..., typer.Option(...)]`` names, if any."""
    for meta in getattr(annotation, "__metadata__", ()):
        panel = getattr(meta, "rich_help_panel", None)
        if panel:
            return str(panel)
    return None
