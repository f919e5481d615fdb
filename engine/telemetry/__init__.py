"""Traces and metrics (SPEC §9): off unless asked for, and then costing one check.

Traces come from the OpenTelemetry SDK configured by its standard variables alone
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``,
``OTEL_SERVICE_NAME``, …; ``OTEL_SDK_DISABLED=true`` turns them off), exported over
OTLP/HTTP. Metrics are a Prometheus registry that ``worker`` and ``ui`` serve at
``/metrics`` when given ``--metrics-port``.

This module is a leaf: the API client and :mod:`installers.remote` call it. It imports
neither OpenTelemetry nor Prometheus until one is switched on; while both are off each hook
is a ``None`` check (the client's requests) or a shared ``nullcontext`` (runs and calls).

The names, as the README's table lists them::

    span "smartconnector <command>"   the command (not for servers: worker, ui, serve)
    span "smartconnector.run"          an integration run: integration.id, integration.mode
    span "call <function>"             a connector function call: integration.id,
                                       step.name, function.name, function.phase, outcome
    span "<METHOD>" (client)           an API or extension-server request:
                                       http.request.method, url.full, server.address,
                                       server.port, http.response.status_code,
                                       http.request.resend_count, error.type
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from engine.telemetry._prometheus import Metrics
    from engine.telemetry._traces import Tracing

__all__ = [
    "Probe",
    "command",
    "from_environment",
    "function_call",
    "in_flight",
    "integration_run",
    "metrics",
    "probe",
    "rollout_counts",
    "send",
    "serve_metrics",
    "shutdown",
    "temporal_interceptors",
    "temporal_runtime",
    "use",
]

_tracing: Tracing | None = None
_metrics: Metrics | None = None
_OFF: AbstractContextManager[None] = nullcontext()
EXTRA_MISSING = (
    "telemetry: {variable} is set, but the OpenTelemetry SDK is not installed"
    " (pip install 'smartconnector[telemetry]'): no trace is exported"
)


class Probe:
    """Watches the API client's requests while traces or metrics are on."""

    def __init__(self, tracing: Tracing | None, metrics: Metrics | None) -> None:
        self.tracing = tracing
        self.metrics = metrics

    def rate_waited(self, seconds: float) -> None:
        """A request waited ``seconds`` for the token's rate budget."""
        if self.metrics is not None:
            self.metrics.rate_wait.inc(seconds)

    async def send(
        self, http: httpx.AsyncClient, request: httpx.Request, *, resends: int = 0, api: bool = True
    ) -> httpx.Response:
        """``request`` in its client span; counted when it is an API request."""
        status = "error"
        try:
            if self.tracing is None:
                response = await http.send(request)
            else:
                response = await self.tracing.send(http, request, resends)
            status = str(response.status_code)
            return response
        finally:
            if api and self.metrics is not None:
                self.metrics.api_requests.labels(request.method, status).inc()


#: What a request of the API client checks: ``None`` while traces and metrics are off.
probe: Probe | None = None


def use(*, tracing: Tracing | None = None, metrics: Metrics | None = None) -> None:
    """Switch traces and metrics on with these (the CLI does, from the environment and its
    options; so may a program that embeds the engine, with its own tracer provider)."""
    global _tracing, _metrics, probe
    _tracing = tracing or _tracing
    _metrics = metrics or _metrics
    probe = Probe(_tracing, _metrics)


def wanted() -> str | None:
    """The variable that asks for traces, unless another says no (``OTEL_SDK_DISABLED``,
    ``OTEL_TRACES_EXPORTER=none``)."""
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return None
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        if env.get(variable, "").strip():
            return variable
    return None


def from_environment() -> bool:
    """Trace as the OpenTelemetry variables say, if they ask; whether traces are on."""
    if _tracing is not None:
        return True
    variable = wanted()
    if variable is None:
        return False
    try:
        from engine.telemetry._traces import Tracing

        tracing = Tracing.from_environment()
    except ImportError:  # the SDK or its exporter
        print(EXTRA_MISSING.format(variable=variable), file=sys.stderr)
        return False
    use(tracing=tracing)
    return True


def serve_metrics(host: str, port: int) -> None:
    """Count into a Prometheus registry and serve it at ``http://HOST:PORT/metrics``."""
    from engine.telemetry._prometheus import Metrics

    counted = _metrics or Metrics()
    counted.serve(host, port)
    use(metrics=counted)


def metrics() -> Metrics | None:
    """The registry being counted into, if metrics are on."""
    return _metrics


def shutdown() -> None:
    """Export the spans that ended and switch everything off: before the process exits."""
    global _tracing, _metrics, probe
    tracing, _tracing, _metrics, probe = _tracing, None, None, None
    if tracing is not None:
        tracing.close()


# -- hooks ------------------------------------------------------------------------------------


def command(name: str) -> AbstractContextManager[None]:
    """The root span of a command (``smartconnector install``), ending with its exit code."""
    return _OFF if _tracing is None else _command(_tracing, name)


@contextmanager
def _command(tracing: Tracing, name: str) -> Iterator[None]:
    with tracing.span(name, {}) as span:
        code, error = 0, None
        try:
            yield
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
            raise
        except KeyboardInterrupt:
            code = 130
            raise
        except BaseException as exc:  # left the CLI's handling: a traceback follows
            code, error = 1, type(exc).__qualname__
            raise
        finally:
            span.set_attribute("process.exit.code", code)
            if code not in (0, 7):  # 7: waiting for a person, as asked
                _failed(span, error or f"exit {code}")


def integration_run(integration_id: str, mode: str | None) -> AbstractContextManager[None]:
    """One run of one integration: its span, and the runs-in-flight gauge."""
    if _tracing is None and _metrics is None:
        return _OFF
    return _run(integration_id, mode)


@contextmanager
def _run(integration_id: str, mode: str | None) -> Iterator[None]:
    attributes = {"integration.id": integration_id, "integration.mode": mode or ""}
    with in_flight(), _span("smartconnector.run", attributes) as span:
        try:
            yield
        except BaseException as exc:
            if span is not None and _outcome(exc) == "failed":
                _failed(span, type(exc).__qualname__)
            raise


def in_flight() -> AbstractContextManager[None]:
    """The runs-in-flight gauge, up while inside (a worker's slice of a run)."""
    if _metrics is None:
        return _OFF
    return _metrics.runs_in_flight.track_inprogress()


def function_call(
    integration_id: str, step: str | None, function: str, phase: str
) -> AbstractContextManager[None]:
    """A connector function's call: its span and its series, with how it ended."""
    if _tracing is None and _metrics is None:
        return _OFF
    return _call(integration_id, step, function, phase)


@contextmanager
def _call(integration_id: str, step: str | None, function: str, phase: str) -> Iterator[None]:
    attributes = {
        "integration.id": integration_id,
        "step.name": step or "",
        "function.name": function,
        "function.phase": phase,
    }
    began, outcome = time.perf_counter(), "succeeded"
    with _span(f"call {function}", attributes) as span:
        try:
            yield
        except BaseException as exc:
            outcome = _outcome(exc)
            if span is not None and outcome == "failed":
                _failed(span, type(exc).__qualname__)
            raise
        finally:
            if span is not None:
                span.set_attribute("outcome", outcome)
            if _metrics is not None:
                _metrics.function_call(function, phase, outcome, time.perf_counter() - began)


async def send(http: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """Send a request that is not to the API (an extension server's) in its client span."""
    if probe is None:
        return await http.send(request)
    return await probe.send(http, request, api=False)


def rollout_counts(rollout: str, counts: Mapping[str, int]) -> None:
    """How many integrations of ``rollout`` are in each state, for ``/metrics``."""
    if _metrics is not None:
        _metrics.rollout(rollout, counts)


def temporal_interceptors() -> list[Any]:
    """For a Temporal client: carry the trace into workflows and activities, if tracing."""
    if _tracing is None:
        return []
    from engine.telemetry._traces import temporal_interceptors

    return temporal_interceptors(_tracing)


def _span(name: str, attributes: dict[str, Any]) -> AbstractContextManager[Any]:
    return nullcontext() if _tracing is None else _tracing.span(name, attributes)


def _failed(span: Any, error_type: str) -> None:
    from engine.telemetry._traces import failed

    failed(span, error_type)


def _outcome(exc: BaseException) -> str:
    """How a call that raised ``exc`` ended, in the journal's words."""
    from asyncio import CancelledError

    from engine.errors import Interrupted, WaitingForUser

    if isinstance(exc, WaitingForUser):
        return "waiting"
    if isinstance(exc, Interrupted | CancelledError | KeyboardInterrupt):
        return "interrupted"
    return "failed"


def temporal_runtime(host: str, port: int) -> Any:
    """A Temporal runtime whose SDK metrics (its Prometheus exporter) are served at
    ``http://HOST:PORT/metrics``; a client connected with it, and its workers, count there."""
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

    exporter = PrometheusConfig(bind_address=f"{host}:{port}")
    return Runtime(telemetry=TelemetryConfig(metrics=exporter))
