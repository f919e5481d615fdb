"""How a connector author tests a connector with smartconnector's pytest plugin.

The fixtures come from the plugin (installed with smartconnector, no conftest needed):
``install_connector`` installs on an in-process sandbox, ``sandbox_api`` looks at the result,
``smartconnector_engine`` runs resume and uninstall, ``fake_connector`` builds fakes.
Run it with ``python -m pytest examples/bigcommerce_netsuite``.
"""

from __future__ import annotations

from pathlib import Path

from installers import load_connector

HERE = Path(__file__).parent


async def test_installs_and_creates_its_connections(install_connector, sandbox_api):
    """Installing creates both connections and points the steps at them."""
    doc = await install_connector(HERE)
    assert doc["mode"] == "settings"
    connection_ids = {c["_id"] for c in await sandbox_api.list("connections")}
    assert {
        doc["install"][0]["_connectionId"],
        doc["install"][1]["_connectionId"],
    } == connection_ids


async def test_uninstall_leaves_nothing(install_connector, sandbox_api, smartconnector_engine):
    """Uninstalling deletes the connections and the integration."""
    doc = await install_connector(HERE)
    await smartconnector_engine.uninstall(doc["_id"], load_connector(HERE))
    assert await sandbox_api.list("connections") == []
    assert await sandbox_api.list("integrations") == []
