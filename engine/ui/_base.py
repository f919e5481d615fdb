"""``/``: the install base, newest change first, with a filter box and the connectors offered.

On a narrow screen each row of the table becomes a card whose cells say what they are
(``data-label``); the explicit roles keep it a table for assistive technology then.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from engine.run.progress import Progress
from engine.ui._pages import button, hidden, id_code, name_of
from engine.ui._words import state_of, steps_done, steps_of, when

COLUMNS = ("Integration", "Connector", "Version", "Mode", "Steps", "State", "Last change")


def install_base(
    docs: list[dict[str, Any]], connectors: list[Any], csrf: str, now: datetime
) -> str:
    """The integrations, and an Install button for each connector given."""
    names = {c.manifest.connector_id: c.manifest.name for c in connectors}
    newest_first = sorted(docs, key=lambda d: str(d.get("lastModified") or ""), reverse=True)
    rows = "".join(_row(doc, names, now) for doc in newest_first)
    lead = '<p class="lead">The integrations the API holds, the latest change first.</p>'
    return f"<h1>Install base</h1>{lead}{_offered(connectors, csrf)}{_table(rows)}"


def _table(rows: str) -> str:
    if not rows:
        return '<section class="card"><p class="empty">No integrations yet.</p></section>'
    head = "".join(f'<th scope="col" role="columnheader">{c}</th>' for c in COLUMNS)
    return (
        '<section class="card table-card" aria-labelledby="integrations-title">'
        '<div class="toolbar"><h2 id="integrations-title">Integrations</h2>'
        '<label for="filter">Filter integrations</label>'
        '<input id="filter" type="search" placeholder="Name, id or state"'
        ' aria-controls="integrations" autocomplete="off">'
        '<span class="shown" id="shown" aria-live="polite"></span></div>'
        '<table id="integrations" role="table" aria-label="Integrations">'
        f'<thead role="rowgroup"><tr role="row">{head}</tr></thead>'
        f'<tbody role="rowgroup">{rows}</tbody></table>'
        '<p class="empty" id="no-match" hidden>No integration matches the filter.</p></section>'
    )


def _row(doc: dict[str, Any], names: dict[str, str], now: datetime) -> str:
    integration_id = str(doc["_id"])
    connector_id = str(doc.get("_connectorId"))
    connector = names.get(connector_id)
    state = state_of(doc)
    link = (
        f'<a class="name" href="/integrations/{escape(integration_id)}">{escape(name_of(doc))}'
        f"</a><br>{id_code(integration_id)}"
    )
    version = escape(str(doc.get("version")))
    if Progress(doc).update_in_progress:
        version += ' <span class="muted">(updating)</span>'
    changed = when(doc.get("lastModified"), now)
    last = (
        f'<time datetime="{escape(str(doc.get("lastModified")))}" title="{changed[1]}">'
        f"{changed[0]}</time>"
        if changed
        else "—"
    )
    cells = (
        link,
        escape(connector) if connector else id_code(connector_id),
        version,
        escape(str(doc.get("mode"))),
        f"{steps_done(doc)} of {len(steps_of(doc))}",
        f'<span data-state="{state.kind}"><span class="pill">{escape(state.text)}</span></span>',
        last,
    )
    words = (name_of(doc), integration_id, connector_id, connector or "", state.text)
    search = " ".join((*words, str(doc.get("version")), str(doc.get("mode")))).lower()
    tds = "".join(
        f'<td role="cell" data-label="{label}"><span>{cell}</span></td>'
        for label, cell in zip(COLUMNS, cells, strict=True)
    )
    return f'<tr role="row" data-search="{escape(search)}">{tds}</tr>'


def _offered(connectors: list[Any], csrf: str) -> str:
    if not connectors:
        return ""
    items = "".join(
        f'<li><div><span class="name">{escape(c.manifest.name)}</span>'
        f' <span class="muted">version {escape(c.manifest.version)}</span></div>'
        + button(
            "/install",
            "Install",
            csrf,
            kind="primary",
            extra=hidden("connector", c.manifest.connector_id),
        )
        + "</li>"
        for c in connectors
    )
    return (
        '<section class="card" aria-labelledby="connectors-title">'
        '<h2 id="connectors-title">Connectors</h2>'
        f'<ul class="connectors" aria-label="Connectors">{items}</ul></section>'
    )
