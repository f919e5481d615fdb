"""Fault injection for the sandbox, as a network would fail a client.

``500`` and ``429`` answer before the request is applied. ``timeout`` and ``reset`` strike
before or after the request is applied (half each): after means the change was made but
the answer is lost, which is what a client's retry logic must survive.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import httpx

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

FAULT_KINDS = ("500", "429", "timeout", "reset")
#: Where :class:`AccessLog` leaves the server's transport for the fault injector to cut.
TRANSPORT_KEY = "sandbox.transport"


class FaultSpecError(ValueError):
    """A ``--faults`` value that cannot be parsed."""


def parse_faults(spec: str) -> dict[str, float]:
    """``"500:0.05,429:0.05,timeout:0.02"`` → ``{"500": 0.05, "429": 0.05, "timeout": 0.02}``."""
    faults: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        kind, sep, prob = part.partition(":")
        if not sep or kind not in FAULT_KINDS:
            kinds = ", ".join(FAULT_KINDS)
            raise FaultSpecError(f"--faults: {part!r} is not KIND:PROBABILITY, KIND one of {kinds}")
        try:
            value = float(prob)
        except ValueError:
            raise FaultSpecError(f"--faults: {part!r}: {prob!r} is not a number") from None
        if not 0 <= value <= 1:
            raise FaultSpecError(f"--faults: {part!r}: probability must be between 0 and 1")
        faults[kind] = value
    if sum(faults.values()) > 1:
        raise FaultSpecError("--faults: probabilities add up to more than 1")
    return faults


@dataclass
class FaultInjector:
    """ASGI wrapper that fails a seeded share of API requests (never ``/healthz``)."""

    app: ASGIApp
    faults: dict[str, float]
    seed: int | None = None
    delay: float = 5.0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _draw(self) -> tuple[str | None, bool]:
        roll, after = self._rng.random(), self._rng.random() < 0.5
        for kind, probability in self.faults.items():
            if roll < probability:
                return kind, after
            roll -= probability
        return None, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        kind, after = self._draw()
        if kind in ("500", "429"):
            await _answer_fault(send, int(kind))
        elif kind in ("timeout", "reset"):
            if after:
                await self.app(scope, receive, _swallow)
            await self._drop(kind, scope)
        else:
            await self.app(scope, receive, send)

    async def _drop(self, kind: str, scope: Scope) -> None:
        if kind == "timeout":
            await asyncio.sleep(self.delay)
        transport = scope.get(TRANSPORT_KEY)
        if transport is None:  # in-process (httpx ASGI transport): fail as the network would
            raise httpx.RemoteProtocolError(f"injected fault: connection {kind}")
        transport.abort()


async def _swallow(message: Message) -> None:
    """Drop the answer of a request whose connection is about to fail."""


async def _answer_fault(send: Send, status: int) -> None:
    code = "rate_limited" if status == 429 else "server_error"
    body = json.dumps({"errors": [{"code": code, "message": "injected fault"}]}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 429:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class AccessLog:
    """Outermost ASGI wrapper: one log line per request (method, path, status)."""

    app: ASGIApp
    log: Callable[..., Any]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # uvicorn's send is a bound method of the request cycle, which owns the transport
        scope[TRANSPORT_KEY] = getattr(getattr(send, "__self__", None), "transport", None)
        status: list[int] = []

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.log(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status[0] if status else "dropped",
            )
