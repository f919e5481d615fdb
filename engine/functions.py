"""Resolving the functions a connector names: locally, else on an extension server."""

from __future__ import annotations

from engine.errors import ConnectorInvalid
from engine.models import Integration
from installers import Connector
from installers.remote import ExtensionServer, with_remote


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
    """Every function the manifest (and the document) names resolves, or exit 2."""
    registry = connector.registry
    for path, name in function_names(connector, integration):
        if name not in registry:
            raise ConnectorInvalid(
                f"{path}: function {name!r} is not defined in registry {registry.name!r}"
                f" ({connector.provenance})",
                field=path,
            )


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
        if check_health:
            await extension.check_health()
        connector = with_remote(connector, extension, names)
    check_functions(connector, integration)
    return connector
