"""Spans, with the OpenTelemetry API; the SDK and its OTLP/HTTP exporter when the
environment asks for them (imported only then)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

if TYPE_CHECKING:
    import httpx
    from opentelemetry.util.types import AttributeValue

#: The instrumentation scope of every span the engine makes.
SCOPE = "smartconnector"
SERVICE = "smartconnector"
#: Seconds a command waits at its end for its spans to be exported: the SDK's default
#: export timeout (OTEL_EXPORTER_OTLP_TIMEOUT), once rather than once per batch.
EXIT_WAIT = 10.0


def url_full(url: httpx.URL) -> str:
    """``url.full`` as the semantic conventions ask: without credentials, and with every
    query value redacted (an extension's ``access_token`` may travel there)."""
    bare = str(url.copy_with(username=None, password=None, query=None))
    names = [name for name, _ in url.params.multi_items()]
    return bare + ("?" + "&".join(f"{n}=REDACTED" for n in names) if names else "")


def failed(span: trace.Span, error_type: str) -> None:
    """Mark ``span`` failed, saying only the kind of failure: an exception's message may
    carry what a span must not (a setting, an answer)."""
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, error_type))


class Tracing:
    """The engine's spans, from one tracer provider."""

    def __init__(self, provider: trace.TracerProvider, *, owned: bool = False) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer(SCOPE, _version())
        #: Made here from the environment, so shut down here at exit.
        self._owned = owned

    @classmethod
    def from_environment(cls) -> Tracing:
        """The SDK as its variables configure it (endpoint, headers, timeout, service name,
        resource, batching), exporting over OTLP/HTTP protobuf.

        It is not made the global provider: libraries that trace with that one would add
        spans of their own, FastAPI's server spans among them, which record the query string
        (the install page's session token, an extension's ``access_token``)."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({"service.version": _version()})
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": SERVICE}))
        provider = TracerProvider(resource=resource, shutdown_on_exit=False)  # close() does
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider, owned=True)

    def close(self) -> None:
        """Export every span that ended; shut the SDK down if it was made here, waiting at
        most :data:`EXIT_WAIT` for an unreachable receiver (the SDK would retry each batch
        for up to that long, then wait on the next)."""
        if not self._owned:
            getattr(self.provider, "force_flush", lambda: None)()
            return
        shutdown = getattr(self.provider, "shutdown", lambda: None)
        exporting = threading.Thread(target=shutdown, name="export spans", daemon=True)
        exporting.start()
        exporting.join(EXIT_WAIT)

    @contextmanager
    def span(
        self,
        name: str,
        attributes: Mapping[str, AttributeValue],
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> Iterator[trace.Span]:
        """A span current for what runs inside; failures are marked by the caller."""
        with self.tracer.start_as_current_span(
            name,
            kind=kind,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield span

    async def send(
        self, http: httpx.AsyncClient, request: httpx.Request, resends: int
    ) -> httpx.Response:
        """``request`` in a client span whose ``traceparent`` it carries."""
        url = request.url
        attributes: dict[str, AttributeValue] = {
            "http.request.method": request.method,
            "url.full": url_full(url),
            "server.address": url.host,
        }
        port = url.port or {"http": 80, "https": 443}.get(url.scheme)
        if port is not None:
            attributes["server.port"] = port
        if resends:
            attributes["http.request.resend_count"] = resends
        with self.span(request.method, attributes, SpanKind.CLIENT) as span:
            propagate.inject(request.headers)
            try:
                response = await http.send(request)
            except BaseException as exc:
                failed(span, type(exc).__qualname__)
                raise
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                failed(span, str(response.status_code))
            return response


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("smartconnector")
    except PackageNotFoundError:  # run from a source tree
        return "0"


def temporal_interceptors(tracing: Tracing) -> list[Any]:
    """Temporal's tracing interceptor, on our tracer: a command's trace goes on in the
    workflows and activities it starts, on whichever worker runs them."""
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(tracing.tracer)]
