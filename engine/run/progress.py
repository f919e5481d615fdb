"""An integration's progress, and its one owner: the only code that knows its field paths.

:class:`Progress` reads mode, version, ``updateInProgress``, the steps and the engine's run
state from a document, and makes the patch operations each transition writes. How they
reach the API is the writer's concern (:mod:`engine.run.writer`): one JSON Patch, or the
document and the State API apart, as the API allows.

The engine's own field, ``smartconnector`` (read and changed by :class:`RunState`)::

    "smartconnector": {
        "lease":   {"owner": run id, "host": ..., "pid": ..., "expiresAt": ISO time},
        "done":    {"installerFunction": true, ...},   # connector-level functions done
        "waiting": {"step", "function", "message", "url"},   # a person must act
        "error":   {"step", "function", "message", "raisedAt"}   # the last failure
        "update":  {"to": version}                              # an update in progress
    }

It is in the document (not only on this machine), so engines on two machines see each other,
and any stopped run can be planned again from the document alone. :class:`RunState` reads
it and makes every patch operation that changes it: no other module writes its paths.
The field is removed when install, an update or a settings change finishes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.modes import Mode

if TYPE_CHECKING:  # a status read needs no pydantic, `plan DIR` no HTTP client
    from engine.client import Document
    from engine.models import ConnectorManifest

RUN_FIELD = "smartconnector"
Op = dict[str, Any]


def pointer(*parts: str | int) -> str:
    """A JSON Pointer, escaping ``~`` and ``/`` in keys."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _at(*parts: str) -> str:
    return pointer(RUN_FIELD, *parts)


def _dict(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class RunState:
    """The ``smartconnector`` field of one document, typed."""

    lease: dict[str, Any] | None = None
    done: frozenset[str] = frozenset()
    waiting: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    update_to: str | None = None
    present: bool = False

    @classmethod
    def of(cls, doc: Document) -> RunState:
        raw = doc.get(RUN_FIELD)
        if not isinstance(raw, dict):
            return cls()
        done = _dict(raw.get("done")) or {}
        update = _dict(raw.get("update")) or {}
        to = update.get("to")
        return cls(
            lease=_dict(raw.get("lease")),
            done=frozenset(k for k, v in done.items() if v is True),
            waiting=_dict(raw.get("waiting")),
            error=_dict(raw.get("error")),
            update_to=to if isinstance(to, str) else None,
            present=True,
        )

    @property
    def lease_owner(self) -> str | None:
        owner = (self.lease or {}).get("owner")
        return owner if isinstance(owner, str) else None

    @property
    def stopped(self) -> dict[str, Any] | None:
        """What stopped the last run: a step waiting for a person, or an error."""
        return self.waiting or self.error

    # -- the field's value, and each change as patch operations ------------------------------

    @staticmethod
    def initial(lease: dict[str, Any]) -> dict[str, Any]:
        """The field of a document being created, under ``lease``."""
        return {"lease": lease, "done": {}}

    def take(self, lease: dict[str, Any], doc: Document) -> list[Op]:
        """Take the lease: the whole field written at once (the rest kept as it is)."""
        kept = doc.get(RUN_FIELD) if self.present else {}
        return [{"op": "add", "path": _at(), "value": {"done": {}, **(kept or {}), "lease": lease}}]

    @staticmethod
    def held_by(run_id: str) -> Op:
        """The test every write of a run begins with: the lease is still ours."""
        return {"op": "test", "path": _at("lease", "owner"), "value": run_id}

    @staticmethod
    def renew(expires_at: str) -> Op:
        return {"op": "replace", "path": _at("lease", "expiresAt"), "value": expires_at}

    @staticmethod
    def release() -> Op:
        return {"op": "remove", "path": _at("lease")}

    @staticmethod
    def remove() -> Op:
        """The whole field goes (and with it the lease): the run is over."""
        return {"op": "remove", "path": _at()}

    @staticmethod
    def removes_all(ops: list[Op]) -> bool:
        return any(op["path"] == _at() and op["op"] == "remove" for op in ops)

    @staticmethod
    def split(ops: list[Op]) -> tuple[list[Op], list[Op]]:
        """``ops`` apart: those on the document, and those on the run state."""
        field = _at()
        on_state = [op for op in ops if op["path"] == field or op["path"].startswith(field + "/")]
        return [op for op in ops if op not in on_state], on_state

    @staticmethod
    def mark_done(kind: str) -> Op:
        """A connector-level function (``installerFunction``, ...) succeeded."""
        return {"op": "add", "path": _at("done", kind), "value": True}

    @staticmethod
    def reset_done() -> Op:
        """Uninstalling starts over: the connector-level functions run again."""
        return {"op": "add", "path": _at("done"), "value": {}}

    @staticmethod
    def note_update(version: str) -> Op:
        return {"op": "add", "path": _at("update"), "value": {"to": version}}

    @staticmethod
    def stop(status: str, record: dict[str, Any]) -> Op:
        """Why a run stopped: ``waiting`` for a person, or an ``error``."""
        return {"op": "add", "path": _at(status), "value": record}

    def clear_stops(self) -> list[Op]:
        """A step succeeded: what stopped an earlier try is no longer true."""
        stale = [name for name in ("waiting", "error") if getattr(self, name) is not None]
        return [{"op": "remove", "path": _at(name)} for name in stale]


@dataclass(frozen=True)
class Progress:
    """Where an integration is, read from its document, and the changes that move it on.

    Reads are lazy: making one costs nothing, so a run makes one for each action.
    """

    doc: Document

    @property
    def mode(self) -> Mode | None:
        mode = self.doc.get("mode")
        return Mode(mode) if isinstance(mode, str) and mode in _MODES else None

    @property
    def version(self) -> str | None:
        version = self.doc.get("version")
        return version if isinstance(version, str) else None

    @property
    def update_in_progress(self) -> bool:
        return self.doc.get("updateInProgress") is True

    @property
    def steps(self) -> list[dict[str, Any]]:
        """The install steps, as the document has them."""
        steps = self.doc.get("install")
        return [s for s in steps if isinstance(s, dict)] if isinstance(steps, list) else []

    @property
    def run(self) -> RunState:
        return RunState.of(self.doc)

    @property
    def any_completed(self) -> bool:
        return any(s.get("completed") is True for s in self.steps)

    @staticmethod
    def new_document(manifest: ConnectorManifest, lease: dict[str, Any]) -> Document:
        """The document install creates: ``mode: install``, every step not completed, the
        run state under ``lease``."""
        return {
            "name": manifest.name,
            "_connectorId": manifest.connector_id,
            "version": manifest.version,
            "mode": Mode.INSTALL.value,
            "install": [{**step.to_wire(), "completed": False} for step in manifest.install],
            "settings": manifest.settings,
            "updateInProgress": False,
            RUN_FIELD: RunState.initial(lease),
        }

    def index(self, name: str) -> int | None:
        """Where step ``name`` is in the document's list (``None``: it has no such step)."""
        for index, step in enumerate(self.doc.get("install") or []):
            if isinstance(step, dict) and step.get("name") == name:
                return index
        return None

    def completed(self, index: int) -> bool:
        """Whether step ``index`` is marked completed."""
        return self.doc["install"][index].get("completed") is True

    # -- each transition's writes --------------------------------------------------------------

    @staticmethod
    def change_mode(to: Mode) -> list[Op]:
        """Mode ``to``: settings ends the install's run; uninstall starts its functions over."""
        mode = {"op": "replace", "path": "/mode", "value": to.value}
        if to is Mode.SETTINGS:
            return [mode, RunState.remove()]
        if to is Mode.UNINSTALL:
            return [mode, RunState.reset_done()]
        return [mode]

    @staticmethod
    def function_done(kind: str) -> Op:
        """A connector-level function (``installerFunction``, ...) succeeded."""
        return RunState.mark_done(kind)

    @staticmethod
    def end_run() -> list[Op]:
        """Nothing left to do: the run state goes, and with it the lease."""
        return [RunState.remove()]

    def begin_update(self, to: str, added: list[dict[str, Any]]) -> list[Op]:
        """Flag the update and note its version, and append the version's new steps (not
        completed) with the whole list tested: a retry cannot add them twice."""
        ops: list[Op] = []
        if not self.update_in_progress:
            ops += [
                {"op": "add", "path": "/updateInProgress", "value": True},
                RunState.note_update(to),
            ]
        if added:
            steps = list(self.doc.get("install") or [])
            new = [{**step, "completed": False} for step in added]
            ops += [
                {"op": "test", "path": "/install", "value": steps},
                {"op": "replace", "path": "/install", "value": steps + new},
            ]
        return ops

    @staticmethod
    def finish_update(version: str) -> list[Op]:
        """The version recorded and the flag cleared; the run is over."""
        return [
            {"op": "add", "path": "/version", "value": version},
            {"op": "add", "path": "/updateInProgress", "value": False},
            RunState.remove(),
        ]

    def step_done(self, index: int, completed: bool) -> list[Op]:
        """Step ``index`` marked ``completed`` (tested by name first: a list changed since
        cannot take the mark on the wrong step), and what stopped an earlier try cleared."""
        name = self.doc["install"][index].get("name")
        return [
            {"op": "test", "path": pointer("install", index, "name"), "value": name},
            {"op": "replace", "path": pointer("install", index, "completed"), "value": completed},
            *self.run.clear_stops(),
        ]

    @staticmethod
    def set_step_field(index: int, field: str, value: Any) -> Op:
        """A field of step ``index`` (a function's ``stepsToUpdate``)."""
        return {"op": "add", "path": pointer("install", index, field), "value": value}

    @staticmethod
    def save_settings(settings: dict[str, Any]) -> list[Op]:
        """The settings written; the run is over."""
        return [{"op": "add", "path": "/settings", "value": settings}, RunState.remove()]


_MODES = frozenset(m.value for m in Mode)
