"""``smartconnector ui``: the install page a person uses in a browser (SPEC §8).

Served on loopback against the same API and engine as the other commands. A session token
in the printed URL (then a cookie) guards every page; the ``Host`` header must be the
address served; every action is a POST carrying the CSRF token. Actions go through the
engine as the CLI's do and run in the background; the page follows them over server-sent
events. Nothing here keeps a copy of the document: each page reads it.
"""

from __future__ import annotations

from engine.ui._app import UiConfig, create_ui_app

__all__ = ["UiConfig", "create_ui_app"]
