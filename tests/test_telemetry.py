"""Telemetry (SPEC §9): one trace per command, its spans and their attributes, the metrics,
nothing secret in either, and nothing at all when it is off."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from engine import telemetry
from engine.client import ApiClient
from engine.drivers.runner import Engine
from engine.errors import StepFailed, WaitingForUser
from engine.pytest_plugin import write_connector_folder
from engine.telemetry._prometheus import Metrics
from engine.telemetry._traces import Tracing, url_full
from installers import load_connector
from installers.fakes import FakeConnector

from .conftest import CLI, ROOT, run_cli
from .otlp import ApiServer, Receiver

Fake = Callable[..., FakeConnector]
SECRETS = ("s3cret-answer", "settings-value-42")
ASKING = """
from installers import Field, Registry, UserActionRequired
registry = Registry("asking")

@registry.function("ask")
def ask(ctx):
    if not ctx.input:
        raise UserActionRequired("Your key", fields=[Field("key", "Key", secret=True)])

@registry.function("noop")
def noop(ctx):
    return None

@registry.function("persist")
def persist(ctx):
    raise ValueError("refused " + ctx.settings["password"] + " " + ctx.input.get("key", ""))
"""


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Traces on, into memory, for this test only."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.use(tracing=Tracing(provider))
    yield exporter
    telemetry.shutdown()


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    """Metrics on, for this test only."""
    counted = Metrics()
    telemetry.use(metrics=counted)
    yield counted
    telemetry.shutdown()


def named(spans: tuple[ReadableSpan, ...] | list[ReadableSpan], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_an_install_is_one_trace_of_its_run_calls_and_requests(
    spans: InMemorySpanExporter,
    smartconnector_engine: Engine,
    sandbox_api: ApiClient,
    fake_connector: Fake,
) -> None:
    """Root span, a run span under it, a call span per function under the run, a client
    span per request, all one trace; a second install is another trace."""
    with telemetry.command("smartconnector install"):
        doc = await smartconnector_engine.install(fake_connector(["a", "b"]).connector())
    done = spans.get_finished_spans()
    (root,) = named(done, "smartconnector install")
    (run,) = named(done, "smartconnector.run")
    calls = named(done, "call ")
    requests = [s for s in done if s.kind is SpanKind.CLIENT]
    assert {s.context.trace_id for s in done} == {root.context.trace_id}
    assert root.parent is None and parent_of(run) == root.context.span_id
    assert dict(run.attributes or {}) == {
        "integration.id": doc["_id"],
        "integration.mode": "install",
    }
    assert [(c.attributes or {}).get("step.name") for c in calls] == ["a", "b"]
    for call in calls:
        attributes = dict(call.attributes or {})
        assert parent_of(call) == run.context.span_id
        assert attributes["integration.id"] == doc["_id"]
        assert attributes["function.name"] == f"install {attributes['step.name']}"
        assert attributes["outcome"] == "succeeded" and call.status.status_code is StatusCode.UNSET
    assert len(requests) >= 4 and {s.name for s in requests} <= {"GET", "POST", "PATCH", "PUT"}
    assert {parent_of(r) for r in requests} <= {root.context.span_id, run.context.span_id}
    patch = next(r for r in requests if r.name == "PATCH")
    assert dict(patch.attributes or {}) == {
        "http.request.method": "PATCH",
        "url.full": f"{sandbox_api.base_url}/integrations/{doc['_id']}",
        "server.address": httpx.URL(sandbox_api.base_url).host,
        "server.port": 80,
        "http.response.status_code": 200,
    }
    spans.clear()
    with telemetry.command("smartconnector install"):
        await smartconnector_engine.install(fake_connector(["a"]).connector())
    assert {s.context.trace_id for s in spans.get_finished_spans()} != {root.context.trace_id}


async def test_a_call_that_waits_or_fails_says_so(
    spans: InMemorySpanExporter, smartconnector_engine: Engine, fake_connector: Fake
) -> None:
    """A step waiting for a person: outcome waiting, not an error; a failing one: outcome
    failed, an error whose description names only the exception's type."""
    fake = fake_connector(["a", "b"])
    fake.fail("b", times=1)
    with pytest.raises(StepFailed) as failure:
        await smartconnector_engine.install(fake.connector())
    (failed,) = [s for s in named(spans.get_finished_spans(), "call ") if s.name.endswith(" b")]
    assert failed.attributes and failed.attributes["outcome"] == "failed"
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == failed.attributes["error.type"] == "StepFailed"
    assert "fake failure" not in repr(failed.to_json())

    spans.clear()
    asking = fake_connector(["a"])
    asking.installer("a").behaviour = lambda call: (_ for _ in ()).throw(
        __import__("installers").UserActionRequired("Log in")
    )
    with pytest.raises(WaitingForUser):
        await smartconnector_engine.install(asking.connector())
    (waiting,) = named(spans.get_finished_spans(), "call ")
    assert waiting.attributes and waiting.attributes["outcome"] == "waiting"
    assert waiting.status.status_code is StatusCode.UNSET
    assert failure.value.context["integration_id"]


async def test_metrics_count_calls_requests_and_runs(
    metrics: Metrics, smartconnector_engine: Engine, fake_connector: Fake
) -> None:
    """Function calls by outcome and their seconds, API requests by status, runs in flight
    back to zero; time waiting for the rate budget is counted."""
    fake = fake_connector(["a", "b"])
    fake.fail("b", times=1)
    with pytest.raises(StepFailed):
        await smartconnector_engine.install(fake.connector())
    value = metrics.registry.get_sample_value
    calls = "smartconnector_function_calls_total"
    assert value(calls, {"function": "install a", "phase": "install", "outcome": "succeeded"}) == 1
    assert value(calls, {"function": "install b", "phase": "install", "outcome": "failed"}) == 1
    histogram = "smartconnector_function_seconds_count"
    assert value(histogram, {"function": "install a", "phase": "install"}) == 1
    assert (
        value("smartconnector_api_requests_total", {"method": "PATCH", "status": "200"}) or 0
    ) >= 2
    assert value("smartconnector_runs_in_flight") == 0
    assert value("smartconnector_api_rate_wait_seconds_total") is not None


def test_url_full_keeps_no_credentials_and_no_query_value() -> None:
    """``url.full`` drops user and password and redacts every query value (an extension's
    ``access_token`` may be one)."""
    url = httpx.URL("https://me:pw@ext.example:8443/function?access_token=tok&x=1")
    assert url_full(url) == "https://ext.example:8443/function?access_token=REDACTED&x=REDACTED"
    assert url_full(httpx.URL("http://h/v1/a")) == "http://h/v1/a"


async def test_no_token_secret_answer_or_setting_in_any_span_or_series(
    spans: InMemorySpanExporter,
    metrics: Metrics,
    smartconnector_engine: Engine,
    sandbox_api: ApiClient,
    tmp_path: Path,
) -> None:
    """Ask for a secret, answer it, save settings whose function fails quoting both: neither
    they nor the API token are in any span (attributes, status, events) or series."""
    manifest = {
        "name": "Asking",
        "_connectorId": "asking",
        "version": "1.0.0",
        "persistSettingsFunction": "persist",
        "install": [{"name": "Key", "installerFunction": "ask", "uninstallerFunction": "noop"}],
    }
    connector = load_connector(write_connector_folder(tmp_path / "asking", manifest, ASKING))
    with pytest.raises(WaitingForUser) as waiting:
        await smartconnector_engine.install(connector)
    integration_id = waiting.value.context["integration_id"]
    await smartconnector_engine.resume(integration_id, connector, input={"key": SECRETS[0]})
    with pytest.raises(StepFailed):
        await smartconnector_engine.save_settings(
            integration_id, {"password": SECRETS[1]}, connector
        )
    exported = json.dumps([json.loads(s.to_json()) for s in spans.get_finished_spans()])
    scraped = httpx.get(_serve(metrics)).text
    assert "smartconnector_function_calls_total" in scraped and "call persist" in exported
    for secret in (*SECRETS, sandbox_api.bearer_token()):
        assert secret not in exported and secret not in scraped


def _serve(metrics: Metrics) -> str:
    """Serve ``metrics`` on a free loopback port; the URL to scrape."""
    from .conftest import free_port

    port = free_port()
    metrics.serve("127.0.0.1", port)
    return f"http://127.0.0.1:{port}/metrics"


# -- through the CLI: a real exporter to a real receiver --------------------------------------

NOOP = """
from installers import Registry
registry = Registry("noop")

@registry.function("noop")
def noop(ctx):
    return None
"""


def noop_connector(directory: Path, steps: int = 3) -> Path:
    manifest = {
        "name": "Noop",
        "_connectorId": "noop",
        "version": "1.0.0",
        "install": [
            {"name": f"s{i}", "installerFunction": "noop", "uninstallerFunction": "noop"}
            for i in range(steps)
        ],
    }
    return write_connector_folder(directory, manifest, NOOP)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An OTLP/HTTP receiver on a loopback port."""
    received = Receiver()
    yield received
    received.close()


def test_an_install_through_the_cli_exports_one_trace_whose_requests_carry_it(
    receiver: Receiver, tmp_path: Path
) -> None:
    """With OTEL_EXPORTER_OTLP_ENDPOINT, `install` exports one trace: its root span, a
    call span per function, a client span per request; each request to the API carried that
    trace's traceparent, from its own client span. A second install is another trace."""
    api = ApiServer(tmp_path / "api.db")
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_SERVICE_NAME": "installer-under-test",
        "SMARTCONNECTOR_API_URL": api.url,
        "SMARTCONNECTOR_API_TOKEN": api.token(),
    }
    try:
        connector = noop_connector(tmp_path / "noop")
        for _ in range(2):
            done = run_cli("install", str(connector), home=tmp_path / "home", env=env)
            assert done.returncode == 0, done.stderr
    finally:
        api.close()
    spans = receiver.wait_for(lambda s: len({x.trace_id for x in s if not x.parent_id}) >= 2)
    roots = [s for s in spans if not s.parent_id]
    assert [r.name for r in roots] == ["smartconnector install"] * 2
    first = [s for s in spans if s.trace_id == roots[0].trace_id]
    assert {s.service for s in first} == {"installer-under-test"}
    assert [s.attributes["step.name"] for s in first if s.name == "call noop"] == ["s0", "s1", "s2"]
    assert {s.attributes["outcome"] for s in first if s.name == "call noop"} == {"succeeded"}
    clients = {s.span_id: s for s in first if s.kind == 3}  # SPAN_KIND_CLIENT
    carried = [parent for _, path, parent in api.seen[: len(clients)]]
    assert len(clients) >= 5 and all(p is not None for p in carried)
    for parent in carried:
        _, trace_id, span_id, _ = str(parent).split("-")
        assert trace_id == roots[0].trace_id and span_id in clients
    assert {p.split("-")[1] for _, _, p in api.seen if p} == {r.trace_id for r in roots}


def modules_after(args: list[str], env: dict[str, str], home: Path) -> list[str]:
    """The telemetry modules a CLI process imported by the time ``args`` finished."""
    code = (
        "import sys, json\n"
        f"sys.argv = ['smartconnector', *{args!r}]\n"
        "from engine.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "names = ('opentelemetry.sdk', 'opentelemetry.exporter', 'prometheus_client',"
        " 'engine.telemetry._', 'requests', 'temporalio.contrib')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(names))))\n"
    )
    keep = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**keep, "SMARTCONNECTOR_HOME": str(home), **env},
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_off_nothing_is_imported_and_disabled_means_off(receiver: Receiver, tmp_path: Path) -> None:
    """Without the variables, or with OTEL_SDK_DISABLED=true beside them, an install imports
    no SDK, exporter or metrics module and exports nothing."""
    connector = str(noop_connector(tmp_path / "noop", 2))
    assert modules_after(["install", connector], {}, tmp_path / "home") == []
    disabled = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SDK_DISABLED": "true"}
    assert modules_after(["install", connector], disabled, tmp_path / "home") == []
    assert receiver.spans == []


def test_without_the_sdk_the_variables_are_ignored_with_a_warning(tmp_path: Path) -> None:
    """An install that asks for traces but lacks the telemetry extra says so, and installs."""
    code = (
        "import sys\n"
        "sys.modules['opentelemetry.sdk'] = None  # as if the extra were not installed\n"
        f"sys.argv = ['smartconnector', 'install', {str(noop_connector(tmp_path / 'n', 1))!r}]\n"
        "from engine.cli import main\n"
        "main()\n"
    )
    env = {
        **{k: v for k, v in __import__("os").environ.items() if not k.startswith("OTEL_")},
        "SMARTCONNECTOR_HOME": str(tmp_path / "home"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'smartconnector[telemetry]'" in done.stderr
    assert CLI  # the same interpreter and package as the CLI the other tests run


#: Our series and their labels, as SPEC §9 names them.
SERIES = {
    "smartconnector_function_calls_total": ["function", "phase", "outcome"],
    "smartconnector_function_seconds": ["function", "phase"],
    "smartconnector_api_requests_total": ["method", "status"],
    "smartconnector_api_rate_wait_seconds_total": [],
    "smartconnector_runs_in_flight": [],
    "smartconnector_rollout_integrations": ["rollout", "state"],
}


def test_the_readme_table_names_every_series_and_span_attribute(metrics: Metrics) -> None:
    """The README's Telemetry table lists each of our series with its labels, and each span
    name with the attributes the engine sets."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Telemetry", 1)[1].split("\n\n| kind |", 1)[1].split("\n\n", 1)[0]
    rows = {
        cells[1].strip("` "): cells[2]
        for line in table.splitlines()[2:]
        if (cells := line.split("|")[1:])
    }
    families = {
        f.name + ("_total" if f.type == "counter" else "")
        for f in metrics.registry.collect()
        if f.name.startswith("smartconnector_")
    }
    assert families == set(SERIES)
    for name, labels in SERIES.items():
        assert re.findall(r"`(\w+)`", rows[name]) == labels, name
    attributes = {
        "smartconnector <command>": ["process.exit.code"],
        "smartconnector.run": ["integration.id", "integration.mode"],
        "call <function>": [
            *("integration.id", "step.name", "function.name", "function.phase", "outcome")
        ],
    }
    for name, expected in attributes.items():
        assert re.findall(r"`([\w.]+)`", rows[name]) == expected, name


@pytest.mark.slow
def test_the_benchmark_compares_with_the_code_before_telemetry() -> None:
    """The benchmark runs at tiny sizes: off and before side by side, and tracing on."""
    from benchmarks import _common
    from benchmarks.telemetry import telemetry as benchmark

    tiny = _common.Sizes(
        overhead_steps=3, repeats=1, request_steps=(1,), fleet=1, fleet_steps=1, rollout=1
    )
    rows = benchmark(tiny)
    assert len(rows) == 4 and all(r.result.startswith("CPU ratio ") for r in rows[:3])
    assert rows[3].benchmark.startswith("telemetry on")
