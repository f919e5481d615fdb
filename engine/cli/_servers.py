"""The servers: `sandbox serve`, `sandbox token create`, `extension serve` and `worker`."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from engine.cli._app import (
    app,
    fail,
    guard,
    guard_async,
    load,
    open_extension,
    sandbox_app,
    token_app,
)
from engine.cli._options import (
    API,
    DEFAULT_HOME,
    EXTENSION,
    HOME,
    LOG,
    QUEUE,
    RATE,
    TEMPORAL,
    ConnectorDir,
    Home,
    common_options,
)
from engine.cli._telemetry import (
    MetricsHost,
    MetricsPort,
    TemporalMetricsPort,
    serve_metrics,
    temporal_runtime,
)

if TYPE_CHECKING:
    from engine.drivers.config import Settings
    from installers import Connector

ListenHost = Annotated[str, typer.Option(help="Address to listen on.")]
ListenPort = Annotated[int, typer.Option(help="Port to listen on.")]
SandboxDb = Annotated[
    Path | None, typer.Option(help="SQLite file (default $SMARTCONNECTOR_HOME/sandbox.db).")
]
Faults = Annotated[
    str | None,
    typer.Option(help="Inject failures, e.g. 500:0.05,429:0.05,timeout:0.02,reset:0.02."),
]
FaultDelay = Annotated[float, typer.Option(help="Seconds a `timeout` fault holds the request.")]
SandboxProfile = Annotated[
    str,
    typer.Option(
        envvar="SMARTCONNECTOR_SANDBOX_PROFILE",
        help="What the API offers. default: the permissive sandbox (JSON Patch with"
        " test, merge patch, unknown fields kept, Idempotency-Key honoured). platform:"
        " only what integrator.io's public docs promise, to test against it (PATCH of an"
        " integration takes only replace operations on its documented fields and answers"
        " 204; unknown fields are dropped; Idempotency-Key is ignored). put-only:"
        " platform, with no PATCH of integrations (405), so writes must be PUTs.",
    ),
]
WorkerConnectors = Annotated[
    list[Path] | None,
    typer.Option(
        "--connector",
        help="Connector directory this worker can run (repeat for more);"
        " installed connector packages are found too.",
    ),
]


@app.command()
def diagram() -> None:
    """Print the state machine as a Mermaid diagram."""
    from engine.run.machine import mermaid

    typer.echo(mermaid())


@sandbox_app.command(
    "serve",
    epilog=(
        "Examples:  smartconnector sandbox serve --port 8700   ·   smartconnector sandbox"
        " serve --faults 500:0.05,timeout:0.02 --seed 1   ·   smartconnector sandbox serve"
        " --profile platform"
    ),
)
@common_options(HOME, LOG)
def sandbox_serve(
    settings: Settings,
    host: ListenHost = "127.0.0.1",
    port: ListenPort = 8700,
    db: SandboxDb = None,
    faults: Faults = None,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible faults.")] = None,
    fault_delay: FaultDelay = 5.0,
    rate: Annotated[float, typer.Option(help="Rate limit: requests per second per token.")] = 300.0,
    burst: Annotated[float, typer.Option(help="Rate limit: bucket size per token.")] = 1000.0,
    profile: SandboxProfile = "default",
) -> None:
    """Serve the sandbox API at http://HOST:PORT/v1 (GET /healthz answers once ready)."""
    from engine.cli._usage import claimed
    from engine.drivers.sandbox_cli import serve

    listening = claimed(host, port)
    guard(
        lambda: serve(
            host=host,
            listening=listening,
            db=db or settings.sandbox_db,
            faults=faults,
            seed=seed,
            fault_delay=fault_delay,
            rate=rate,
            burst=burst,
            profile=profile,
        )
    )


@token_app.command(
    "create",
    epilog=(
        "Example:  export SMARTCONNECTOR_API_TOKEN=$(smartconnector sandbox token create"
        " --scopes all.User)"
    ),
)
def token_create(
    scopes: Annotated[
        str,
        typer.Option(
            help=(
                "Comma-separated scopes: all.User for everything, or e.g."
                " integrations.get,integrations.post,integration.*,resources.* to install."
            )
        ),
    ],
    db: SandboxDb = None,
    home: Home = DEFAULT_HOME,
) -> None:
    """Create a sandbox token and print it alone on stdout (works while the server runs)."""
    from engine.drivers.sandbox_cli import create_token

    typer.echo(guard(lambda: create_token(db or home / "sandbox.db", scopes)))


extension_app = typer.Typer(
    help="Serve a Python connector over the extension protocol.", no_args_is_help=True
)
app.add_typer(extension_app, name="extension")


@extension_app.command("serve")
@common_options(LOG)
def extension_serve(
    settings: Settings,
    connector_dir: ConnectorDir,
    host: ListenHost = "127.0.0.1",
    port: ListenPort = 8701,
) -> None:
    """Serve CONNECTOR_DIR's functions as an integrator.io extension server.

    POST /function and GET /healthCheck, answered as the integrator-extension SDK does.
    Callers authenticate with $SMARTCONNECTOR_EXTENSION_TOKEN.
    """
    import uvicorn

    from engine.drivers.extension_server import create_extension_app

    token = os.environ.get("SMARTCONNECTOR_EXTENSION_TOKEN")
    if not token:
        fail("set SMARTCONNECTOR_EXTENSION_TOKEN: the token callers must present", 2)
    connector = load(connector_dir)
    from engine.cli._usage import claimed

    listening = claimed(host, port)
    served = uvicorn.Config(
        create_extension_app(connector, token), log_level="warning", lifespan="off"
    )
    uvicorn.Server(served).run(sockets=[listening])


@app.command(
    epilog=(
        "Example:  smartconnector worker --temporal-address 127.0.0.1:7233 --connector my_connector"
    ),
)
@common_options(API, RATE, EXTENSION, TEMPORAL, QUEUE)
def worker(
    settings: Settings,
    connector: WorkerConnectors = None,
    metrics_port: MetricsPort = None,
    temporal_metrics_port: TemporalMetricsPort = None,
    metrics_host: MetricsHost = "127.0.0.1",
) -> None:
    """Run the workflows of `--engine temporal` runs, until stopped.

    Start as many as you like, on any machines that reach the Temporal server and the API
    (the embedded sandbox works for workers sharing one $SMARTCONNECTOR_HOME). A worker
    killed in the middle of a step is noticed within seconds, and the step goes on
    elsewhere with the same idempotency key.
    """
    if not settings.temporal_address:
        fail("worker needs --temporal-address HOST:PORT (or SMARTCONNECTOR_TEMPORAL_ADDRESS)", 2)
    connectors = {c.manifest.connector_id: c for c in (load(d) for d in connector or [])}
    serve_metrics(metrics_host, metrics_port)
    runtime = temporal_runtime(metrics_host, temporal_metrics_port)
    # asyncio's own Ctrl-C handling (cancel, then shut the worker down) suits a worker:
    # a killed worker's activities go on elsewhere
    import asyncio

    signal.signal(signal.SIGINT, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_work(settings, settings.temporal_address, connectors, runtime))


async def _work(
    settings: Settings, temporal_address: str, connectors: dict[str, Connector], runtime: Any
) -> None:
    """Run the worker on the task queue until it is cancelled."""
    import structlog

    from engine.drivers.config import open_client
    from engine.temporal._client import connect, run_worker

    client = await guard_async(connect(temporal_address, runtime))
    async with guard(lambda: open_client(settings)) as api, open_extension(settings) as ext:
        structlog.get_logger("smartconnector.worker").info(
            "worker started", task_queue=settings.task_queue, connectors=sorted(connectors)
        )
        await run_worker(
            api, client, settings.task_queue, connectors, ext, api_rate=settings.rate_limit.rate
        )
