"""Where a check runs: throwaway embedded sandboxes, and the home whose journal its engines keep.

Nothing here reads the user's settings: no ``$SMARTCONNECTOR_HOME``, no ``--api-url``, no
token from the environment. Each sandbox lives in memory and serves one run at a time,
emptied between runs, so runs that go on at once never see each other's resources; the
journal is a file in a temporary home, as the engine keeps it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from engine.client import ApiClient, in_process
from engine.drivers.runner import Engine
from engine.policy import RateLimit
from engine.run.journal import Journal

#: What a check counts: the resources a connector makes, and the account's State API keys.
RESOURCES = ("integrations", "connections", "exports", "imports", "flows")
STATE = "state"
SANDBOX_URL = "http://check.sandbox/v1"
#: The platform's rate limit is not what a check tests: its sandboxes do not enforce one.
UNLIMITED = 1e9


@dataclass(frozen=True)
class Resource:
    """One thing that exists in the sandbox: what kind, its id, and what a person calls it."""

    resource: str
    id: str
    name: str


#: Everything that exists, by ``(resource, id)``, in the order the sandbox made it.
Snapshot = dict[tuple[str, str], Resource]


class Sandbox:
    """An embedded sandbox of the check's own (the same API ``install`` talks to)."""

    def __init__(self) -> None:
        from sandbox import Store, create_app

        self._store = Store(":memory:")  # thrown away with it: nothing to write to disk
        token = self._store.create_token(["all.User"], label="check")
        app = create_app(self._store, rate=UNLIMITED, burst=UNLIMITED)
        self.api = ApiClient(
            SANDBOX_URL,
            token,
            transport=in_process(app),
            rate_limit=RateLimit(rate=UNLIMITED, burst=UNLIMITED),
            reachable=False,
        )

    async def snapshot(self) -> Snapshot:
        """What exists now: every document of each resource, and the State API's keys."""
        found: Snapshot = {}
        for resource in RESOURCES:
            for doc in await self.api.list(resource):
                id = str(doc.get("_id"))
                name = doc.get("name")
                found[resource, id] = Resource(resource, id, str(name) if name else id)
        for key in await self.api.state_keys():
            found[STATE, key] = Resource(STATE, key, key)
        return found

    async def empty(self) -> None:
        """Delete everything, for the next run: as good as a new sandbox, and cheaper."""
        for resource, id in await self.snapshot():
            if resource == STATE:
                await self.api.delete_state(id)
            else:
                await self.api.delete(resource, id)

    async def close(self) -> None:
        await self.api.aclose()
        await asyncio.to_thread(self._store.close)


class Workspace:
    """One run's machine: the sandbox it installs on, and the home whose journal each
    engine it starts (each simulated process) opens anew. Runs may share a home, as
    integrations on one machine do: the journal keys every call by its integration."""

    def __init__(self, sandbox: Sandbox, home: Path) -> None:
        self.sandbox = sandbox
        self.home = home
        self._journals: list[Journal] = []

    async def engine(self, *, lease_ttl: float | None = None) -> Engine:
        """An engine as a new process here would start one: its own journal connection
        (opened, like every SQLite file's open and close here, off the event loop: they
        wait for the disk, and the other runs need not wait with them)."""
        journal = await asyncio.to_thread(Journal, self.home / "journal.db")
        self._journals.append(journal)
        if lease_ttl is None:
            return Engine(self.sandbox.api, journal)
        return Engine(self.sandbox.api, journal, lease_ttl=lease_ttl)

    async def snapshot(self) -> Snapshot:
        return await self.sandbox.snapshot()

    async def close(self) -> None:
        for journal in self._journals:
            await asyncio.to_thread(journal.close)
