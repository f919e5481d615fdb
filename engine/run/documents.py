"""The integration document as the engine reads and makes it: status, versions, new ones."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.client import Document
from engine.errors import BadInput, DocumentInvalid
from engine.modes import Mode
from engine.run.progress import Progress, RunState

if TYPE_CHECKING:  # a status read needs neither the connector's API nor pydantic's models
    from engine.models import ConnectorManifest
    from engine.run.writer import Owner
    from installers import Connector


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as version ``a`` is older, the same as or newer than ``b`` (dotted numbers,
    text parts compared as text: ``1.10.0`` > ``1.9.2``)."""

    def key(version: str) -> list[tuple[int, int | str]]:
        return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.\-+]", version)]

    ka, kb = key(a), key(b)
    return (ka > kb) - (ka < kb)


def needs_update(doc: Document, version: str) -> bool:
    """Whether an update to ``version`` would do anything: another version, or an update
    to finish."""
    progress = Progress(doc)
    return progress.update_in_progress or progress.version != version


def status_of(doc: Document) -> dict[str, Any]:
    """``status --json``'s shape (SPEC §4): ``waiting`` while a step waits for a person (with
    the ``fields`` it asks for, ``[]`` when none), ``error`` after a failed function, each
    ``None`` otherwise."""
    progress = Progress(doc)
    waiting, error = progress.run.waiting, progress.run.error
    return {
        "_id": doc.get("_id"),
        "mode": doc.get("mode"),
        "version": doc.get("version"),
        "updateInProgress": progress.update_in_progress,
        "install": [
            {"name": step.get("name"), "completed": step.get("completed")}
            for step in progress.steps
        ],
        "waiting": _waiting(waiting),
        "error": _picked(error, ("step", "function", "message")),
    }


def _picked(record: Any, keys: tuple[str, ...]) -> dict[str, Any] | None:
    return {k: record.get(k) for k in keys} if isinstance(record, dict) else None


def asked_fields(waiting: Any) -> list[dict[str, Any]]:
    """The answers a waiting record asks for, each ``{"name", "label", "secret"}``."""
    raw = waiting.get("fields") if isinstance(waiting, dict) else None
    return [
        {
            "name": f["name"],
            "label": f.get("label") if isinstance(f.get("label"), str) else f["name"],
            "secret": f.get("secret") is True,
        }
        for f in (raw if isinstance(raw, list) else [])
        if isinstance(f, dict) and isinstance(f.get("name"), str)
    ]


def _waiting(record: dict[str, Any] | None) -> dict[str, Any] | None:
    picked = _picked(record, ("step", "function", "message", "url"))
    return None if picked is None else {**picked, "fields": asked_fields(record)}


def new_integration(connector: Connector, owner: Owner, ttl: float) -> Document:
    """The document install creates, under ``owner``'s lease for ``ttl`` seconds."""
    return Progress.new_document(connector.manifest, owner.lease(ttl))


#: Seconds a server's clock may be behind this machine's when telling a just-made integration.
ADOPT_SKEW = 120.0


def just_made(doc: Document, manifest: ConnectorManifest, *, since: float) -> bool:
    """Whether ``doc`` looks like an integration of ``manifest`` that install just created
    (at ``since`` or after, a Unix time): in mode install, no step completed."""
    progress = Progress(doc)
    modified = doc.get("lastModified")
    try:
        at = datetime.fromisoformat(str(modified).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return False
    return (
        doc.get("name") == manifest.name
        and progress.mode is Mode.INSTALL
        and not progress.any_completed
        and at >= since
    )


def check_installable(doc: Document) -> None:
    """``install --integration`` takes an integration still in mode install, only."""
    mode = Progress(doc).mode
    if mode is not Mode.INSTALL:
        advice = "only one in mode 'install' can be installed into"
        if mode is Mode.SETTINGS:
            advice = "it is installed: use `update`, `settings` or `uninstall`"
        elif mode is Mode.UNINSTALL:
            advice = f"it is being removed: `smartconnector resume {doc.get('_id')}` finishes that"
        raise BadInput(
            f"integration {doc.get('_id')} is in mode {doc.get('mode')!r}, not 'install';"
            f" {advice}. Nothing was changed",
            field="mode",
        )


def check_settable(doc: Document) -> None:
    """``settings`` changes an installed integration (settings mode, no update going on)."""
    progress = Progress(doc)
    if progress.mode is Mode.SETTINGS and not progress.update_in_progress:
        return
    state = "an update in progress" if progress.update_in_progress else f"mode {doc.get('mode')!r}"
    raise BadInput(
        f"integration {doc.get('_id')} has {state}; settings can be changed only on an"
        " installed integration",
        field="mode",
    )


def update_target(
    doc: Document, connector: Connector, *, allow_downgrade: bool = False
) -> str | None:
    """The version ``update`` would go to; ``None`` when there is nothing to do."""
    from engine.models import Integration, Mode, parse

    integration_id = doc.get("_id")
    integration = parse(
        Integration, doc, what=f"integration {integration_id}", error=DocumentInvalid
    )
    if integration.mode is not Mode.SETTINGS:
        raise BadInput(
            f"integration {integration_id} is in mode {integration.mode.value!r};"
            " only an installed integration (settings mode) can be updated",
            field="mode",
        )
    if integration.update_in_progress:
        return started_update_target(doc, connector)
    target = connector.manifest.version
    order = compare_versions(target, integration.version or "")
    if order == 0:
        return None
    if order < 0 and not allow_downgrade:
        raise BadInput(
            f"integration {integration_id} runs {integration.version};"
            f" {target} is older: pass --allow-downgrade to go back",
            field="version",
        )
    return target


def started_update_target(doc: Document, connector: Connector) -> str:
    """The version an update in progress goes to: the one it started for (another is
    refused)."""
    started_for = RunState.of(doc).update_to
    version = connector.manifest.version
    if started_for not in (None, version):
        raise BadInput(
            f"integration {doc.get('_id')}: an update to {started_for} is in progress;"
            f" finish it with that version of the connector, not {version}",
            field="--connector",
        )
    return version
