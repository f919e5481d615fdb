"""An integration's modes, a leaf of their own: reading a document's progress (``status``,
``list``) needs them, and no pydantic model."""

from __future__ import annotations

from enum import StrEnum


class Mode(StrEnum):
    """An integration's mode: what a document says (install, settings, uninstall), and
    ``removed``, where the state machine ends once the document is deleted."""

    INSTALL = "install"
    SETTINGS = "settings"
    UNINSTALL = "uninstall"
    REMOVED = "removed"
