"""``/rollouts``: every rollout the API knows, live, with Pause, Resume and Abort.

Each rollout is an ``article`` carrying ``data-rollout`` (its id) and ``data-state``; its
phases are a list named "Phases" of progress bars, its failures a list named "Failures".
The section is replaced, as the install page's live parts are, whenever a rollout changes
(server-sent events). The buttons are POSTs with the page's CSRF token; they go through
:class:`engine.fleet.operations.Rollouts`, as ``rollouts pause|resume|abort ID`` do.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

from engine.errors import SmartConnectorError
from engine.fleet.operations import Rollouts
from engine.fleet.record import Control, RolloutRecord
from engine.ui._pages import button, page

if TYPE_CHECKING:
    from engine.client import ApiClient

STYLE = (Path(__file__).parent / "static" / "rollouts.css").read_text(encoding="utf-8")
#: How often the page's event stream looks at the rollouts.
FOLLOW_EVERY = 0.5
STATE_WORDS = {
    "running": "Running",
    "paused": "Paused",
    "baking": "Baking",
    "done": "Done",
    "aborted": "Aborted",
    "failed": "Failed",
}
#: The buttons a rollout in each state offers: (control, label, style).
ACTIONS = {
    "running": (("pause", "Pause", ""), ("abort", "Abort", "danger-quiet")),
    "baking": (("pause", "Pause", ""), ("abort", "Abort", "danger-quiet")),
    "paused": (("run", "Resume", "primary"), ("abort", "Abort", "danger-quiet")),
}
VERBS: dict[str, Control] = {"pause": "pause", "resume": "run", "abort": "abort"}


def rollouts_section(records: list[RolloutRecord], csrf: str) -> str:
    """The live part of the page: one card per rollout."""
    cards = "".join(_card(r, csrf) for r in records)
    if not cards:
        cards = (
            '<section class="card"><p class="empty">No rollouts yet: `smartconnector rollout'
            " DIR --all` starts one.</p></section>"
        )
    return f'<div id="rollouts" data-live data-follow="/rollouts/events">{cards}</div>'


def rollouts_page(records: list[RolloutRecord], csrf: str, alert: str | None = None) -> str:
    body = (
        f"<style>{STYLE}</style><h1>Rollouts</h1>"
        '<p class="lead">Each rollout the API knows, as it goes.</p>'
        f"{rollouts_section(records, csrf)}"
    )
    return page("Rollouts", body, alert=alert)


def _card(record: RolloutRecord, csrf: str) -> str:
    rid = escape(record.id)
    counts = "".join(
        f"<div><dt>{name}</dt><dd>{value}</dd></div>"
        for name, value in (
            ("Updated", record.updated),
            ("Failed", record.failed),
            ("Skipped", record.skipped),
            ("Remaining", record.remaining),
        )
    )
    hold = f'<input type="hidden" name="hold" value="{record.hold}">'
    actions = "".join(
        button(f"/rollouts/{rid}/{_path(control)}", label, csrf, kind=kind, extra=hold)
        for control, label, kind in ACTIONS.get(record.state, ())
    )
    return (
        f'<article class="card rollout" data-rollout="{rid}" data-state="{record.state}"'
        f' aria-labelledby="r-{rid}"><div class="rollout-head"><div>'
        f'<h2 id="r-{rid}">{escape(record.name or record.connector)}'
        f' <span class="to">to {escape(record.version)}</span></h2>'
        f'<p class="meta"><code>{rid}</code> · phase {record.phase} of {record.phases}'
        f" · {escape(record.executor)}</p></div>"
        f'<span class="pill">{STATE_WORDS.get(record.state, escape(record.state))}</span></div>'
        f'<dl class="counts">{counts}</dl>{_phases(record)}'
        + (f'<p class="hint">{escape(record.stopped)}</p>' if record.stopped else "")
        + f"{_failures(record)}"
        + (f'<div class="actions">{actions}</div>' if actions else "")
        + "</article>"
    )


def _path(control: str) -> str:
    return "resume" if control == "run" else control


def _phases(record: RolloutRecord) -> str:
    items = []
    for number, wave in enumerate(record.waves, 1):
        done = wave.updated + wave.failed + wave.skipped
        current = ' aria-current="step"' if number == record.phase else ""
        items.append(
            f'<li data-phase="{number}"{current}><span class="phase-name">Phase {number}</span>'
            f'<progress max="{max(wave.size, 1)}" value="{done if wave.size else 1}"'
            f' aria-label="Phase {number}: {done} of {wave.size}"></progress>'
            f'<span class="phase-count">{done} of {wave.size}'
            + (f' · <span class="bad">{wave.failed} failed</span>' if wave.failed else "")
            + "</span></li>"
        )
    return f'<ol class="phases" aria-label="Phases">{"".join(items)}</ol>' if items else ""


def _failures(record: RolloutRecord) -> str:
    if not record.failures:
        return ""
    items = "".join(
        f'<li><code>{escape(f["_id"])}</code> <span class="error-text">{escape(f["error"])}'
        "</span></li>"
        for f in record.failures
    )
    return (
        f'<details class="failures" open><summary>{record.failed} failed</summary>'
        f'<ul aria-label="Failures">{items}</ul></details>'
    )


class RolloutsPage:
    """The handlers of ``/rollouts``, over the install page's API client and guards."""

    def __init__(
        self,
        api: Callable[[], Awaitable[ApiClient]],
        posted: Callable[[Request], Awaitable[dict[str, str]]],
        csrf: str,
        temporal_address: str | None = None,
    ) -> None:
        self.api = api
        self.posted = posted
        self.csrf = csrf
        self.temporal_address = temporal_address
        self._temporal: Any = None

    async def rollouts(self) -> Rollouts:
        if self.temporal_address and self._temporal is None:
            from engine.temporal._client import connect

            self._temporal = await connect(self.temporal_address)
        return Rollouts(await self.api(), self._temporal)

    async def index(self) -> HTMLResponse:
        return await self.show()

    async def show(self, alert: str | None = None) -> HTMLResponse:
        records = await (await self.rollouts()).list()
        return HTMLResponse(rollouts_page(records, self.csrf, alert), 409 if alert else 200)

    async def events(self) -> StreamingResponse:
        return StreamingResponse(self.follow(), media_type="text/event-stream")

    async def follow(self) -> AsyncIterator[str]:
        """The rollouts' section, sent again whenever it changes."""
        last = None
        while True:
            body = rollouts_section(await (await self.rollouts()).list(), self.csrf)
            if body != last:
                last = body
                yield f"event: steps\ndata: {json.dumps({'mode': '', 'body': body})}\n\n"
            await asyncio.sleep(FOLLOW_EVERY)

    async def act(self, rollout_id: str, verb: str, request: Request) -> Response:
        """Pause, resume or abort: as ``rollouts pause|resume|abort ID`` do."""
        form = await self.posted(request)
        control = VERBS.get(verb)
        if control is None:
            return HTMLResponse(page("Unknown", "<h1>Unknown action</h1>"), 404)
        seen = form.get("hold", "")  # the hold this page showed: a resume releases that one
        hold = int(seen) if seen.isascii() and seen.isdigit() and len(seen) < 10 else None
        try:
            found = await (await self.rollouts()).ask(rollout_id, control, hold=hold)
        except SmartConnectorError as exc:
            return await self.show(f"{verb} refused: {exc}")
        if found is None:
            return HTMLResponse(page("Not found", "<h1>No such rollout</h1>"), 404)
        return RedirectResponse("/rollouts", 303)
