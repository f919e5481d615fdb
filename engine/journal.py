"""The local journal: which function runs succeeded, with their results.

A function whose success is journalled is never run again, even when the process died
before the PATCH that records it reached the API: resume replays the journalled result.
The journal also remembers which connector directory installed which integration.

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
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    integration_id TEXT NOT NULL,
    step TEXT,
    function TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT,
    message TEXT,
    started REAL NOT NULL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS connectors (
    integration_id TEXT PRIMARY KEY,
    directory TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Call:
    """One run of a connector function, as the journal keys it."""

    key: str
    integration_id: str
    step: str | None
    function: str
    started: float


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
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def succeeded(self, key: str) -> Recorded | None:
        """The recorded result of the run with ``key``, if it succeeded."""
        row = self._db.execute(
            "SELECT result FROM runs WHERE key = ? AND status = 'succeeded'", (key,)
        ).fetchone()
        return Recorded(json.loads(row[0])) if row else None

    def record(
        self,
        call: Call,
        status: str,
        *,
        result: Any = None,
        message: str | None = None,
    ) -> None:
        """Record how a function run ended: one durable write per run, after it ends.

        Only a success must survive a crash (it is what stops a rerun); a run that was
        cut off needs no record, as it will simply run again.
        """
        self._db.execute(
            "INSERT OR REPLACE INTO runs (key, integration_id, step, function, status, result,"
            " message, started, finished) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                call.key,
                call.integration_id,
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
