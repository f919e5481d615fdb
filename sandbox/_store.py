"""SQLite storage for the sandbox: documents, hashed tokens and idempotency keys.

One connection per store, WAL mode, every write in an immediate transaction so a
compare-and-swap (JSON Patch ``test``) holds across threads and processes sharing the file.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

Document = dict[str, Any]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    resource TEXT NOT NULL,
    id TEXT NOT NULL,
    connector_id TEXT,
    body TEXT NOT NULL,
    UNIQUE (resource, id)
);
CREATE INDEX IF NOT EXISTS documents_connector ON documents (resource, connector_id);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    scopes TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE TABLE IF NOT EXISTS idempotency (
    token_hash TEXT NOT NULL,
    key TEXT NOT NULL,
    resource TEXT NOT NULL,
    id TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (token_hash, key)
);
"""


@functools.lru_cache(maxsize=1024)
def hash_token(token: str) -> str:
    """What the store keeps of a token (remembered: every request asks, twice)."""
    return hashlib.sha256(token.encode()).hexdigest()


def state_scope(resource: str | None = None, id: str | None = None) -> str:
    """Where state lives: ``""`` for the account's own keys, ``resource/id`` under a document."""
    return f"{resource}/{id}" if resource and id else ""


def new_id() -> str:
    """A 24-hex id shaped like the platform's ObjectIds: seconds, then randomness."""
    return f"{int(time.time()):08x}{secrets.token_hex(8)}"


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(ms // 1000)) + f"{ms % 1000:03d}Z"


def _ms(iso: Any) -> int:
    if not isinstance(iso, str):
        return 0
    try:  # fromisoformat, not strptime: this runs on every write
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return 0
    return int(moment.timestamp() * 1000)


class Store:
    """Documents by resource and id, kept as JSON text exactly as given."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout = 10000")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._scopes: dict[str, frozenset[str]] = {}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- tokens ---------------------------------------------------------------------------

    def create_token(self, scopes: list[str], label: str = "") -> str:
        """A new random token with ``scopes``; only its hash is stored."""
        token = secrets.token_urlsafe(32)
        with self._transaction() as db:
            db.execute(
                "INSERT INTO tokens (hash, scopes, label, created) VALUES (?, ?, ?, ?)",
                (hash_token(token), " ".join(scopes), label, time.time()),
            )
        return token

    def token_scopes(self, token: str) -> frozenset[str] | None:
        """The token's scopes, or ``None`` for a token the store does not know.

        Known tokens are remembered (a token's scopes never change, and tokens are only
        pruned by age, between processes): every request asks, so this is its hot path. An
        unknown one is looked up each time, as ``token create`` may have just made it.
        """
        hashed = hash_token(token)
        known = self._scopes.get(hashed)
        if known is not None:
            return known
        with self._lock:
            row = self._db.execute("SELECT scopes FROM tokens WHERE hash = ?", (hashed,)).fetchone()
        if row is None:
            return None
        scopes = self._scopes[hashed] = frozenset(row[0].split())
        return scopes

    def forget_tokens(self, label: str, older_than: float) -> None:
        self._scopes.clear()
        with self._transaction() as db:
            db.execute(
                "DELETE FROM tokens WHERE label = ? AND created < ?",
                (label, time.time() - older_than),
            )

    # -- documents ------------------------------------------------------------------------

    def list(
        self, resource: str, *, after: int, limit: int, filters: dict[str, str]
    ) -> tuple[list[Document], int | None]:
        """A page of documents after sequence ``after``, and the cursor of the next page."""
        sql = "SELECT seq, body FROM documents WHERE resource = ? AND seq > ?"
        args: list[Any] = [resource, after]
        connector = filters.pop("_connectorId", None)
        if connector is not None:
            sql += " AND connector_id = ?"
            args.append(connector)
        sql += " ORDER BY seq"
        page: list[Document] = []
        last = after
        with self._lock:
            for seq, body in self._db.execute(sql, args):
                doc = json.loads(body)
                if any(str(doc.get(k)) != v for k, v in filters.items()):
                    continue
                if len(page) == limit:
                    return page, last
                page.append(doc)
                last = seq
        return page, None

    def get(self, resource: str, id: str) -> Document | None:
        with self._lock:
            row = self._db.execute(
                "SELECT body FROM documents WHERE resource = ? AND id = ?", (resource, id)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def create(
        self, resource: str, doc: Document, *, idempotency: tuple[str, str] | None = None
    ) -> tuple[Document, bool]:
        """Store a new document; with an idempotency key seen before, the first one again."""
        with self._transaction() as db:
            if idempotency is not None:
                row = db.execute(
                    "SELECT d.body FROM idempotency i JOIN documents d"
                    " ON d.resource = i.resource AND d.id = i.id"
                    " WHERE i.token_hash = ? AND i.key = ? AND i.resource = ?",
                    (*idempotency, resource),
                ).fetchone()
                if row:
                    return json.loads(row[0]), False
            doc = {**doc, "_id": new_id(), "lastModified": _iso(int(time.time() * 1000))}
            self._write(db, resource, doc, insert=True)
            if idempotency is not None:
                db.execute(
                    "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, ?, ?)",
                    (*idempotency, resource, doc["_id"], time.time()),
                )
        return doc, True

    def update(
        self, resource: str, id: str, change: Callable[[Document], Document]
    ) -> Document | None:
        """Read, ``change`` and write one document atomically; ``None`` when it is missing.

        ``change`` gets a copy of its own, which it may change in place; it may raise to
        abort, and nothing is written then.
        """
        with self._transaction() as db:
            row = db.execute(
                "SELECT body FROM documents WHERE resource = ? AND id = ?", (resource, id)
            ).fetchone()
            if row is None:
                return None
            current = json.loads(row[0])
            previous = _ms(current.get("lastModified"))
            doc = change(current)
            now = max(int(time.time() * 1000), previous + 1)
            doc = {**doc, "_id": id, "lastModified": _iso(now)}
            self._write(db, resource, doc, insert=False)
        return doc

    def delete(self, resource: str, id: str) -> bool:
        """Delete a document, and the state kept under it."""
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM documents WHERE resource = ? AND id = ?", (resource, id)
            )
            db.execute("DELETE FROM state WHERE scope = ?", (state_scope(resource, id),))
            return cursor.rowcount > 0

    # -- the State API: small values by key, global or under a document -------------------

    def state_keys(self, scope: str) -> builtins.list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key FROM state WHERE scope = ? ORDER BY key", (scope,)
            ).fetchall()
        return [row[0] for row in rows]

    def state_get(self, scope: str, key: str) -> tuple[bool, Any]:
        """``(found, value)``: a stored ``null`` is found."""
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM state WHERE scope = ? AND key = ?", (scope, key)
            ).fetchone()
        return (True, json.loads(row[0])) if row else (False, None)

    def state_put(self, scope: str, key: str, value: Any) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO state (scope, key, value) VALUES (?, ?, ?)",
                (scope, key, json.dumps(value, separators=(",", ":"), ensure_ascii=False)),
            )

    def state_delete(self, scope: str, key: str) -> bool:
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM state WHERE scope = ? AND key = ?", (scope, key))
            return cursor.rowcount > 0

    @staticmethod
    def _write(db: sqlite3.Connection, resource: str, doc: Document, *, insert: bool) -> None:
        connector = doc.get("_connectorId")
        body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
        connector_id = connector if isinstance(connector, str) else None
        if insert:
            db.execute(
                "INSERT INTO documents (resource, id, connector_id, body) VALUES (?, ?, ?, ?)",
                (resource, doc["_id"], connector_id, body),
            )
        else:
            db.execute(
                "UPDATE documents SET body = ?, connector_id = ? WHERE resource = ? AND id = ?",
                (body, connector_id, resource, doc["_id"]),
            )
