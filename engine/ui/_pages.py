"""The install page's HTML: server-rendered, accessible, and the markup is the contract.

Steps are an ordered list named "Install steps"; each item carries ``data-step`` and
``data-status`` (pending, running, done, waiting or failed); actions are real buttons.
Elements marked ``data-live`` (the state in words, the steps) are what a followed run
replaces while the mode stays the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from engine.run.progress import RunState
from engine.ui._words import short_id, state_of, steps_done, steps_of

STATIC = Path(__file__).parent / "static"
STYLE = (STATIC / "page.css").read_text(encoding="utf-8")
SCRIPT = (STATIC / "page.js").read_text(encoding="utf-8")
PLACEHOLDER_SVG = (STATIC / "placeholder.svg").read_text(encoding="utf-8")

ImageOf = Callable[[dict[str, Any]], str]
STATUS_WORDS = {
    "pending": "Pending",
    "running": "In progress",
    "done": "Done",
    "waiting": "Waiting for you",
    "failed": "Failed",
}


def page(title: str, body: str, mode: str = "", alert: str | None = None) -> str:
    shown = f'<div role="alert">{escape(alert)}</div>' if alert else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f'<body data-mode="{escape(mode)}"><header class="bar">'
        '<a class="brand" href="/">smartconnector</a><span class="where">Install page</span>'
        '<nav class="nav" aria-label="Pages"><a href="/">Install base</a>'
        '<a href="/rollouts">Rollouts</a></nav>'
        f"</header><main>{shown}{body}</main><script>{SCRIPT}</script></body></html>"
    )


def csrf_field(token: str) -> str:
    return hidden("csrf_token", token)


def hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'


def button(action: str, name: str, csrf: str, *, kind: str = "", extra: str = "") -> str:
    """A real button that POSTs to ``action``; ``kind`` is its style (primary, danger...)."""
    style = f' class="{kind}"' if kind else ""
    return (
        f'<form class="inline" method="post" action="{escape(action)}">{csrf_field(csrf)}'
        f'{extra}<button type="submit"{style}>{escape(name)}</button></form>'
    )


def name_of(doc: dict[str, Any]) -> str:
    return str(doc.get("name") or doc.get("_id"))


def id_code(full: str) -> str:
    """A short id, the whole of it on hover."""
    return f'<code class="id" title="{escape(full)}">{escape(short_id(full))}</code>'


def step_status(
    doc: dict[str, Any], step: dict[str, Any], running: bool, first_open: str | None
) -> str:
    state = RunState.of(doc)
    name = step.get("name")
    if state.waiting and state.waiting.get("step") == name:
        return "waiting"
    if state.error and state.error.get("step") == name:
        return "failed"
    if running and name == first_open:
        return "running"
    return "done" if step.get("completed") is True else "pending"


def steps_list(doc: dict[str, Any], image_of: ImageOf, csrf: str, running: bool) -> str:
    """The ordered list of steps, each with its image, name, description and status."""
    steps = steps_of(doc)
    uninstalling = doc.get("mode") == "uninstall"
    open_steps = [s.get("name") for s in steps if (s.get("completed") is True) == uninstalling]
    first_open = (open_steps[-1] if uninstalling else open_steps[0]) if open_steps else None
    items = []
    for step in steps:
        status = step_status(doc, step, running, first_open)
        name = str(step.get("name"))
        description = str(step.get("description") or "")
        items.append(
            f'<li data-step="{escape(name)}" data-status="{status}">'
            f'<img src="{escape(image_of(step))}" alt="{escape(name)}" width="48" height="48">'
            f'<div class="step"><div class="step-head"><span class="step-name">{escape(name)}'
            f'</span><span class="status">{STATUS_WORDS[status]}</span></div>'
            + (f'<p class="desc">{escape(description)}</p>' if description else "")
            + f"{_step_detail(doc, description, status, csrf)}</div></li>"
        )
    follow = f"/integrations/{escape(str(doc.get('_id')))}/events"
    return (
        f'<ol class="steps" id="steps" data-live aria-label="Install steps"'
        f' data-follow="{follow}">{"".join(items)}</ol>'
    )


def _step_detail(doc: dict[str, Any], description: str, status: str, csrf: str) -> str:
    state = RunState.of(doc)
    base = f"/integrations/{escape(str(doc.get('_id')))}"
    if status == "waiting" and state.waiting:
        return _ask(state.waiting, description, f"{base}/verify", csrf)
    if status == "failed" and state.error:
        return (
            f'<p class="error">{escape(str(state.error.get("message") or ""))}</p>'
            f"{button(base + '/retry', 'Retry', csrf, kind='primary')}"
        )
    return ""


def _ask(waiting: dict[str, Any], description: str, action: str, csrf: str) -> str:
    """What a waiting step asks: its message (once), the page to open, the answers wanted."""
    message = str(waiting.get("message") or "")
    said = f'<p class="message">{escape(message)}</p>' if not _same(message, description) else ""
    url = str(waiting.get("url") or "")
    link = (
        f'<p><a class="button primary" href="{escape(url)}" target="_blank"'
        f' rel="noopener noreferrer">Open {escape(_host(url))} ↗</a>'
        f'</p><p class="url">{escape(url)}</p>'
        if url
        else ""
    )
    inputs = "".join(_input(f) for f in waiting.get("fields") or [] if isinstance(f, dict))
    verify_kind = "" if url and not inputs else "primary"
    return (
        f'<div class="ask">{said}{link}<form method="post" action="{action}">'
        f'{csrf_field(csrf)}{inputs}<p class="actions">'
        f'<button type="submit" class="{verify_kind}">Verify</button></p></form></div>'
    )


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or "the page"
    except ValueError:
        return "the page"


def _same(message: str, description: str) -> bool:
    """Whether a message only repeats the step's description."""

    def plain(text: str) -> str:
        return " ".join(text.split()).rstrip(".").casefold()

    return plain(message) == plain(description)


def _input(field: dict[str, Any]) -> str:
    name = escape(str(field.get("name")))
    kind = "password" if field.get("secret") else "text"
    label = escape(str(field.get("label") or field.get("name")))
    return (
        f'<label for="field-{name}">{label}</label>'
        f'<input id="field-{name}" name="{name}" type="{kind}" autocomplete="off">'
    )


def state_block(doc: dict[str, Any]) -> str:
    """The state in words, with how many steps are done."""
    state = state_of(doc)
    total, done = len(steps_of(doc)), steps_done(doc)
    share = round(100 * done / total) if total else 100
    return (
        f'<div class="state" id="state" data-live data-state="{state.kind}">'
        f'<span class="pill">{escape(state.text)}</span>'
        f'<div class="progress" role="progressbar" aria-label="Steps done" aria-valuemin="0"'
        f' aria-valuemax="{total}" aria-valuenow="{done}"><span style="width:{share}%"></span>'
        f'</div><p class="count">{done} of {total} steps done</p></div>'
    )


def integration_page(
    doc: dict[str, Any],
    image_of: ImageOf,
    csrf: str,
    running: bool,
    newer: str | None,
    installed_now: bool = False,
) -> str:
    """``/integrations/{_id}``: the install page."""
    base = f"/integrations/{escape(str(doc['_id']))}"
    newer_note = (
        f'<div class="callout"><p>Version {escape(newer)} is available.</p>'
        f"{button(base + '/update', 'Update', csrf, kind='primary')}</div>"
        if newer
        else ""
    )
    uninstall = (
        '<section class="card danger-zone" aria-labelledby="remove-title"><div>'
        '<h2 id="remove-title">Remove this integration</h2><p class="hint">Uninstall undoes'
        " each step, the last one first, and deletes the integration.</p></div>"
        f"{button(base + '/uninstall', 'Uninstall', csrf, kind='danger-quiet')}</section>"
    )
    installed = installed_now and doc.get("mode") == "settings"
    return (
        f"{_header(doc)}{_installed_banner(doc) if installed else ''}{newer_note}"
        f"{steps_list(doc, image_of, csrf, running)}{_settings_form(doc, base, csrf)}{uninstall}"
    )


def _header(doc: dict[str, Any]) -> str:
    """The way back, the integration's name, version and id, and its state."""
    return (
        '<a class="back" href="/">← Install base</a><div class="head"><div>'
        f'<h1>{escape(name_of(doc))}</h1><p class="meta">Version'
        f" {escape(str(doc.get('version')))} · ID {id_code(str(doc['_id']))}</p></div>"
        f"{state_block(doc)}</div>"
    )


def _installed_banner(doc: dict[str, Any]) -> str:
    done = steps_done(doc)
    return (
        f'<p class="banner" role="status"><strong>Installed</strong> — {done} step'
        f"{'' if done == 1 else 's'} done. Its settings are below.</p>"
    )


def _settings_form(doc: dict[str, Any], base: str, csrf: str) -> str:
    if doc.get("mode") != "settings":
        return ""
    text = json.dumps(doc.get("settings") or {}, indent=2)
    rows = min(max(text.count("\n") + 2, 6), 24)
    return (
        '<section class="card" aria-labelledby="settings-title">'
        '<h2 id="settings-title">Settings</h2>'
        '<p class="hint">Save settings hands them to the connector, which checks them and may'
        " change them before they are saved.</p>"
        f'<form method="post" action="{base}/settings">{csrf_field(csrf)}'
        '<label for="settings">Settings (JSON)</label>'
        f'<textarea id="settings" name="settings" spellcheck="false" rows="{rows}">'
        f"{escape(text)}</textarea>"
        '<p class="actions"><button type="submit" class="primary">Save settings</button></p>'
        "</form></section>"
    )


def confirm_uninstall(doc: dict[str, Any], image_of: ImageOf, csrf: str) -> str:
    """What Uninstall will undo, the last step first, before it does."""
    base = f"/integrations/{escape(str(doc['_id']))}"
    undone = [s for s in steps_of(doc) if s.get("completed") is True][::-1]
    items = "".join(
        f'<li><img src="{escape(image_of(s))}" alt="{escape(str(s.get("name")))}" width="32"'
        f' height="32"><span>{escape(str(s.get("name")))}</span></li>'
        for s in undone
    )
    what = (
        "<p>Uninstall undoes these steps, the last one first, then deletes the integration:</p>"
        f'<ol class="undo" aria-label="Steps to undo">{items}</ol>'
        if undone
        else "<p>No step is done yet, so nothing is undone: Uninstall deletes the integration.</p>"
    )
    return (
        f'<a class="back" href="{base}">← Back to the integration</a>'
        f"<h1>{escape(name_of(doc))}</h1>"
        '<section class="card confirm" aria-labelledby="confirm-title">'
        '<h2 id="confirm-title">Uninstall this integration?</h2>'
        f'{what}<p class="hint">This cannot be taken back: installing again starts over.</p>'
        '<div class="actions">'
        + button(
            base + "/uninstall", "Uninstall", csrf, kind="danger", extra=hidden("confirm", "yes")
        )
        + f'<a class="button" href="{base}">Keep it</a></div></section>'
    )
