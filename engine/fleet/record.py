"""A rollout's record: where it is and what an operator asked of it, in the State API.

It is kept under the account-level State API key ``smartconnector-rollout-<id>``, the id being
``<_connectorId>-<version>``, so every machine that reaches the API sees it::

    {
      "id": "bigcommerce-netsuite-1.1.0", "connector": "bigcommerce-netsuite",
      "version": "1.1.0", "executor": "local" | "temporal", "name": "BigCommerce - NetSuite",
      "state": "running" | "paused" | "baking" | "done" | "aborted" | "failed",
      "control": "run" | "pause" | "abort",   # what the operator asked; the rollout obeys
      "phase": 2, "phases": 4,                 # the phase it is in (or last ended), of n
      "updated": 12, "failed": 1, "skipped": 3, "remaining": 24,
      "inFlight": 2,                           # updates running now
      "waves": [{"size": 10, "updated": 9, "failed": 1, "skipped": 0}, ...],   # per phase
      "failures": [{"_id": "...", "error": "..."}],   # the first MAX_FAILURES, with errors
      "stopped": "why it ended early" | null,
      "options": {"pause": true, "bake": 60, "maxFailures": 3, "concurrency": 10},
      "runner": {"host": "...", "pid": 1234},  # the local rollout command writing it
      "heardAt": "2025-01-01T12:00:00.000Z"    # its last write
    }

Only the rollout writes the record, except ``control``: ``rollouts pause|resume|abort`` set it
(locally; on Temporal they are the workflow's signals and the workflow writes the record).
The rollout reads ``control`` back before each write, so it keeps what an operator set.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

from engine.client import ApiClient
from engine.errors import NotFound

PREFIX = "smartconnector-rollout-"
State = Literal["running", "paused", "baking", "done", "aborted", "failed"]
Control = Literal["run", "pause", "abort"]
STATES: tuple[State, ...] = ("running", "paused", "baking", "done", "aborted", "failed")
#: States after which nothing runs the rollout until its command is run again.
ENDED: frozenset[str] = frozenset({"done", "aborted", "failed"})
#: Failures the record keeps with their errors (the count is always exact).
MAX_FAILURES = 1000
#: Seconds without a write after which a running local rollout is taken to be gone.
SILENT_AFTER = 15.0
#: What ``rollouts --json`` prints of each rollout (SPEC §4).
SUMMARY_KEYS = (
    "id",
    "connector",
    "version",
    "state",
    "phase",
    "phases",
    "updated",
    "failed",
    "skipped",
    "remaining",
)


def rollout_key(rollout_id: str) -> str:
    return PREFIX + rollout_id


def rollout_name(connector_id: str, version: str) -> str:
    """A rollout's id: the connector's and the version's (its Temporal workflow's too)."""
    return f"{connector_id}-{version}"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def seconds_since(moment: str | None) -> float | None:
    if not moment:
        return None
    try:
        then = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (datetime.now(UTC) - then).total_seconds())


@dataclass
class Wave:
    """One phase: how many integrations it holds, and how each of those it reached ended."""

    size: int = 0
    updated: int = 0
    failed: int = 0
    skipped: int = 0


@dataclass
class RolloutRecord:
    """The record of one rollout (module docstring), as read or about to be written; its
    fields are named as in the JSON."""

    id: str
    connector: str
    version: str
    executor: str = "local"
    #: The connector's name, for people (``connector`` is its id).
    name: str = ""
    state: str = "running"
    control: str = "run"
    phase: int = 0
    phases: int = 1
    updated: int = 0
    failed: int = 0
    skipped: int = 0
    remaining: int = 0
    inFlight: int = 0
    waves: list[Wave] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    stopped: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    runner: dict[str, Any] | None = None
    heardAt: str | None = None

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    def summary(self) -> dict[str, Any]:
        """``rollouts --json``'s object for this rollout."""
        return {key: getattr(self, key) for key in SUMMARY_KEYS}

    def status(self) -> dict[str, Any]:
        """``rollouts status ID --json``: the summary and the failures with their errors."""
        failures = [{"_id": f["_id"], "error": f["error"]} for f in self.failures]
        return {**self.summary(), "failures": failures}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Any) -> RolloutRecord | None:
        """The record in ``raw``, or ``None`` when it is not one."""
        if not isinstance(raw, dict) or not all(isinstance(raw.get(k), str) for k in ("id",)):
            return None
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        values["waves"] = [Wave(**_wave(w)) for w in raw.get("waves") or []]
        values["failures"] = [
            {"_id": str(f.get("_id")), "error": str(f.get("error"))}
            for f in raw.get("failures") or []
            if isinstance(f, dict)
        ]
        try:
            return cls(**{"connector": "", "version": "", **values})
        except TypeError:
            return None

    def add_failure(self, integration_id: str, error: str) -> None:
        self.failed += 1
        if len(self.failures) < MAX_FAILURES:
            self.failures.append({"_id": integration_id, "error": error})

    def silent_for(self) -> float | None:
        """Seconds since the rollout last wrote its record."""
        return seconds_since(self.heardAt)

    @property
    def abandoned(self) -> bool:
        """A local rollout whose command is gone: it has not written for a while, or it was a
        process on this host that is no more."""
        if self.executor != "local" or self.ended:
            return False
        silent = self.silent_for()
        return silent is None or silent > SILENT_AFTER or _gone(self.runner or {})


def _gone(runner: dict[str, Any]) -> bool:
    """Whether ``runner`` was a process on this host that has ended."""
    pid = runner.get("pid")
    if runner.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _wave(raw: Any) -> dict[str, int]:
    if not isinstance(raw, dict):
        return {}
    return {k: int(raw[k]) for k in ("size", "updated", "failed", "skipped") if k in raw}


class RolloutRecords:
    """The rollouts' records in an API's State API."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api

    async def get(self, rollout_id: str) -> RolloutRecord | None:
        try:
            raw = await self.api.get_state(rollout_key(rollout_id))
        except NotFound:
            return None
        return RolloutRecord.from_json(raw)

    async def put(self, record: RolloutRecord) -> None:
        await self.api.put_state(rollout_key(record.id), record.to_json())

    async def all(self) -> list[RolloutRecord]:
        """Every rollout the API keeps a record of, by id."""
        keys = [k for k in await self.api.state_keys() if k.startswith(PREFIX)]
        found = await asyncio.gather(*(self.get(k[len(PREFIX) :]) for k in sorted(keys)))
        return [r for r in found if r is not None]

    async def ask(
        self, rollout_id: str, control: Control, *, wait: float = 3.0
    ) -> RolloutRecord | None:
        """Set ``control`` and wait (up to ``wait`` seconds) for the rollout to act on it.

        The rollout writes its whole record, keeping the ``control`` it read just before; a
        request landing between that read and the write is lost, so it is written again
        while the rollout is where it was (a rollout that went on and held again, after the
        next phase, has acted on it). A record nobody writes any more (its command is gone)
        is changed here: a pause or an abort then holds when the command runs again.
        ``None``: there is no such rollout.
        """
        deadline = time.monotonic() + wait
        asked_at: tuple[str, int] | None = None
        while True:
            record = await self.get(rollout_id)
            if record is None:
                return None
            where = (record.state, record.phase)
            if record.control != control and asked_at in (None, where):
                asked_at = where
                record.control = control
                if record.abandoned or record.ended:
                    record.state = _unattended(record, control)
                await self.put(record)
            elif record.control != control or acted_on(record, control):
                return record  # acted on, or went on and was asked again meanwhile
            if time.monotonic() >= deadline:
                return record
            await asyncio.sleep(0.2)


def acted_on(record: RolloutRecord, control: str) -> bool:
    """Whether ``record`` shows the rollout has done what ``control`` asks (or cannot)."""
    if record.ended or record.abandoned:
        return True
    if control == "pause":  # a bake goes on to its end, then the rollout holds
        return record.state in ("paused", "baking")
    return control == "run" and record.state != "paused"


def _unattended(record: RolloutRecord, control: str) -> str:
    """The state of a record no command runs, once ``control`` is set on it."""
    if record.ended:
        return record.state
    return {"pause": "paused", "abort": "aborted"}.get(control, record.state)
