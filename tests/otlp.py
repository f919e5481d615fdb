"""A real OTLP/HTTP trace receiver, and an API server that notes each request's traceparent:
what the telemetry tests export to and install against."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import uvicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from sandbox import Store, create_app


@dataclass(frozen=True)
class Span:
    """A received span, as a collector sees it."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]
    status: int
    service: str
    scope: str


class Receiver:
    """``POST /v1/traces`` on a loopback port, decoding each export as a collector would."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                ok = self.path == "/v1/traces"
                if ok:
                    receiver.take(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self, request: ExportTraceServiceRequest) -> None:
        for resource in request.resource_spans:
            service = next(
                (
                    a.value.string_value
                    for a in resource.resource.attributes
                    if a.key == "service.name"
                ),
                "",
            )
            for scope in resource.scope_spans:
                with self.lock:
                    self.spans += [_span(s, service, scope.scope.name) for s in scope.spans]

    def wait_for(self, ready: Callable[[list[Span]], bool], within: float = 20) -> list[Span]:
        """The spans received, once ``ready`` says they are all there."""
        deadline = time.monotonic() + within
        while True:
            with self.lock:
                spans = list(self.spans)
            if ready(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.1)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _span(span: Any, service: str, scope: str) -> Span:
    attributes = {a.key: _value(a.value) for a in span.attributes}
    return Span(
        span.name,
        span.trace_id.hex(),
        span.span_id.hex(),
        span.parent_span_id.hex(),
        span.kind,
        attributes,
        span.status.code,
        service,
        scope,
    )


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class ApiServer:
    """The sandbox API served by uvicorn on a loopback port, noting the ``traceparent`` each
    request arrived with."""

    def __init__(self, db: Path) -> None:
        self.store = Store(db)
        self.seen: list[tuple[str, str, str | None]] = []
        app = create_app(self.store)

        async def noting(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                headers = dict(scope["headers"])
                parent = headers.get(b"traceparent")
                self.seen.append(
                    (scope["method"], scope["path"], parent.decode() if parent else None)
                )
            await app(scope, receive, send)

        config = uvicorn.Config(
            noting, host="127.0.0.1", port=0, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"

    def token(self) -> str:
        return self.store.create_token(["all.User"], label="test")

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
