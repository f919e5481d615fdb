"""Resolving the functions a connector names: locally, else on an extension server."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from engine.errors import ConnectorInvalid
from engine.models import Integration, problems_error
from installers import Connector

if TYPE_CHECKING:  # remote functions need an HTTP client; `plan DIR` does not
    from installers.remote import ExtensionServer


def function_names(
    connector: Connector, integration: Integration | None = None
) -> list[tuple[str, str]]:
    """``(field path, name)`` of every function the manifest and the document name."""
    names = connector.manifest.function_names()
    if integration is not None:
        for i, step in enumerate(integration.install):
            names.append((f"install[{i}].installerFunction", step.installer_function))
            names.append((f"install[{i}].uninstallerFunction", step.uninstaller_function))
    return names


def check_functions(connector: Connector, integration: Integration | None = None) -> None:
    """Every function the manifest (and the document) names resolves, or exit 2 naming each
    one that does not, with the closest defined name."""
    registry = connector.registry
    defined = [f.name for f in registry]
    missing = [
        (path, f"function {name!r} is not defined{_did_you_mean(closest_name(name, defined))}")
        for path, name in function_names(connector, integration)
        if name not in registry
    ]
    if missing:
        raise problems_error(
            f"registry {registry.name!r} ({connector.provenance})", missing, ConnectorInvalid
        )


def closest_name(name: str, names: list[str]) -> str | None:
    """The one of ``names`` that ``name`` was most likely meant to be, if any is close."""
    by_lower = {n.lower(): n for n in names}
    found = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return by_lower.get(name.lower()) or (found[0] if found else None)


def _did_you_mean(close: str | None) -> str:
    return f"; did you mean {close!r}?" if close else ""


async def resolve_functions(
    connector: Connector,
    extension: ExtensionServer | None,
    integration: Integration | None = None,
    *,
    check_health: bool = True,
) -> Connector:
    """``connector`` with every function it names resolved: locally, else on ``extension``
    (after its health check, as the protocol cannot list functions), else exit 2."""
    names = function_names(connector, integration)
    if extension is not None and any(n not in connector.registry for _, n in names):
        from installers.remote import with_remote

        if check_health:
            await extension.check_health()
        connector = with_remote(connector, extension, names)
    check_functions(connector, integration)
    return connector
