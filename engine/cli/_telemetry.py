"""The CLI's telemetry: a command's root span, and the servers' ``--metrics-port``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from engine.cli._app import app, fail

#: Commands that serve until stopped: their work is traced (runs, calls, requests), each
#: piece in the trace it belongs to, under no span of theirs.
SERVERS = frozenset({"worker", "ui", "sandbox serve", "extension serve"})

MetricsPort = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        min=1,
        max=65535,
        help="Serve Prometheus metrics at http://METRICS_HOST:PORT/metrics.",
        rich_help_panel="Telemetry",
    ),
]
MetricsHost = Annotated[
    str,
    typer.Option(
        "--metrics-host",
        help="Address the metrics are served on (loopback by default).",
        rich_help_panel="Telemetry",
    ),
]
TemporalMetricsPort = Annotated[
    int | None,
    typer.Option(
        "--temporal-metrics-port",
        min=1,
        max=65535,
        help="Serve the Temporal SDK's own metrics (its Prometheus exporter) at"
        " http://METRICS_HOST:PORT/metrics.",
        rich_help_panel="Telemetry",
    ),
]


@contextmanager
def traced(args: list[str]) -> Iterator[None]:
    """Run the command ``args`` names in its root span, when the environment asks for
    traces; every span is exported before the process leaves (it may leave by ``os._exit``)."""
    from engine import telemetry

    if not telemetry.from_environment():
        yield
        return
    name = " ".join(command_path(args))
    try:
        if name in SERVERS:
            yield
        else:
            with telemetry.command(" ".join(["smartconnector", name]).strip()):
                yield
    finally:
        telemetry.shutdown()


def command_path(args: list[str]) -> list[str]:
    """The (sub)command names at the start of ``args``: ``["sandbox", "serve"]``."""
    from typer.main import get_command_name

    group: Any = app
    path: list[str] = []
    for arg in args:
        groups = {g.name: g.typer_instance for g in group.registered_groups}
        commands = {
            c.name or get_command_name(c.callback.__name__) for c in group.registered_commands
        }
        if arg in groups:
            path.append(arg)
            group = groups[arg]
            continue
        if arg in commands:
            path.append(arg)
        break
    return path


def serve_metrics(host: str, port: int | None) -> None:
    """``--metrics-port``: count, and serve the counts; a port in use is exit 2."""
    if port is None:
        return
    from engine import telemetry

    try:
        telemetry.serve_metrics(host, port)
    except OSError as exc:
        fail(f"--metrics-port: cannot serve on {host}:{port}: {exc.strerror or exc}", 2)


def temporal_runtime(host: str, port: int | None) -> Any:
    """``--temporal-metrics-port``: Temporal's runtime with its Prometheus exporter there."""
    if port is None:
        return None
    from engine import telemetry

    try:
        return telemetry.temporal_runtime(host, port)
    except Exception as exc:  # the SDK's core says why it could not bind, as a RuntimeError
        fail(f"--temporal-metrics-port: cannot serve on {host}:{port}: {exc}", 2)
