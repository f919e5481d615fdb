"""What a run does, as data: one pure function from the document to the ordered actions.

:func:`plan_run` is the only place that knows the order of a run. ``plan`` prints it, and
both executors run it through :meth:`engine.run.integration.IntegrationRun.execute`: a
short loop here, or a Temporal workflow, one activity per function call. Planning again
from the document of a stopped run gives what is left to do: nothing already recorded in
the document is planned again.

>>> Call("verify", "NetSuite", "installerFunction", "install").to_json()
{'action': 'call', 'function': 'verify', 'step': 'NetSuite', 'kind': 'installerFunction'}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from engine.models import ConnectorManifest, InstallStep, Mode
from engine.run.functions.resolve import check_functions
from engine.run.progress import Progress
from installers import Connector

if TYPE_CHECKING:  # `plan DIR` loads no HTTP client
    from engine.client import Document


class Intent(StrEnum):
    """What a command asks of an integration."""

    INSTALL = "install"  # a new integration, or one still in mode install
    RESUME = "resume"  # go on with whatever the document says was under way
    UNINSTALL = "uninstall"
    UPDATE = "update"  # to the connector's version


def _shown(
    action: str, function: str | None = None, step: str | None = None, **extra: Any
) -> dict[str, Any]:
    """An action as ``plan --json`` prints it: ``action``, ``function`` and ``step`` always,
    the rest only when it says something."""
    return {"action": action, "function": function, "step": step} | {
        k: v for k, v in extra.items() if v
    }


@dataclass(frozen=True)
class Create:
    """Create the integration, in mode install."""

    tag: ClassVar[str] = "create"

    def to_json(self) -> dict[str, Any]:
        return _shown(self.tag, to=Mode.INSTALL.value)


@dataclass(frozen=True)
class Call:
    """Run a function: connector-level when ``step`` is ``None``, else a step's, whose success
    marks the step ``completes`` in the same write. ``kind`` is the manifest key the function
    comes from (``installerFunction``, ...); ``phase`` keys its idempotency."""

    function: str
    step: str | None
    kind: str
    phase: str
    completes: bool = False
    origin: str | None = None
    tag: ClassVar[str] = "call"

    def to_json(self) -> dict[str, Any]:
        return _shown(self.tag, self.function, self.step, kind=self.kind, origin=self.origin)


@dataclass(frozen=True)
class ChangeMode:
    """Change the mode to ``to``."""

    to: Mode
    tag: ClassVar[str] = "mode"

    def to_json(self) -> dict[str, Any]:
        return _shown(self.tag, to=self.to.value)


@dataclass(frozen=True)
class BeginUpdate:
    """Set the update flag for version ``to`` and add the version's new ``steps``."""

    to: str
    steps: tuple[str, ...] = ()
    tag: ClassVar[str] = "begin_update"

    def to_json(self) -> dict[str, Any]:
        return _shown(self.tag, to=self.to, steps=list(self.steps))


@dataclass(frozen=True)
class FinishUpdate:
    """Write the version ``to`` and clear the flag: the update's last act."""

    to: str
    tag: ClassVar[str] = "finish_update"

    def to_json(self) -> dict[str, Any]:
        return _shown(self.tag, to=self.to)


@dataclass(frozen=True)
class Delete:
    """Delete the integration."""

    tag: ClassVar[str] = "delete"

    def to_json(self) -> dict[str, Any]:
        return _shown(self.tag)


@dataclass(frozen=True)
class Release:
    """Free the lease: nothing else to do."""

    tag: ClassVar[str] = "release"

    def to_json(self) -> dict[str, Any]:
        return _shown(self.tag)


@dataclass(frozen=True)
class Take:
    """Take the integration's lease for this run: a command's first act on an integration
    that exists. An update's first act (its flag, version and new steps, for version
    ``update``) rides on the same write. ``fresh``: the run just created the document under
    its lease, so there is nothing to take unless the API dropped the run state."""

    update: str | None = None
    fresh: bool = False
    tag: ClassVar[str] = "take"

    def to_json(self) -> dict[str, Any]:
        return _shown(self.tag, update=self.update)


@dataclass(frozen=True)
class SaveSettings:
    """Run ``persistSettings`` (if the connector has one) on ``settings``, then write them."""

    settings: dict[str, Any]
    tag: ClassVar[str] = "save_settings"

    def to_json(self) -> dict[str, Any]:
        return _shown(self.tag)


#: One thing a run does, in order.
Action = (
    Take | Create | Call | ChangeMode | BeginUpdate | FinishUpdate | SaveSettings | Delete | Release
)
_KINDS: dict[str, type[Action]] = {
    cls.tag: cls
    for cls in (
        Take,
        Create,
        Call,
        ChangeMode,
        BeginUpdate,
        FinishUpdate,
        SaveSettings,
        Delete,
        Release,
    )
}


def calls_function(action: Action) -> bool:
    """Whether doing ``action`` runs a connector function (executors cut plans there)."""
    return isinstance(action, Call | SaveSettings)


def to_wire(action: Action) -> dict[str, Any]:
    """Every field of ``action``, tagged: to cross a process boundary (a Temporal activity)."""
    fields = {f.name: getattr(action, f.name) for f in dataclasses.fields(action)}
    return {"action": action.tag, **fields}


def from_wire(data: dict[str, Any]) -> Action:
    """The action :func:`to_wire` made."""
    fields = {k: v for k, v in data.items() if k != "action"}
    kind = _KINDS[data["action"]]
    if kind is ChangeMode:
        fields["to"] = Mode(fields["to"])
    if kind is BeginUpdate:
        fields["steps"] = tuple(fields.get("steps") or ())
    return kind(**fields)


@dataclass(frozen=True)
class Plan:
    """What a run of ``connector`` at ``version`` would do, in order."""

    connector: str
    version: str
    actions: list[Action] = field(default_factory=list)

    @property
    def calls(self) -> list[Call]:
        return [a for a in self.actions if isinstance(a, Call)]

    def to_json(self) -> list[dict[str, Any]]:
        return [a.to_json() for a in self.actions]


def taking(actions: list[Action], *, fresh: bool = False) -> list[Action]:
    """``actions`` run under this run's lease: a :class:`Take` first, an update's first act
    folded into it (2 + k requests for an update from a held document)."""
    if actions and isinstance(actions[0], BeginUpdate):
        return [Take(update=actions[0].to, fresh=fresh), *actions[1:]]
    return [Take(fresh=fresh), *actions]


def plan_run(
    doc: Document | None, manifest: ConnectorManifest, intent: Intent, version: str | None = None
) -> list[Action]:
    """The actions that take ``doc`` (``None``: not created yet) where ``intent`` asks.

    Pure: it reads the document and the manifest, and nothing else. ``version`` is the
    update's target (default: the manifest's).
    """
    if doc is None:
        return [Create(), *_install(None, manifest)]
    progress = Progress(doc)
    if intent is Intent.UNINSTALL or progress.mode is Mode.UNINSTALL:
        return _uninstall(progress, manifest)
    if progress.mode is Mode.INSTALL:
        return _install(progress, manifest)
    if intent is Intent.UPDATE or progress.update_in_progress:
        target = version or progress.run.update_to or manifest.version
        if progress.update_in_progress or progress.version != target:
            return _update(progress, manifest, target)
    return [Release()]


def _connector_call(
    kind: str, function: str | None, phase: str, done: frozenset[str]
) -> list[Action]:
    if not function or kind in done:
        return []
    return [Call(function, None, kind, phase)]


def _step_call(step: dict[str, Any], key: str, phase: str, completes: bool) -> Call:
    return Call(str(step.get(key)), step.get("name"), key, phase, completes)


def _install(progress: Progress | None, manifest: ConnectorManifest) -> list[Action]:
    done = progress.run.done if progress else frozenset()
    steps = progress.steps if progress else [s.to_wire() for s in manifest.install]
    return [
        *_connector_call("installerFunction", manifest.installer_function, "installer", done),
        *(
            _step_call(s, "installerFunction", "install", True)
            for s in steps
            if s.get("completed") is not True
        ),
        ChangeMode(Mode.SETTINGS),
    ]


def _uninstall(progress: Progress, manifest: ConnectorManifest) -> list[Action]:
    fresh = progress.mode is not Mode.UNINSTALL
    done = frozenset() if fresh else progress.run.done  # starting over resets them
    calls = [
        *_connector_call(
            "preUninstallFunction", manifest.pre_uninstall_function, "uninstall", done
        ),
        *(
            _step_call(s, "uninstallerFunction", "uninstall", False)
            for s in reversed(progress.steps)
            if s.get("completed") is True
        ),
        *_connector_call("uninstallerFunction", manifest.uninstaller_function, "uninstall", done),
    ]
    start: list[Action] = [ChangeMode(Mode.UNINSTALL)] if fresh else []
    return [*start, *calls, Delete()]


def _update(progress: Progress, manifest: ConnectorManifest, version: str) -> list[Action]:
    phase = f"update:{version}"
    added = new_steps(progress.doc, manifest)
    started = progress.update_in_progress
    begin: list[Action] = (
        [] if started and not added else [BeginUpdate(version, tuple(s.name for s in added))]
    )
    pending = [s for s in progress.steps if s.get("completed") is not True]
    return [
        *begin,
        *_connector_call("updateFunction", manifest.update_function, phase, progress.run.done),
        *(_step_call(s, "installerFunction", phase, True) for s in pending),
        *(_step_call(s.to_wire(), "installerFunction", phase, True) for s in added),
        FinishUpdate(version),
    ]


def new_steps(doc: Document, manifest: ConnectorManifest) -> list[InstallStep]:
    """The steps of the connector's version that the document does not have yet."""
    present = {s.get("name") for s in Progress(doc).steps}
    return [s for s in manifest.install if s.name not in present]


def install_plan(connector: Connector) -> Plan:
    """Validate ``connector`` (every function it names resolves) and list what a fresh
    install does, with where each local function is defined; nothing is called or changed."""
    check_functions(connector)
    registry = connector.registry

    def located(action: Action) -> Action:
        if not isinstance(action, Call):
            return action
        found = registry.get(action.function)
        return replace(action, origin=found.origin if found else None)

    manifest = connector.manifest
    actions = [located(a) for a in plan_run(None, manifest, Intent.INSTALL)]
    return Plan(manifest.name, manifest.version, actions)
