"""The install page's HTML: server-rendered, accessible, and the markup is the contract.

Steps are an ordered list named "Install steps"; each item carries ``data-step`` and
``data-status`` (pending, running, done, waiting or failed); actions are real buttons.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from engine.run_state import RunState

STYLE = """
body{font:16px/1.45 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
main{max-width:960px;margin:0 auto;padding:16px}
h1{font-size:1.5rem;margin:.2em 0 .6em}
table{width:100%;border-collapse:collapse;background:#fff}
th,td{text-align:left;padding:8px;border-bottom:1px solid #e3e6ea;word-break:break-word}
ol.steps{list-style:none;padding:0;margin:0}
ol.steps li{display:flex;gap:12px;align-items:flex-start;background:#fff;margin:0 0 10px;
 padding:12px;border-radius:8px;border-left:6px solid #c8cdd4}
ol.steps li[data-status=done]{border-color:#2e9d5b}
ol.steps li[data-status=running]{border-color:#2f6fd6}
ol.steps li[data-status=waiting]{border-color:#d99a1e}
ol.steps li[data-status=failed]{border-color:#c9342f}
ol.steps img{width:48px;height:48px;object-fit:contain;flex:none}
.status{font-size:.85rem;text-transform:uppercase;letter-spacing:.04em;color:#5b6472}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:.8rem;background:#eee}
.badge.waiting{background:#fbecc8}.badge.failed{background:#f6d2d0}
form.inline{display:inline}
button{font:inherit;padding:6px 14px;border-radius:6px;border:1px solid #8a93a0;background:#fff;
 cursor:pointer}
button.primary{background:#2f6fd6;border-color:#2f6fd6;color:#fff}
label{display:block;margin:6px 0 2px}
input,textarea{font:inherit;width:100%;max-width:420px;box-sizing:border-box;padding:6px}
textarea{max-width:100%;min-height:8em;font-family:ui-monospace,monospace}
[role=alert]{background:#f6d2d0;padding:10px;border-radius:6px;margin:0 0 12px}
.actions{display:flex;flex-wrap:wrap;gap:8px;margin:16px 0}
@media (max-width:600px){th:nth-child(3),td:nth-child(3){display:none}main{padding:8px}}
"""

SCRIPT = """
const followed = document.querySelector('ol.steps');
if (followed && window.EventSource) {
  const events = new EventSource(followed.dataset.follow);
  events.addEventListener('steps', (e) => {
    const data = JSON.parse(e.data);
    if (data.mode !== document.body.dataset.mode) {  // settings, actions: all of it changed
      document.querySelector('main').innerHTML = data.body;
    } else {  // only the steps: settings being edited outside them stay as typed
      const fresh = document.createElement('div');
      fresh.innerHTML = data.body;
      document.querySelector('ol.steps').replaceWith(fresh.querySelector('ol.steps'));
    }
    document.body.dataset.mode = data.mode;
  });
  events.addEventListener('gone', () => { location.href = '/'; });
}
"""


def page(title: str, body: str, mode: str = "", alert: str | None = None) -> str:
    shown = f'<div role="alert">{escape(alert)}</div>' if alert else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f'<body data-mode="{escape(mode)}"><main>{shown}{body}</main>'
        f"<script>{SCRIPT}</script></body></html>"
    )


def csrf_field(token: str) -> str:
    return f'<input type="hidden" name="csrf_token" value="{escape(token)}">'


def button(action: str, name: str, csrf: str, *, primary: bool = False, extra: str = "") -> str:
    kind = ' class="primary"' if primary else ""
    return (
        f'<form class="inline" method="post" action="{escape(action)}">{csrf_field(csrf)}'
        f'{extra}<button type="submit"{kind}>{escape(name)}</button></form>'
    )


def badge(doc: dict[str, Any]) -> str:
    state = RunState.of(doc)
    if state.waiting:
        return '<span class="badge waiting">waiting</span>'
    if state.error:
        return '<span class="badge failed">failed</span>'
    return ""


def install_base(docs: list[dict[str, Any]], connectors: list[Any], csrf: str) -> str:
    """``/``: the integrations, and an Install button for each connector given."""
    rows = []
    for doc in docs:
        steps = [s for s in doc.get("install") or [] if isinstance(s, dict)]
        done = sum(1 for s in steps if s.get("completed") is True)
        href = f"/integrations/{escape(str(doc['_id']))}"
        link = f'<a href="{href}">{escape(str(doc.get("name") or doc["_id"]))}</a>'
        updating = "yes" if doc.get("updateInProgress") else "no"
        rows.append(
            f"<tr><td>{link} {badge(doc)}</td><td>{escape(str(doc.get('_connectorId')))}</td>"
            f"<td>{escape(str(doc.get('version')))}</td><td>{escape(str(doc.get('mode')))}</td>"
            f"<td>{done}/{len(steps)}</td><td>{updating}</td></tr>"
        )
    table = (
        '<table aria-label="Integrations"><thead><tr><th>Integration</th><th>Connector</th>'
        "<th>Version</th><th>Mode</th><th>Steps</th><th>Updating</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else "<p>No integrations yet.</p>"
    )
    installs = "".join(
        f"<li>{escape(c.manifest.name)} {escape(c.manifest.version)} "
        + button(
            "/install",
            "Install",
            csrf,
            primary=True,
            extra=_hidden("connector", c.manifest.connector_id),
        )
        + "</li>"
        for c in connectors
    )
    offered = f'<h2>Connectors</h2><ul aria-label="Connectors">{installs}</ul>' if installs else ""
    return f"<h1>Install base</h1>{table}{offered}"


def _hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'


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


def steps_list(doc: dict[str, Any], image_of: Any, csrf: str, running: bool) -> str:
    """The ordered list of steps, each with its image, name, description and status."""
    steps = [s for s in doc.get("install") or [] if isinstance(s, dict)]
    uninstalling = doc.get("mode") == "uninstall"
    open_steps = [s.get("name") for s in steps if (s.get("completed") is True) == uninstalling]
    first_open = (open_steps[-1] if uninstalling else open_steps[0]) if open_steps else None
    items = []
    for step in steps:
        status = step_status(doc, step, running, first_open)
        name = str(step.get("name"))
        detail = _step_detail(doc, step, status, csrf)
        items.append(
            f'<li data-step="{escape(name)}" data-status="{status}">'
            f'<img src="{escape(image_of(step))}" alt="{escape(name)}">'
            f'<div><strong>{escape(name)}</strong> <span class="status">{status}</span>'
            f"<div>{escape(str(step.get('description') or ''))}</div>{detail}</div></li>"
        )
    follow = f"/integrations/{escape(str(doc.get('_id')))}/events"
    return (
        f'<ol class="steps" aria-label="Install steps" data-follow="{follow}">{"".join(items)}</ol>'
    )


def _step_detail(doc: dict[str, Any], step: dict[str, Any], status: str, csrf: str) -> str:
    state = RunState.of(doc)
    base = f"/integrations/{escape(str(doc.get('_id')))}"
    if status == "waiting" and state.waiting:
        waiting = state.waiting
        link = (
            f'<p><a href="{escape(str(waiting["url"]))}" target="_blank" rel="noopener">'
            f"{escape(str(waiting['url']))}</a></p>"
            if waiting.get("url")
            else ""
        )
        inputs = "".join(_input(f) for f in waiting.get("fields") or [] if isinstance(f, dict))
        return (
            f"<p>{escape(str(waiting.get('message') or ''))}</p>{link}"
            f'<form method="post" action="{base}/verify">{csrf_field(csrf)}{inputs}'
            '<p><button type="submit" class="primary">Verify</button></p></form>'
        )
    if status == "failed" and state.error:
        return (
            f"<p>{escape(str(state.error.get('message') or ''))}</p>"
            f"{button(base + '/retry', 'Retry', csrf, primary=True)}"
        )
    return ""


def _input(field: dict[str, Any]) -> str:
    name = escape(str(field.get("name")))
    kind = "password" if field.get("secret") else "text"
    label = escape(str(field.get("label") or field.get("name")))
    return (
        f'<label for="field-{name}">{label}</label>'
        f'<input id="field-{name}" name="{name}" type="{kind}" autocomplete="off">'
    )


def integration_page(
    doc: dict[str, Any], image_of: Any, csrf: str, running: bool, newer: str | None
) -> str:
    """``/integrations/{_id}``: the install page."""
    base = f"/integrations/{escape(str(doc['_id']))}"
    settings = escape(json.dumps(doc.get("settings") or {}, indent=2))
    update = button(base + "/update", "Update", csrf) if newer else ""
    actions = f'<div class="actions">{update}{button(base + "/uninstall", "Uninstall", csrf)}</div>'
    settings_form = (
        f'<form method="post" action="{base}/settings">{csrf_field(csrf)}'
        '<label for="settings">Settings (JSON)</label>'
        f'<textarea id="settings" name="settings">{settings}</textarea>'
        '<p><button type="submit">Save settings</button></p></form>'
        if doc.get("mode") == "settings"
        else ""
    )
    newer_note = f"<p>Version {escape(newer)} is available.</p>" if newer else ""
    return (
        f"<h1>{escape(str(doc.get('name') or doc['_id']))}</h1>"
        f'<p>Mode <span id="mode">{escape(str(doc.get("mode")))}</span> · version'
        f' {escape(str(doc.get("version")))} · <a href="/">install base</a></p>{newer_note}'
        f"{steps_list(doc, image_of, csrf, running)}{actions}{settings_form}"
    )


def confirm_uninstall(doc: dict[str, Any], csrf: str) -> str:
    base = f"/integrations/{escape(str(doc['_id']))}"
    return (
        f"<h1>{escape(str(doc.get('name') or doc['_id']))}</h1>"
        "<p>Uninstall undoes every step and deletes the integration.</p>"
        '<div class="actions">'
        + button(base + "/uninstall", "Uninstall", csrf, extra=_hidden("confirm", "yes"))
        + f'<a href="{base}">Keep it</a></div>'
    )


PLACEHOLDER_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 48 48"><rect width="48" height="48"'
    ' rx="8" fill="#dfe3e8"/><path d="M14 32l7-9 5 6 4-5 6 8z" fill="#9aa3ad"/></svg>'
)
