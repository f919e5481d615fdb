"""What a run will do, as data: the ordered actions ``plan`` prints (``--json`` for scripts).

>>> Action("call", function="verifyConnection", step="NetSuite Connection").to_json()
{'action': 'call', 'function': 'verifyConnection', 'step': 'NetSuite Connection'}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.functions import check_functions
from installers import Connector


@dataclass(frozen=True)
class Action:
    """One thing a run does: ``create`` the integration, ``call`` a function (a step's
    call also marks it completed, in the same write), or change ``mode``.

    ``function`` is ``None`` for an action that calls none; ``step`` is ``None`` for
    connector-level actions. ``origin`` says where a local function is defined.
    """

    action: str
    function: str | None = None
    step: str | None = None
    kind: str | None = None
    origin: str | None = None
    to: str | None = None

    def to_json(self) -> dict[str, Any]:
        shown = {"action": self.action, "function": self.function, "step": self.step}
        extra = {"kind": self.kind, "origin": self.origin, "to": self.to}
        return shown | {k: v for k, v in extra.items() if v is not None}


@dataclass(frozen=True)
class Plan:
    """What an install of ``connector`` at ``version`` would do, in order."""

    connector: str
    version: str
    actions: list[Action] = field(default_factory=list)

    @property
    def calls(self) -> list[Action]:
        return [a for a in self.actions if a.action == "call"]

    def to_json(self) -> list[dict[str, Any]]:
        return [a.to_json() for a in self.actions]


def install_plan(connector: Connector) -> Plan:
    """Validate ``connector`` (every function it names resolves) and list what a fresh
    install runs; nothing is called or changed."""
    check_functions(connector)
    manifest, registry = connector.manifest, connector.registry

    def call(function: str, step: str | None, kind: str) -> Action:
        found = registry.get(function)
        return Action("call", function, step, kind, found.origin if found else None)

    actions = [Action("create", to="install")]
    if manifest.installer_function:
        actions.append(call(manifest.installer_function, None, "installerFunction"))
    actions += [call(s.installer_function, s.name, "installerFunction") for s in manifest.install]
    actions.append(Action("mode", to="settings"))
    return Plan(manifest.name, manifest.version, actions)
