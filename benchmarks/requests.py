"""The requests an N-step install makes: exactly N + 2 on the sandbox, at most N + 6 on the
platform as documented (SPEC §5a), where the run's state goes to the State API. The API's
write way is found by the engine's probe first, as a user's first run finds it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx

from benchmarks._common import CountingTransport, Row, Sizes

#: Each profile of the sandbox, and the requests beyond N an N-step install may make there
#: (steps only; a connector-level installer adds one on the sandbox, where the bound of the
#: platform already counts it).
PROFILES = {"default": 2, "platform": 6, "put-only": 6}


async def requests(sizes: Sizes) -> list[Row]:
    rows = []
    for profile, extra in PROFILES.items():
        rows += await _profile_rows(profile, extra, sizes.request_steps)
    return rows


async def _profile_rows(profile: str, extra: int, steps: tuple[int, ...]) -> list[Row]:
    from engine.client import ApiClient
    from engine.drivers.runner import Engine
    from engine.run.journal import Journal
    from installers.fakes import FakeConnector
    from sandbox import Store, create_app

    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        store = Store(tmp / "s.db")
        app = create_app(store, rate=1e9, burst=1e9, profile=profile)
        transport = CountingTransport(httpx.ASGITransport(app=app))
        async with ApiClient(
            "http://s/v1", store.create_token(["all.User"]), transport=transport
        ) as api:
            engine = Engine(api, Journal(tmp / "j.db"), claim_wait=0.0)
            await engine.install(FakeConnector(1, connector_id="probe").connector())
            for n, installer in [*((n, False) for n in steps), (5, True)]:
                fake = FakeConnector(n, connector_functions=installer)
                bound = extra + (installer and profile == "default")
                before = transport.sent
                await engine.install(fake.connector())
                sent = transport.sent - before
                also = ", with a connector installer" if installer else ""
                rows.append(
                    Row(
                        f"HTTP requests of a {n}-step install ({profile}{also})",
                        str(sent),
                        f"{n + bound} (N + {bound})",
                        "within" if sent <= n + bound else "MORE",
                        f"N + {bound} at most",
                    )
                )
        store.close()
    return rows
