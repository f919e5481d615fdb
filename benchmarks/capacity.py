"""The sandbox under a C load generator (wrk), beside the floor of its own server stack:
a raw ASGI app over the same SQLite file on the same uvicorn (httptools, uvloop); and beside
the same server with FastAPI's app serving every request (as before the plain router)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks._common import CLI, ROOT, Row, Sizes, free_port
from benchmarks.startup import FASTAPI_LAUNCH

RAW_APP = """
import json, sqlite3, sys, uvicorn
db = sqlite3.connect(sys.argv[1], check_same_thread=False, isolation_level=None)
db.execute("PRAGMA journal_mode = WAL"); db.execute("PRAGMA synchronous = NORMAL")
db.execute("CREATE TABLE IF NOT EXISTS d (id TEXT PRIMARY KEY, body TEXT)")
db.execute("INSERT OR REPLACE INTO d VALUES ('x', '{}')")

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["method"] == "PATCH":
        db.execute("BEGIN IMMEDIATE")
        doc = json.loads(db.execute("SELECT body FROM d WHERE id = 'x'").fetchone()[0])
        doc["name"] = "y"
        db.execute("UPDATE d SET body = ? WHERE id = 'x'", (json.dumps(doc),))
        db.execute("COMMIT")
    out = db.execute("SELECT body FROM d WHERE id = 'x'").fetchone()[0].encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": out})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""


def capacity(sizes: Sizes) -> list[Row]:
    if shutil.which("wrk") is None:
        return [Row("sandbox capacity under wrk", "wrk not installed", "—", "—", "≥ 1,500 PATCH/s")]
    seconds = 5 if sizes.repeats > 2 else 2
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ours = _sandbox(tmp, seconds, CLI)
        framework = _sandbox(tmp, seconds, [sys.executable, "-c", FASTAPI_LAUNCH])
        floor = _raw(tmp, seconds)
    return [
        Row(
            f"sandbox {method} per second under wrk (1 thread, 8 connections, {seconds} s)",
            f"{ours[method]:,.0f}/s; FastAPI's app for every request: {framework[method]:,.0f}/s",
            f"{floor[method]:,.0f}/s (raw ASGI over SQLite, same uvicorn)",
            f"{ours[method] / floor[method]:.0%} of the floor"
            f" ({framework[method] / floor[method]:.0%} through FastAPI)",
            "≥ 1,500 PATCH/s" if method == "PATCH" else "—",
        )
        for method in ("GET", "PATCH")
    ]


def _wrk(url: str, seconds: int, token: str | None, patch: bool, tmp: Path) -> float:
    script = tmp / "patch.lua"
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"\n' if token else ""
    script.write_text(
        auth
        + (
            'wrk.method = "PATCH"\nwrk.headers["Content-Type"] = "application/json-patch+json"\n'
            """wrk.body = '[{"op":"replace","path":"/name","value":"y"}]'\n"""
            if patch
            else ""
        )
    )
    out = subprocess.run(
        ["wrk", "-t1", "-c8", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(found.group(1)) if found else float("nan")


def _sandbox(tmp: Path, seconds: int, launch: list[str]) -> dict[str, float]:
    port, db = free_port(), tmp / f"capacity-{len(launch)}.db"
    token = _token(db)
    server = _serve(launch, port, db)
    try:
        base = f"http://127.0.0.1:{port}/v1"
        doc = _when_up(
            lambda: httpx.post(
                f"{base}/integrations",
                json={"name": "x", "mode": "install", "install": []},
                headers={"Authorization": f"Bearer {token}"},
            ).json()
        )
        url = f"{base}/integrations/{doc['_id']}"
        return {
            "GET": _wrk(url, seconds, token, False, tmp),
            "PATCH": _wrk(url, seconds, token, True, tmp),
        }
    finally:
        server.terminate()
        server.wait(10)


def _token(db: Path) -> str:
    """A token of every scope in the sandbox's ``db``, made by the CLI."""
    return subprocess.run(
        [*CLI, "sandbox", "token", "create", "--scopes", "all.User", "--db", str(db)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout.strip()


def _serve(launch: list[str], port: int, db: Path) -> subprocess.Popen[bytes]:
    """``launch sandbox serve`` on ``port`` over ``db``, with a rate limit wrk cannot reach."""
    return subprocess.Popen(
        [
            *launch,
            "sandbox",
            "serve",
            "--port",
            str(port),
            "--db",
            str(db),
            "--rate",
            "1000000",
            "--burst",
            "1000000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )


def _raw(tmp: Path, seconds: int) -> dict[str, float]:
    port = free_port()
    (tmp / "raw.py").write_text(RAW_APP)
    server = subprocess.Popen(
        [sys.executable, str(tmp / "raw.py"), str(tmp / "raw.db"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/x"
        _when_up(lambda: httpx.get(url).json())
        return {
            "GET": _wrk(url, seconds, None, False, tmp),
            "PATCH": _wrk(url, seconds, None, True, tmp),
        }
    finally:
        server.terminate()
        server.wait(10)


def _when_up(call: Callable[[], Any]) -> Any:
    """``call()`` once the server answers it (within 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return call()
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
