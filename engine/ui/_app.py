"""The install page's routes, security and background runs."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

from engine.client import ApiClient, Document
from engine.documents import compare_versions
from engine.errors import LeaseHeld, NotFound, SmartConnectorError
from engine.runner import Engine
from engine.ui import _pages
from engine.writer import Owner, check_lease
from installers import Connector

COOKIE = "smartconnector_session"
#: How often the page's event stream looks at the document.
FOLLOW_EVERY = 0.25


class CsrfMissing(Exception):
    """An action posted without the page's CSRF token."""


@dataclass
class UiConfig:
    """What the page serves: its address, the connectors offered, how to reach the API."""

    host: str
    port: int
    connectors: list[Connector]
    open_engine: Callable[[], Awaitable[tuple[Engine, Callable[[], Awaitable[None]]]]]
    session: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/?token={self.session}"

    def hosts(self) -> set[str]:
        names = {self.host} | ({"localhost"} if self.host == "127.0.0.1" else set())
        return {f"{n}:{self.port}" for n in names}


@dataclass
class Runs:
    """The background runs the page started, one per integration at most."""

    tasks: dict[str, asyncio.Task[Any]] = field(default_factory=dict)

    def running(self, integration_id: str) -> bool:
        task = self.tasks.get(integration_id)
        return task is not None and not task.done()

    def start(self, integration_id: str, work: Awaitable[Any]) -> asyncio.Task[Any]:
        async def quietly() -> None:
            with contextlib.suppress(SmartConnectorError):  # the document says what happened
                await work

        task = asyncio.create_task(quietly())
        self.tasks[integration_id] = task
        return task


def create_ui_app(config: UiConfig) -> FastAPI:
    """The install page over ``config``."""
    app = FastAPI(title="smartconnector ui", openapi_url=None, docs_url=None, redoc_url=None)
    runs = Runs()
    holder: dict[str, Any] = {}
    by_id = {c.manifest.connector_id: c for c in config.connectors}

    async def engine() -> Engine:
        if "engine" not in holder:
            holder["engine"], holder["close"] = await config.open_engine()
        return holder["engine"]  # type: ignore[no-any-return]

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        if request.headers.get("host") not in config.hosts():
            return HTMLResponse("wrong Host", 421)
        given = request.query_params.get("token")
        if given is not None and hmac.compare_digest(given, config.session):
            response = RedirectResponse(request.url.remove_query_params("token"), 303)
            response.set_cookie(COOKIE, config.session, httponly=True, samesite="strict")
            return response
        cookie = request.cookies.get(COOKIE) or ""
        if not hmac.compare_digest(cookie, config.session):
            return HTMLResponse(
                _pages.page("Sign in", "<h1>Open the URL the command printed</h1>"), 401
            )
        return await call_next(request)  # type: ignore[no-any-return]

    async def posted(request: Request) -> dict[str, str]:
        """The form of an action, once its CSRF token is checked (403 without it)."""
        # the page's forms are urlencoded: no multipart parser needed
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        sent = form.pop("csrf_token", None) or request.headers.get("x-csrf-token") or ""
        if not hmac.compare_digest(sent, config.csrf):
            raise CsrfMissing
        return form

    @app.exception_handler(CsrfMissing)
    async def csrf_missing(request: Request, exc: CsrfMissing) -> Response:
        return HTMLResponse(_pages.page("Refused", "<h1>Missing CSRF token</h1>"), 403)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        docs = await (await engine()).api.list("integrations")
        body = _pages.install_base(docs, config.connectors, config.csrf)
        return HTMLResponse(_pages.page("smartconnector", body))

    def image_for(connector: Connector | None) -> Callable[[dict[str, Any]], str]:
        def image_of(step: dict[str, Any]) -> str:
            url = str(step.get("imageURL") or "")
            if connector is not None and url and _inside(connector.directory, url):
                return f"/images/{connector.manifest.connector_id}/{url.lstrip('/')}"
            return "/placeholder.svg"

        return image_of

    async def connector_of(doc: Document) -> Connector | None:
        found = by_id.get(str(doc.get("_connectorId")))
        if found is not None:
            return found
        with contextlib.suppress(SmartConnectorError):
            return (await engine()).find_connector(str(doc["_id"]), doc)
        return None

    async def render(integration_id: str, alert: str | None = None, status: int = 200) -> Response:
        try:
            doc = await (await engine()).api.get("integrations", integration_id)
        except NotFound:
            return HTMLResponse(_pages.page("Not found", "<h1>No such integration</h1>"), 404)
        connector = await connector_of(doc)
        newer = None
        installed = str(doc.get("version") or "")
        if (
            connector is not None
            and doc.get("mode") == "settings"
            and compare_versions(connector.manifest.version, installed) > 0
        ):
            newer = connector.manifest.version
        body = _pages.integration_page(
            doc, image_for(connector), config.csrf, runs.running(integration_id), newer
        )
        return HTMLResponse(
            _pages.page(str(doc.get("name")), body, str(doc.get("mode")), alert), status
        )

    @app.get("/integrations/{integration_id}", response_class=HTMLResponse)
    async def integration(integration_id: str) -> Response:
        try:
            await (await engine()).api.get("integrations", integration_id)
        except NotFound:  # uninstalled (perhaps just now, by this page): the install base
            return RedirectResponse("/", 303)
        return await render(integration_id)

    @app.get("/integrations/{integration_id}/events")
    async def events(integration_id: str) -> StreamingResponse:
        return StreamingResponse(follow(integration_id), media_type="text/event-stream")

    async def follow(integration_id: str) -> AsyncIterator[str]:
        """The steps as the document has them, sent again whenever it changes."""
        last: Any = None
        while True:
            try:
                doc = await (await engine()).api.get("integrations", integration_id)
            except NotFound:
                yield "event: gone\ndata: {}\n\n"
                return
            seen = (doc.get("lastModified"), runs.running(integration_id))
            if seen != last:
                last = seen
                connector = await connector_of(doc)
                steps = _pages.steps_list(doc, image_for(connector), config.csrf, seen[1])
                data = json.dumps({"steps": steps, "mode": doc.get("mode")})
                yield f"event: steps\ndata: {data}\n\n"
            await asyncio.sleep(FOLLOW_EVERY)

    async def refused(integration_id: str) -> Response | None:
        """409 with the engine's message while a run holds the integration; else None."""
        doc = await (await engine()).api.get("integrations", integration_id)
        message = None
        if runs.running(integration_id):
            message = f"integration {integration_id} is being run: wait for it to stop"
        else:
            try:
                check_lease(doc, Owner.here())
            except LeaseHeld as exc:
                message = str(exc)
        return None if message is None else await render(integration_id, message, 409)

    async def act(integration_id: str, work: Callable[[Engine], Awaitable[Any]]) -> Response:
        held = await refused(integration_id)
        if held is not None:
            return held
        running = runs.start(integration_id, work(await engine()))
        await asyncio.sleep(0)  # let it take the lease before the page is shown
        del running
        return RedirectResponse(f"/integrations/{integration_id}", 303)

    @app.post("/install")
    async def install(request: Request) -> Response:
        connector = by_id.get(str((await posted(request)).get("connector")))
        if connector is None:
            return HTMLResponse(_pages.page("Unknown", "<h1>Unknown connector</h1>"), 404)
        the_engine = await engine()
        before = set(the_engine.known)
        task = runs.start("(new)", the_engine.install(connector))
        while not task.done() and not set(the_engine.known) - before:
            await asyncio.sleep(0.02)
        made = set(the_engine.known) - before
        if not made:
            return await index_with_alert("the install did not start: see the command's log")
        integration_id = made.pop()
        runs.tasks[integration_id] = task
        return RedirectResponse(f"/integrations/{integration_id}", 303)

    async def index_with_alert(message: str) -> Response:
        docs = await (await engine()).api.list("integrations")
        body = _pages.install_base(docs, config.connectors, config.csrf)
        return HTMLResponse(_pages.page("smartconnector", body, alert=message), 409)

    @app.post("/integrations/{integration_id}/verify")
    async def verify(integration_id: str, request: Request) -> Response:
        answers = await posted(request)
        return await act(integration_id, lambda e: e.resume(integration_id, input=answers or None))

    @app.post("/integrations/{integration_id}/retry")
    async def retry(integration_id: str, request: Request) -> Response:
        await posted(request)
        return await act(integration_id, lambda e: e.resume(integration_id))

    @app.post("/integrations/{integration_id}/update")
    async def update(integration_id: str, request: Request) -> Response:
        await posted(request)
        doc = await (await engine()).api.get("integrations", integration_id)
        connector = await connector_of(doc)
        return await act(integration_id, lambda e: e.update(integration_id, connector))

    @app.post("/integrations/{integration_id}/uninstall")
    async def uninstall(integration_id: str, request: Request) -> Response:
        if (await posted(request)).get("confirm") != "yes":
            doc = await (await engine()).api.get("integrations", integration_id)
            body = _pages.confirm_uninstall(doc, config.csrf)
            return HTMLResponse(_pages.page(str(doc.get("name")), body, str(doc.get("mode"))))
        return await act(integration_id, lambda e: e.uninstall(integration_id))

    @app.post("/integrations/{integration_id}/settings")
    async def save_settings(integration_id: str, request: Request) -> Response:
        form = await posted(request)
        held = await refused(integration_id)
        if held is not None:
            return held
        try:
            pending = json.loads(form.get("settings") or "")
            if not isinstance(pending, dict):
                raise ValueError("the settings must be a JSON object")
            await (await engine()).save_settings(integration_id, pending)
        except (ValueError, SmartConnectorError) as exc:
            return await render(integration_id, f"settings not saved: {exc}", 400)
        return RedirectResponse(f"/integrations/{integration_id}", 303)

    @app.get("/images/{connector_id}/{path:path}")
    async def image(connector_id: str, path: str) -> Response:
        connector = by_id.get(connector_id)
        if connector is None or not _inside(connector.directory, path):
            return Response(_pages.PLACEHOLDER_SVG, media_type="image/svg+xml")
        target = (connector.directory / path.lstrip("/")).resolve()
        return Response(target.read_bytes(), media_type=_media_type(target))

    @app.get("/placeholder.svg")
    async def placeholder() -> Response:
        return Response(_pages.PLACEHOLDER_SVG, media_type="image/svg+xml")

    @app.on_event("shutdown")
    async def close() -> None:
        if "close" in holder:
            await holder["close"]()

    return app


def _inside(directory: Path, url: str) -> bool:
    """Whether ``url`` names a file under ``directory`` (and does not climb out of it)."""
    if "://" in url:
        return False
    target = (directory / url.lstrip("/")).resolve()
    return target.is_file() and target.is_relative_to(directory.resolve())


def _media_type(path: Path) -> str:
    return {
        ".png": "image/png",
        ".svg": "image/svg+xml",
        ".jpg": "image/jpeg",
        ".gif": "image/gif",
    }.get(path.suffix.lower(), "application/octet-stream")


__all__ = ["ApiClient", "UiConfig", "create_ui_app"]
