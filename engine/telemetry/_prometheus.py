"""The Prometheus series, in a registry of their own, and the server that shows them."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

#: From a quick check to a function that waits on a slow ERP (step timeouts default to 300 s).
FUNCTION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """The engine's series (their names end in their unit, as Prometheus' guide asks; the
    client adds ``_total`` to counters), and the process' own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        self.function_calls = Counter(
            "smartconnector_function_calls",
            "Connector function calls, by how they ended (succeeded, failed, waiting,"
            " interrupted).",
            ["function", "phase", "outcome"],
            registry=self.registry,
        )
        self.function_seconds = Histogram(
            "smartconnector_function_seconds",
            "How long connector function calls took.",
            ["function", "phase"],
            buckets=FUNCTION_BUCKETS,
            registry=self.registry,
        )
        self.api_requests = Counter(
            "smartconnector_api_requests",
            "Requests to the integrator.io API, retries included, by status (error: no answer).",
            ["method", "status"],
            registry=self.registry,
        )
        self.rate_wait = Counter(
            "smartconnector_api_rate_wait_seconds",
            "Time requests waited for the token's rate budget before going out.",
            registry=self.registry,
        )
        self.runs_in_flight = Gauge(
            "smartconnector_runs_in_flight",
            "Integration runs going on in this process (on a worker: slices of runs).",
            registry=self.registry,
        )
        self.rollout_integrations = Gauge(
            "smartconnector_rollout_integrations",
            "Integrations of each rollout this worker runs, by state.",
            ["rollout", "state"],
            registry=self.registry,
        )

    def function_call(self, function: str, phase: str, outcome: str, seconds: float) -> None:
        self.function_calls.labels(function, phase, outcome).inc()
        self.function_seconds.labels(function, phase).observe(seconds)

    def rollout(self, rollout: str, counts: Mapping[str, int]) -> None:
        for state, count in counts.items():
            self.rollout_integrations.labels(rollout, state).set(count)

    def serve(self, host: str, port: int) -> None:
        """Serve the text format at ``/metrics`` from a thread of this process."""
        start_http_server(port, addr=host, registry=self.registry)
