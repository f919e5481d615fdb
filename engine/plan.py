"""What a run does, as data: one pure function from the document to the ordered actions.

:func:`plan_run` is the only place that knows the order of a run. ``plan`` prints it, the
local engine executes it in a short loop (:meth:`engine.run.IntegrationRun.execute`), and
the Temporal workflow executes the same list, one activity per action. Planning again
from the document of a stopped run gives what is left to do: nothing already recorded in
the document is planned again.

>>> Action("call", function="verifyConnection", step="NetSuite Connection").to_json()
{'action': 'call', 'function': 'verifyConnection', 'step': 'NetSuite Connection'}
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from engine.client import Document
from engine.functions import check_functions
from engine.models import ConnectorManifest, InstallStep, Mode
from engine.run_state import RunState
from installers import Connector


class Intent(StrEnum):
    """What a command asks of an integration."""

    INSTALL = "install"  # a new integration, or one still in mode install
    RESUME = "resume"  # go on with whatever the document says was under way
    UNINSTALL = "uninstall"
    UPDATE = "update"  # to the connector's version


@dataclass(frozen=True)
class Action:
    """One thing a run does, in order.

    ``action`` is one of ``create`` (the integration, in mode install), ``call`` (a
    function: connector-level when ``step`` is ``None``, else a step's, whose success marks
    the step ``completes`` in the same write), ``mode`` (change to ``to``),
    ``begin_update`` (set the update flag for version ``to`` and add the version's new
    ``steps``, not completed), ``finish_update`` (write the version, clear the flag),
    ``delete`` and ``release``
    (free the lease: nothing else to do). ``kind`` is the manifest key a connector-level
    function comes from (``installerFunction``, ...); ``phase`` keys its idempotency.
    """

    action: str
    function: str | None = None
    step: str | None = None
    kind: str | None = None
    phase: str | None = None
    completes: bool | None = None
    to: str | None = None
    steps: list[str] = field(default_factory=list)
    origin: str | None = None

    def to_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"action": self.action, "function": self.function}
        shown["step"] = self.step
        extra = {"kind": self.kind, "to": self.to, "origin": self.origin, "steps": self.steps}
        return shown | {k: v for k, v in extra.items() if v}


@dataclass(frozen=True)
class Plan:
    """What a run of ``connector`` at ``version`` would do, in order."""

    connector: str
    version: str
    actions: list[Action] = field(default_factory=list)

    @property
    def calls(self) -> list[Action]:
        return [a for a in self.actions if a.action == "call"]

    def to_json(self) -> list[dict[str, Any]]:
        return [a.to_json() for a in self.actions]


def plan_run(
    doc: Document | None, manifest: ConnectorManifest, intent: Intent, version: str | None = None
) -> list[Action]:
    """The actions that take ``doc`` (``None``: not created yet) where ``intent`` asks.

    Pure: it reads the document and the manifest, and nothing else. ``version`` is the
    update's target (default: the manifest's).
    """
    if doc is None:
        return [Action("create", to=Mode.INSTALL.value), *_install({}, manifest)]
    mode = doc.get("mode")
    if intent is Intent.UNINSTALL or mode == Mode.UNINSTALL.value:
        return _uninstall(doc, manifest)
    if mode == Mode.INSTALL.value:
        return _install(doc, manifest)
    in_progress = doc.get("updateInProgress") is True
    if intent is Intent.UPDATE or in_progress:
        target = version or RunState.of(doc).update_to or manifest.version
        if in_progress or doc.get("version") != target:
            return _update(doc, manifest, target)
    return [Action("release")]


def _steps(doc: Document) -> list[dict[str, Any]]:
    return [s for s in doc.get("install") or [] if isinstance(s, dict)]


def _connector_call(
    kind: str, function: str | None, phase: str, done: frozenset[str]
) -> list[Action]:
    if not function or kind in done:
        return []
    return [Action("call", function, None, kind, phase)]


def _step_call(step: dict[str, Any], key: str, phase: str, completes: bool) -> Action:
    return Action("call", step.get(key), step.get("name"), key, phase, completes)


def _install(doc: Document, manifest: ConnectorManifest) -> list[Action]:
    done = RunState.of(doc).done
    steps = _steps(doc) if doc else [s.to_wire() for s in manifest.install]
    return [
        *_connector_call("installerFunction", manifest.installer_function, "installer", done),
        *(
            _step_call(s, "installerFunction", "install", True)
            for s in steps
            if s.get("completed") is not True
        ),
        Action("mode", to=Mode.SETTINGS.value),
    ]


def _uninstall(doc: Document, manifest: ConnectorManifest) -> list[Action]:
    fresh = doc.get("mode") != Mode.UNINSTALL.value
    done = frozenset() if fresh else RunState.of(doc).done  # starting over resets them
    calls = [
        *_connector_call(
            "preUninstallFunction", manifest.pre_uninstall_function, "uninstall", done
        ),
        *(
            _step_call(s, "uninstallerFunction", "uninstall", False)
            for s in reversed(_steps(doc))
            if s.get("completed") is True
        ),
        *_connector_call("uninstallerFunction", manifest.uninstaller_function, "uninstall", done),
    ]
    start = [Action("mode", to=Mode.UNINSTALL.value)] if fresh else []
    return [*start, *calls, Action("delete")]


def _update(doc: Document, manifest: ConnectorManifest, version: str) -> list[Action]:
    phase = f"update:{version}"
    state = RunState.of(doc)
    added = new_steps(doc, manifest)
    started = doc.get("updateInProgress") is True
    begin = (
        []
        if started and not added
        else [Action("begin_update", to=version, steps=[s.name for s in added])]
    )
    pending = [s for s in _steps(doc) if s.get("completed") is not True]
    return [
        *begin,
        *_connector_call("updateFunction", manifest.update_function, phase, state.done),
        *(_step_call(s, "installerFunction", phase, True) for s in pending),
        *(_step_call(s.to_wire(), "installerFunction", phase, True) for s in added),
        Action("finish_update", to=version),
    ]


def new_steps(doc: Document, manifest: ConnectorManifest) -> list[InstallStep]:
    """The steps of the connector's version that the document does not have yet."""
    present = {s.get("name") for s in _steps(doc)}
    return [s for s in manifest.install if s.name not in present]


def install_plan(connector: Connector) -> Plan:
    """Validate ``connector`` (every function it names resolves) and list what a fresh
    install does, with where each local function is defined; nothing is called or changed."""
    check_functions(connector)
    registry = connector.registry

    def located(action: Action) -> Action:
        found = registry.get(action.function) if action.function else None
        return replace(action, origin=found.origin if found else None)

    manifest = connector.manifest
    actions = [located(a) for a in plan_run(None, manifest, Intent.INSTALL)]
    return Plan(manifest.name, manifest.version, actions)
