"""The install page's routes, security and background runs."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

from engine.client import ApiClient, Document
from engine.drivers.runner import Engine
from engine.errors import LeaseHeld, NotFound, SmartConnectorError
from engine.run.documents import compare_versions
from engine.run.writer import Owner, check_lease
from engine.ui import _base, _pages
from engine.ui._rollouts import RolloutsPage
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
    #: Where rollouts on Temporal are paused, resumed and aborted (their signals).
    temporal_address: str | None = None
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
    """The background runs the page started, one per integration at most, and the installs
    it saw finish (whose page confirms it until the next action)."""

    tasks: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    installed: set[str] = field(default_factory=set)

    def running(self, integration_id: str) -> bool:
        task = self.tasks.get(integration_id)
        return task is not None and not task.done()

    def start(
        self, integration_id: str, work: Awaitable[Any], *, installing: bool = False
    ) -> asyncio.Task[Any]:
        """Run ``work`` in the background; when ``installing`` and it ends installed, say so."""
        self.installed.discard(integration_id)

        async def quietly() -> None:
            with contextlib.suppress(SmartConnectorError):  # the document says what happened
                doc = await work
                if installing and isinstance(doc, dict) and doc.get("mode") == "settings":
                    self.installed.add(str(doc["_id"]))

        task = asyncio.create_task(quietly())
        self.tasks[integration_id] = task
        return task


class InstallPage:
    """The page's handlers, over one engine (opened on first use) and the runs it started."""

    def __init__(self, config: UiConfig) -> None:
        self.config = config
        self.runs = Runs()
        self.by_id = {c.manifest.connector_id: c for c in config.connectors}
        self._engine: Engine | None = None
        self._close: Callable[[], Awaitable[None]] | None = None

    async def engine(self) -> Engine:
        if self._engine is None:
            self._engine, self._close = await self.config.open_engine()
        return self._engine

    async def api(self) -> ApiClient:
        return (await self.engine()).api

    async def close(self) -> None:
        if self._close is not None:
            await self._close()

    # -- guards ---------------------------------------------------------------------------

    async def guard(self, request: Request, call_next: Any) -> Response:
        """The Host must be the address served; the session token (in the printed URL, which
        also sets it as a cookie) or its cookie must come with every request."""
        config = self.config
        if request.headers.get("host") not in config.hosts():
            return HTMLResponse("wrong Host", 421)
        given = request.query_params.get("token") or ""
        if hmac.compare_digest(given, config.session):  # the printed URL: remember it
            response: Response = await call_next(request)
            response.set_cookie(COOKIE, config.session, httponly=True, samesite="strict")
            return response
        cookie = request.cookies.get(COOKIE) or ""
        if not hmac.compare_digest(cookie, config.session):
            return HTMLResponse(
                _pages.page("Sign in", "<h1>Open the URL the command printed</h1>"), 401
            )
        return await call_next(request)  # type: ignore[no-any-return]

    async def posted(self, request: Request) -> dict[str, str]:
        """The form of an action, once its CSRF token is checked (403 without it)."""
        # the page's forms are urlencoded: no multipart parser needed
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        sent = form.pop("csrf_token", None) or request.headers.get("x-csrf-token") or ""
        if not hmac.compare_digest(sent, self.config.csrf):
            raise CsrfMissing
        return form

    @staticmethod
    async def csrf_missing(request: Request, exc: Exception) -> Response:
        return HTMLResponse(_pages.page("Refused", "<h1>Missing CSRF token</h1>"), 403)

    # -- pages ----------------------------------------------------------------------------

    async def index(self) -> HTMLResponse:
        return await self._index()

    async def _index(self, alert: str | None = None) -> HTMLResponse:
        docs = await (await self.engine()).integrations()
        now = datetime.now(UTC)
        body = _base.install_base(docs, self.config.connectors, self.config.csrf, now)
        return HTMLResponse(_pages.page("smartconnector", body, alert=alert), 409 if alert else 200)

    def image_for(self, connector: Connector | None) -> Callable[[dict[str, Any]], str]:
        def image_of(step: dict[str, Any]) -> str:
            url = str(step.get("imageURL") or "")
            if connector is not None and url and _inside(connector.directory, url):
                return f"/images/{connector.manifest.connector_id}/{url.lstrip('/')}"
            return "/placeholder.svg"

        return image_of

    async def connector_of(self, doc: Document) -> Connector | None:
        found = self.by_id.get(str(doc.get("_connectorId")))
        if found is not None:
            return found
        with contextlib.suppress(SmartConnectorError):
            return (await self.engine()).find_connector(str(doc["_id"]), doc)
        return None

    async def render(
        self, integration_id: str, alert: str | None = None, status: int = 200
    ) -> Response:
        try:
            doc = await (await self.engine()).status(integration_id)
        except NotFound:
            return HTMLResponse(_pages.page("Not found", "<h1>No such integration</h1>"), 404)
        body = await self.body_of(doc)
        page = _pages.page(str(doc.get("name")), body, str(doc.get("mode")), alert)
        return HTMLResponse(page, status)

    async def body_of(self, doc: dict[str, Any]) -> str:
        """The install page's content for ``doc`` as it is now."""
        connector = await self.connector_of(doc)
        newer = None
        installed = str(doc.get("version") or "")
        if (
            connector is not None
            and doc.get("mode") == "settings"
            and compare_versions(connector.manifest.version, installed) > 0
        ):
            newer = connector.manifest.version
        running = self.runs.running(str(doc["_id"]))
        image_of = self.image_for(connector)
        installed_now = str(doc["_id"]) in self.runs.installed
        return _pages.integration_page(
            doc, image_of, self.config.csrf, running, newer, installed_now
        )

    async def integration(self, integration_id: str) -> Response:
        try:
            await (await self.engine()).status(integration_id)
        except NotFound:  # uninstalled (perhaps just now, by this page): the install base
            return RedirectResponse("/", 303)
        return await self.render(integration_id)

    async def events(self, integration_id: str) -> StreamingResponse:
        return StreamingResponse(self.follow(integration_id), media_type="text/event-stream")

    async def follow(self, integration_id: str) -> AsyncIterator[str]:
        """The page's content as the document has it, sent again whenever it changes: the
        page takes all of it when the mode changed (an install that ends here shows its
        settings and actions without a reload), else only the state and the steps. An install
        seen to finish here is confirmed on the page."""
        last: Any = None
        while True:
            try:
                doc = await (await self.engine()).status(integration_id)
            except NotFound:
                yield "event: gone\ndata: {}\n\n"
                return
            seen = (doc.get("lastModified"), self.runs.running(integration_id), doc.get("mode"))
            if seen != last:
                if last is not None and last[2] == "install" and seen[2] == "settings":
                    self.runs.installed.add(integration_id)
                last = seen
                data = json.dumps({"mode": doc.get("mode"), "body": await self.body_of(doc)})
                yield f"event: steps\ndata: {data}\n\n"
            await asyncio.sleep(FOLLOW_EVERY)

    async def image(self, connector_id: str, path: str) -> Response:
        connector = self.by_id.get(connector_id)
        if connector is None or not _inside(connector.directory, path):
            return Response(_pages.PLACEHOLDER_SVG, media_type="image/svg+xml")
        target = (connector.directory / path.lstrip("/")).resolve()
        return Response(target.read_bytes(), media_type=_media_type(target))

    @staticmethod
    async def placeholder() -> Response:
        return Response(_pages.PLACEHOLDER_SVG, media_type="image/svg+xml")

    # -- actions --------------------------------------------------------------------------

    async def refused(self, doc: Document) -> Response | None:
        """409 with the engine's message while a run holds the integration; else None."""
        integration_id = str(doc["_id"])
        message = None
        if self.runs.running(integration_id):
            message = f"integration {integration_id} is being run: wait for it to stop"
        else:
            try:
                check_lease(doc, Owner.here())
            except LeaseHeld as exc:
                message = str(exc)
        return None if message is None else await self.render(integration_id, message, 409)

    async def act(self, integration_id: str, work: Callable[[Engine], Awaitable[Any]]) -> Response:
        """Start ``work`` on the integration unless a run holds it; an install that it
        finishes is confirmed on the page."""
        doc = await (await self.engine()).status(integration_id)
        held = await self.refused(doc)
        if held is not None:
            return held
        installing = doc.get("mode") == "install"
        self.runs.start(integration_id, work(await self.engine()), installing=installing)
        await asyncio.sleep(0)  # let it take the lease before the page is shown
        return RedirectResponse(f"/integrations/{integration_id}", 303)

    async def install(self, request: Request) -> Response:
        connector = self.by_id.get(str((await self.posted(request)).get("connector")))
        if connector is None:
            return HTMLResponse(_pages.page("Unknown", "<h1>Unknown connector</h1>"), 404)
        engine = await self.engine()
        created: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        pending = f"(new {secrets.token_hex(4)})"  # until the engine names the integration
        work = engine.install(connector, on_created=created.set_result)
        task = self.runs.start(pending, work, installing=True)
        await asyncio.wait([created, task], return_when=asyncio.FIRST_COMPLETED)
        if not created.done():
            return await self._index("the install did not start: see the command's log")
        integration_id = created.result()
        self.runs.tasks[integration_id] = self.runs.tasks.pop(pending)
        return RedirectResponse(f"/integrations/{integration_id}", 303)

    async def verify(self, integration_id: str, request: Request) -> Response:
        answers = await self.posted(request)
        return await self.act(
            integration_id, lambda e: e.resume(integration_id, input=answers or None)
        )

    async def retry(self, integration_id: str, request: Request) -> Response:
        await self.posted(request)
        return await self.act(integration_id, lambda e: e.resume(integration_id))

    async def update(self, integration_id: str, request: Request) -> Response:
        await self.posted(request)
        doc = await (await self.engine()).status(integration_id)
        connector = await self.connector_of(doc)
        return await self.act(integration_id, lambda e: e.update(integration_id, connector))

    async def uninstall(self, integration_id: str, request: Request) -> Response:
        if (await self.posted(request)).get("confirm") != "yes":
            doc = await (await self.engine()).status(integration_id)
            image_of = self.image_for(await self.connector_of(doc))
            body = _pages.confirm_uninstall(doc, image_of, self.config.csrf)
            return HTMLResponse(_pages.page(str(doc.get("name")), body, str(doc.get("mode"))))
        return await self.act(integration_id, lambda e: e.uninstall(integration_id))

    async def save_settings(self, integration_id: str, request: Request) -> Response:
        form = await self.posted(request)
        held = await self.refused(await (await self.engine()).status(integration_id))
        if held is not None:
            return held
        self.runs.installed.discard(integration_id)
        try:
            pending = json.loads(form.get("settings") or "")
            if not isinstance(pending, dict):
                raise ValueError("the settings must be a JSON object")
            await (await self.engine()).save_settings(integration_id, pending)
        except (ValueError, SmartConnectorError) as exc:
            return await self.render(integration_id, f"settings not saved: {exc}", 400)
        return RedirectResponse(f"/integrations/{integration_id}", 303)


def create_ui_app(config: UiConfig) -> FastAPI:
    """The install page over ``config``."""
    app = FastAPI(title="smartconnector ui", openapi_url=None, docs_url=None, redoc_url=None)
    page = InstallPage(config)
    rollouts = RolloutsPage(page.api, page.posted, config.csrf, config.temporal_address)
    app.middleware("http")(page.guard)
    app.add_exception_handler(CsrfMissing, page.csrf_missing)
    base = "/integrations/{integration_id}"
    for path, handler, method in (
        ("/", page.index, "GET"),
        (base, page.integration, "GET"),
        (f"{base}/events", page.events, "GET"),
        ("/images/{connector_id}/{path:path}", page.image, "GET"),
        ("/placeholder.svg", page.placeholder, "GET"),
        ("/install", page.install, "POST"),
        (f"{base}/verify", page.verify, "POST"),
        (f"{base}/retry", page.retry, "POST"),
        (f"{base}/update", page.update, "POST"),
        (f"{base}/uninstall", page.uninstall, "POST"),
        (f"{base}/settings", page.save_settings, "POST"),
        ("/rollouts", rollouts.index, "GET"),
        ("/rollouts/events", rollouts.events, "GET"),
        ("/rollouts/{rollout_id}/{verb}", rollouts.act, "POST"),
    ):
        app.add_api_route(path, handler, methods=[method])
    app.router.on_shutdown.append(page.close)
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


__all__ = ["UiConfig", "create_ui_app"]
