"""The local journal: every function call, how it ended, and what a success returned.

A function whose success is journalled is never run again, even when the process died
before the PATCH that records it reached the API: resume replays the journalled result.
The calls are kept in order, for ``smartconnector history``. The journal also remembers
which connector directory installed which integration.

Durability: SQLite in WAL mode with ``synchronous=NORMAL``. A committed record is in the
write-ahead log before the engine goes on, so it survives the process dying in any way
(an error, Ctrl-C, ``kill -9``); only an operating-system crash or a power cut can lose
the last records before SQLite's next checkpoint, and then a function whose PATCH had not
landed either runs again, with the same idempotency key. Syncing every record to disk
(``synchronous=FULL``) would cost ~0.2 ms a step for that case alone.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    seq INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    integration_id TEXT NOT NULL,
    phase TEXT,
    step TEXT,
    function TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT,
    message TEXT,
    started REAL NOT NULL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS calls_by_key ON calls (key, status);
CREATE INDEX IF NOT EXISTS calls_by_integration ON calls (integration_id, seq);
CREATE TABLE IF NOT EXISTS connectors (
    integration_id TEXT PRIMARY KEY,
    directory TEXT NOT NULL
);
"""


#: Tries at switching a journal to write-ahead logging while another connection does.
WAL_TRIES = 20

#: How ``history`` names the statuses the engine records.
_OUTCOMES = {"succeeded": "succeeded", "error": "failed", "waiting": "waiting"}


@dataclass(frozen=True)
class Call:
    """One run of a connector function, as the journal keys it."""

    key: str
    integration_id: str
    step: str | None
    function: str
    started: float
    phase: str | None = None


@dataclass(frozen=True)
class Recorded:
    """A journalled success and what the function returned (which may be ``None``)."""

    result: Any


class Journal:
    """SQLite in WAL mode: a recorded success survives the process being killed."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 10000")
        self._use_wal()
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.executescript(_SCHEMA)
        self._adopt_older_journal()

    def close(self) -> None:
        self._db.close()

    def _use_wal(self) -> None:
        """Switch the file to write-ahead logging once. The switch takes the file's lock
        without waiting for the busy timeout, so connections opened at once on a new journal
        (check's runs do) can find it "locked": they try again shortly."""
        for attempt in range(WAL_TRIES):
            try:
                if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self._db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == WAL_TRIES - 1:
                    raise
                time.sleep(0.02 * (attempt + 1))

    def _adopt_older_journal(self) -> None:
        """A journal from before calls were kept in order had one row per key, in ``runs``."""
        old = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'"
        ).fetchone()
        if old:
            self._db.executescript(
                "BEGIN; INSERT INTO calls (key, integration_id, step, function, status, result,"
                " message, started, finished) SELECT key, integration_id, step, function, status,"
                " result, message, started, finished FROM runs ORDER BY started;"
                " DROP TABLE runs; COMMIT;"
            )

    def succeeded(self, key: str) -> Recorded | None:
        """The recorded result of the call with ``key``, if it succeeded."""
        row = self._db.execute(
            "SELECT result FROM calls WHERE key = ? AND status = 'succeeded'"
            " ORDER BY seq DESC LIMIT 1",
            (key,),
        ).fetchone()
        return Recorded(json.loads(row[0])) if row else None

    def history(self, integration_id: str) -> list[dict[str, Any]]:
        """The calls made on ``integration_id``, oldest first, as ``history --json`` shows
        them: ``time`` (ISO 8601), ``phase``, ``step``, ``function``, ``outcome``
        (``succeeded``, ``failed`` or ``waiting``) and ``seconds``."""
        rows = self._db.execute(
            "SELECT started, finished, phase, step, function, status FROM calls"
            " WHERE integration_id = ? ORDER BY seq",
            (integration_id,),
        ).fetchall()
        return [
            {
                "time": datetime.fromtimestamp(started, UTC).isoformat(timespec="milliseconds"),
                "phase": phase,
                "step": step,
                "function": function,
                "outcome": _OUTCOMES.get(status, status),
                "seconds": round(finished - started, 3) if finished is not None else None,
            }
            for started, finished, phase, step, function, status in rows
        ]

    def record(
        self,
        call: Call,
        status: str,
        *,
        result: Any = None,
        message: str | None = None,
    ) -> None:
        """Record how a call ended: one durable write per call, after it ends.

        Only a success must survive a crash (it is what stops a rerun); a call that was
        cut off needs no record, as it will simply run again.
        """
        self._db.execute(
            "INSERT INTO calls (key, integration_id, phase, step, function, status, result,"
            " message, started, finished) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                call.key,
                call.integration_id,
                call.phase,
                call.step,
                call.function,
                status,
                json.dumps(result),
                message,
                call.started,
                time.time(),
            ),
        )

    def remember_connector(self, integration_id: str, directory: Path) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO connectors VALUES (?, ?)", (integration_id, str(directory))
        )

    def connector_directory(self, integration_id: str) -> Path | None:
        row = self._db.execute(
            "SELECT directory FROM connectors WHERE integration_id = ?", (integration_id,)
        ).fetchone()
        return Path(row[0]) if row else None
