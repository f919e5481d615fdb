"""What the page says in words: an integration's state, a short id, when it last changed.

Each is read from the document alone (its mode, steps, ``updateInProgress`` and the engine's
``smartconnector`` field), so every page and every event of a followed run says the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine.models import Mode
from engine.run.progress import Progress


@dataclass(frozen=True)
class State:
    """An integration's state: ``kind`` for styling, ``text`` for the person."""

    kind: str  # installing, waiting, installed, updating, uninstalling or failed
    text: str


def steps_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in doc.get("install") or [] if isinstance(s, dict)]


def steps_done(doc: dict[str, Any]) -> int:
    return sum(1 for s in steps_of(doc) if s.get("completed") is True)


def state_of(doc: dict[str, Any]) -> State:
    """``Installing — step 2 of 4``, ``Waiting for you``, ``Installed``, ``Updating to 1.2.0``,
    ``Uninstalling`` or ``Failed at step 3``: what stopped a run first, then the mode."""
    progress = Progress(doc)
    run = progress.run
    steps = steps_of(doc)
    if run.error:
        return State("failed", _failed(run.error, steps))
    if run.waiting:
        return State("waiting", "Waiting for you")
    mode = progress.mode
    if mode is Mode.UNINSTALL:
        return State("uninstalling", "Uninstalling")
    if progress.update_in_progress or run.update_to:
        return State("updating", f"Updating to {run.update_to}" if run.update_to else "Updating")
    if mode is Mode.SETTINGS:
        return State("installed", "Installed")
    if not steps:
        return State("installing", "Installing")
    at = next((i for i, s in enumerate(steps, 1) if s.get("completed") is not True), len(steps))
    return State("installing", f"Installing — step {at} of {len(steps)}")


def _failed(error: dict[str, Any], steps: list[dict[str, Any]]) -> str:
    names = [s.get("name") for s in steps]
    if error.get("step") in names:
        return f"Failed at step {names.index(error.get('step')) + 1}"
    function = error.get("function")
    return f"Failed in {function}" if function else "Failed"


def short_id(integration_id: str) -> str:
    """The id's last 8 characters: its first 8 are the second it was made, which integrations
    made together share."""
    return integration_id[-8:]


def when(iso: Any, now: datetime) -> tuple[str, str] | None:
    """``(how long ago, the exact time)`` of an ISO 8601 time, or ``None`` if it is not one."""
    try:
        then = datetime.fromisoformat(str(iso))
    except ValueError:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    exact = then.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    seconds = (now - then).total_seconds()
    if seconds < 45:
        return "just now", exact
    if seconds < 3600:
        return f"{max(1, round(seconds / 60))} min ago", exact
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago", exact
    days = int(seconds // 86400)
    if days < 7:
        return ("yesterday" if days == 1 else f"{days} days ago"), exact
    return f"{then.day} {then:%b %Y}", exact
