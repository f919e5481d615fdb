"""The requests an N-step install makes: exactly N + 2."""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx

from benchmarks._common import Row, Sizes


async def requests(sizes: Sizes) -> list[Row]:
    from engine.client import ApiClient
    from engine.journal import Journal
    from engine.runner import Engine
    from installers.fakes import FakeConnector
    from sandbox import Store, create_app

    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        store = Store(tmp / "s.db")
        transport = httpx.ASGITransport(app=create_app(store, rate=1e9, burst=1e9))
        async with ApiClient(
            "http://s/v1", store.create_token(["all.User"]), transport=transport
        ) as api:
            engine = Engine(api, Journal(tmp / "j.db"))
            for n in sizes.request_steps:
                before = api.requests_sent
                await engine.install(FakeConnector(n).connector())
                sent = api.requests_sent - before
                rows.append(
                    Row(
                        f"HTTP requests of a {n}-step install",
                        str(sent),
                        f"{n + 2} (N + 2)",
                        "exactly" if sent == n + 2 else "MORE",
                        "N + 2",
                    )
                )
        store.close()
    return rows
