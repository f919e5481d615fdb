"""The connector developer's everyday commands: new, list, history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from engine.cli._app import app, fail, guard, load, looked_in, with_api
from engine.cli._options import API, RETRY, TEMPORAL, common_options
from engine.cli._telemetry import MetricsHost, MetricsPort, serve_metrics

if TYPE_CHECKING:
    from engine.client import ApiClient
    from engine.drivers.config import Settings


@app.command(
    "new",
    epilog="Example:  smartconnector new acme_connector --name 'Acme - NetSuite'",
)
def new_command(
    directory: Annotated[
        Path, typer.Argument(help="A folder that does not exist yet, or is empty.")
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="The connector's name (default: from DIR).")
    ] = None,
) -> None:
    """Write a connector that installs and passes its tests as written.

    connector.json with one step and an updateFunction; functions.py showing the example's
    idioms (finding what an earlier try made by the idempotency key, stepsToUpdate, asking
    for a secret with UserActionRequired when its settings say so, an update); and
    test_connector.py with a test of each, using the pytest plugin's fixtures. Then:
    `smartconnector plan DIR`, `smartconnector install DIR`, `pytest DIR`.
    """
    from engine.drivers.scaffold import new_connector

    written = guard(lambda: new_connector(directory, name))
    for path in written:
        typer.echo(f"wrote {path}", err=True)
    typer.echo(
        f"next: {_this_cli()} install {directory}   ·   {_python()} -m pytest {directory}", err=True
    )
    typer.echo(str(directory))


@app.command(
    "list",
    epilog="Examples:  smartconnector list   ·   smartconnector list --connector my_dir --json",
)
@common_options(API, RETRY)
def list_command(
    settings: Settings,
    connector: Annotated[
        Path | None, typer.Option("--connector", help="Only this connector's integrations.")
    ] = None,
    connector_id: Annotated[
        str | None, typer.Option("--connector-id", help="Only integrations with this _connectorId.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print an array of `status --json` objects.")
    ] = False,
) -> None:
    """List the integrations the API holds: the install base.

    One line each: name, id, connector, version, mode, steps done of total, and whether it
    waits for a person or failed.
    """
    if connector is not None and connector_id is not None:
        fail("give at most one of --connector or --connector-id", 2)
    wanted = load(connector).manifest.connector_id if connector is not None else connector_id

    from engine.run.views import read_views

    filters = {"_connectorId": wanted} if wanted else {}
    if settings.embedded and not settings.sandbox_db.exists():
        docs: list[dict[str, Any]] = []  # nothing was installed with this home
    else:
        docs = with_api(settings, lambda api: read_views(api, **filters))
    which = f" of connector {wanted}" if wanted else ""
    _show_integrations(docs, as_json, f"no integrations{which} in {looked_in(settings)}")


LIST_HEADER = ("NAME", "ID", "CONNECTOR", "VERSION", "MODE", "STEPS", "STATE")


def _show_integrations(docs: list[dict[str, Any]], as_json: bool, none: str) -> None:
    """One line each under a header, in columns (or ``none``, on stderr); or JSON."""
    from engine.run.documents import status_of

    if as_json:
        typer.echo(json.dumps([status_of(d) for d in docs]))
        return
    if not docs:
        typer.echo(none, err=True)
        return
    rows: list[list[str]] = [list(LIST_HEADER)]
    for doc in docs:
        status = status_of(doc)
        steps = status["install"]
        done = sum(1 for s in steps if s["completed"] is True)
        state = "waiting" if status["waiting"] else "failed" if status["error"] else ""
        row = [doc.get("name") or "(no name)", status["_id"], doc.get("_connectorId")]
        row += [status["version"], status["mode"], f"{done}/{len(steps)}", state]
        rows.append([str(v) if v is not None else "-" for v in row])
    widths = [max(len(row[i]) for row in rows) for i in range(len(LIST_HEADER))]
    for cells in rows:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(cells, widths, strict=True)).rstrip())


@app.command(
    "history",
    epilog="Example:  smartconnector history 6b0480442d82113bd629b566 --json",
)
@common_options(API, RETRY)
def history_command(
    settings: Settings,
    integration_id: Annotated[str, typer.Argument(help="The integration.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the calls as a JSON array.")
    ] = False,
) -> None:
    """What ran on an integration, oldest first, from the journal.

    Each function call: time, phase, step, function, outcome (succeeded, failed or waiting)
    and seconds; then what the integration's document says now (waiting on, last error).
    Runs on Temporal are in Temporal's history, not here.
    """
    from engine.errors import NotFound
    from engine.run.journal import Journal
    from engine.run.views import read_view

    journal_path = settings.home / "journal.db"
    calls = Journal(journal_path).history(integration_id) if journal_path.exists() else []

    async def job(api: ApiClient) -> dict[str, Any] | None:
        try:
            return await read_view(api, integration_id)
        except NotFound:
            return None

    has_api = not settings.embedded or settings.sandbox_db.exists()
    doc = with_api(settings, job) if has_api else None
    if doc is None and not calls:
        fail(
            f"integration {integration_id} not found: no calls in the journal of home"
            f" {settings.home.resolve()} and no such integration in the API",
            6,
        )
    if as_json:
        typer.echo(json.dumps(calls))
        return
    _show_history(integration_id, calls, doc)


def _show_history(
    integration_id: str, calls: list[dict[str, Any]], doc: dict[str, Any] | None
) -> None:
    from engine.run.progress import RunState

    for call in calls:
        took = f"{call['seconds']:.2f}s" if call["seconds"] is not None else "-"
        typer.echo(
            f"{call['time']}  {call['phase']:<12} {call['step'] or '(connector)'}:"
            f" {call['function']}  {call['outcome']}  {took}"
        )
    if doc is None:
        typer.echo(f"integration {integration_id} no longer exists")
        return
    state = RunState.of(doc)
    if state.waiting:
        typer.echo(f"now: waiting at {state.waiting.get('step')}: {state.waiting.get('message')}")
    elif state.error:
        typer.echo(f"now: failed at {state.error.get('step')}: {state.error.get('message')}")
    else:
        typer.echo(f"now: mode {doc.get('mode')}")


PageHost = Annotated[str, typer.Option(help="Address to serve on (loopback by default).")]
OfferedConnectors = Annotated[
    list[Path] | None,
    typer.Option("--connector", help="A connector to offer with an Install button (repeat)."),
]


@app.command(
    "ui",
    epilog=(
        "Example:  smartconnector ui --connector examples/bigcommerce_netsuite"
        "   (then open the printed URL)"
    ),
)
@common_options(API, TEMPORAL, RETRY)
def ui_command(
    settings: Settings,
    host: PageHost = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8702,
    connector: OfferedConnectors = None,
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "127.0.0.1",
) -> None:
    """Serve the install page, for a person in a browser.

    Install, answer a step's questions, verify, retry, update and uninstall there; follow,
    pause, resume and abort rollouts at /rollouts (those on Temporal given its address).

    Prints the URL to open (with a session token) as its last line, then serves until
    Ctrl-C. Actions go through the engine exactly as the CLI's do.
    """
    import uvicorn

    from engine.ui import UiConfig, create_ui_app

    connectors = [load(d) for d in connector or []]
    serve_metrics(metrics_host, metrics_port)

    async def open_engine() -> Any:
        from engine.drivers.config import open_client
        from engine.drivers.runner import Engine
        from engine.run.journal import Journal

        api = guard(lambda: open_client(settings))
        return Engine(api, Journal(settings.home / "journal.db")), api.aclose

    from engine.cli._usage import claimed

    listening = claimed(host, port)
    port = listening.getsockname()[1]  # --port 0: the free one it took
    config = UiConfig(host, port, connectors, open_engine, settings.temporal_address)
    typer.echo(config.url)
    served = uvicorn.Config(create_ui_app(config), log_level="warning", access_log=False)
    uvicorn.Server(served).run(sockets=[listening])


def _this_cli() -> str:
    """How this command was run (``.venv/bin/smartconnector``), for advice to copy."""
    import sys

    invoked = Path(sys.argv[0])
    return str(invoked) if invoked.name == "smartconnector" else "smartconnector"


def _python() -> str:
    """The Python this command runs on (the one with the pytest plugin), relative if near."""
    import os
    import sys

    relative = os.path.relpath(sys.executable)
    return relative if not relative.startswith("..") else sys.executable
