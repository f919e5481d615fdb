"""A rollout's record: where it is and what an operator asked of it, in the State API.

It is kept under the account-level State API key ``smartconnector-rollout-<id>``, the id being
``<_connectorId>-<version>``, so every machine that reaches the API sees it::

    {
      "id": "bigcommerce-netsuite-1.1.0", "connector": "bigcommerce-netsuite",
      "version": "1.1.0", "executor": "local" | "temporal", "name": "BigCommerce - NetSuite",
      "state": "running" | "paused" | "baking" | "done" | "aborted" | "failed",
      "control": "run" | "pause" | "abort",   # what it obeys: its own hold, or a request
      "hold": 2,                               # its holds so far (a resume names the one)
      "asked": "...",                          # the operator's request it last took up
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

Only the rollout writes its record (on Temporal, its workflow). An operator's request
(``rollouts pause|resume|abort``, locally; on Temporal they are the workflow's signals) goes
under a key of its own, ``smartconnector-control-<id>``, written by operators only::

    {"control": "run", "asked": "2025-01-01T12:00:00.000Z 9f3a1c2e", "hold": 2}

The State API has no compare-and-set: were both to write one key, either could undo the
other's write. The rollout reads the request and takes each up once (``asked`` tells a new
one from the last) by :func:`take_up`: an abort is final; a resume releases only the hold it
names (the one its operator saw), so one asked before a hold does not release it. Where no
command runs a rollout, readers see its record with the request not yet taken up applied
(:meth:`RolloutRecords.get`); the command, run again, takes it up.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

from engine.client import ApiClient
from engine.errors import BadInput, NotFound

PREFIX = "smartconnector-rollout-"
#: Where an operator's requests of a rollout go (never under :data:`PREFIX`: not a record).
CONTROL_PREFIX = "smartconnector-control-"
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


def control_key(rollout_id: str) -> str:
    return CONTROL_PREFIX + rollout_id


@dataclass(frozen=True)
class Request:
    """What an operator last asked of a rollout; ``asked`` tells one request from another,
    and ``hold`` is the rollout's hold the operator saw (the one a resume releases)."""

    control: str
    asked: str
    hold: int = 0

    @classmethod
    def from_json(cls, raw: Any) -> Request | None:
        if not isinstance(raw, dict) or raw.get("control") not in ("run", "pause", "abort"):
            return None
        hold = raw.get("hold")
        return cls(raw["control"], str(raw.get("asked")), hold if isinstance(hold, int) else 0)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


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
    #: How many times it has held (after a phase, or paused by an operator).
    hold: int = 0
    #: The operator's request (``asked`` of the control key) it last took up.
    asked: str | None = None
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
        """A local rollout whose command is gone: it said so as it stopped (no runner), it
        has not written for a while, or it was a process on this host that is no more."""
        if self.executor != "local" or self.ended:
            return False
        if not self.runner:
            return True
        silent = self.silent_for()
        return silent is None or silent > SILENT_AFTER or _gone(self.runner)


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
        """The rollout as its operators see it: its record, with a request no command has
        taken up applied where no command runs it (it is taken up when one does)."""
        record = await self.stored(rollout_id)
        if record is None or not record.abandoned:
            return record
        request = await self.request(rollout_id)
        if request is not None and request.asked != record.asked:
            take_up(record, request)
        record.state = _unattended(record)
        return record

    async def stored(self, rollout_id: str) -> RolloutRecord | None:
        """The record as the rollout last wrote it."""
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

    async def request(self, rollout_id: str) -> Request | None:
        """What an operator last asked of the rollout, if anything."""
        try:
            return Request.from_json(await self.api.get_state(control_key(rollout_id)))
        except NotFound:
            return None

    async def put_request(self, rollout_id: str, request: Request) -> None:
        await self.api.put_state(control_key(rollout_id), request.to_json())

    async def ask(
        self, rollout_id: str, control: Control, *, wait: float = 3.0, hold: int | None = None
    ) -> RolloutRecord | None:
        """Ask for ``control`` and wait (up to ``wait`` seconds) for the rollout to take it
        up and act on it; the rollout as it then is, ``None`` when there is no such rollout.

        Only the request is written (the record is the rollout's). A resume names the hold
        its operator saw (``hold``; default: the one it holds now) and releases that one
        only. An ended rollout is asked nothing, and an abort, final, is never written over.
        """
        record = await self.get(rollout_id)
        if record is None or record.ended:
            return record
        await self._refuse_over_an_abort(record, control)
        asked = f"{now_iso()} {secrets.token_hex(4)}"
        seen = record.hold if hold is None else hold
        await self.put_request(rollout_id, Request(control, asked, seen))
        deadline = time.monotonic() + wait
        while True:
            found = await self.get(rollout_id)
            if found is None:
                return None
            record = found
            taken = record.asked == asked or record.abandoned or record.ended
            if (taken and acted_on(record, control)) or time.monotonic() >= deadline:
                return record
            await asyncio.sleep(0.2)

    async def _refuse_over_an_abort(self, record: RolloutRecord, control: str) -> None:
        """Exit 2 for a pause or resume of a rollout an abort was asked of: it ends."""
        if control == "abort":
            return
        pending = await self.request(record.id)
        aborting = record.control == "abort" or (
            pending is not None and pending.control == "abort" and pending.asked != record.asked
        )
        if aborting:
            ends = (
                "it ends as aborted when its `rollout` command runs again"
                if record.abandoned
                else "it ends once the updates in flight finish"
            )
            verb = "resume" if control == "run" else control
            raise BadInput(
                f"rollout {record.id} was asked to abort: {ends}; nothing to {verb}",
                field="control",
            )


def carry_on(record: RolloutRecord, found: RolloutRecord | None, request: Request | None) -> None:
    """What a new run's ``record`` takes from the last run's (``found``) and the operator's
    last request: its holds (counted on, so a stale resume names an old one); unless it
    ended, its control (a hold stays, an abort ends this run at once) and a request asked
    while no command ran it."""
    if found is not None:
        record.hold, record.asked = found.hold, found.asked
        if not found.ended:
            record.control = found.control
            if request is not None and request.asked != found.asked:
                take_up(record, request)
    if request is not None:
        record.asked = request.asked


def take_up(record: RolloutRecord, request: Request) -> bool:
    """Apply an operator's request not taken up yet to ``record``; whether its control
    changed. An abort is final; a pause is a new hold (unless it already holds); a resume
    releases the hold it names, and no later one."""
    record.asked = request.asked
    current = record.control
    if current == "abort" or request.control == current:
        return False
    if request.control == "run" and request.hold != record.hold:
        return False  # asked of an earlier hold, or before this one began
    if request.control == "pause":
        record.hold += 1
    record.control = request.control
    return True


def acted_on(record: RolloutRecord, control: str) -> bool:
    """Whether ``record`` shows the rollout has done what ``control`` asks (or cannot): an
    abort taken up is acted on (the updates in flight finish, then it ends)."""
    if record.ended or record.abandoned or record.control == "abort":
        return True
    if control == "pause":  # a bake goes on to its end, then the rollout holds
        return record.state in ("paused", "baking")
    return control == "run" and record.state != "paused"


def _unattended(record: RolloutRecord) -> str:
    """The state of a record no command runs, as its control says: paused once a pause is
    (a bake nobody runs is over); an abort ends it only when a command takes it up (running
    it again)."""
    if record.ended:
        return record.state
    if record.control == "pause":
        return "paused"
    return "running" if record.state == "baking" else record.state
