"""One engine, two executors: the same commands run here and on Temporal make the same calls
and leave the same documents, failures and an ``--atomic`` rollback included."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from engine.client import ApiClient, Document
from engine.drivers.executors import LocalExecutor
from engine.drivers.runner import Engine
from engine.errors import StepFailed
from engine.pytest_plugin import write_connector_folder
from engine.run.journal import Journal
from engine.run.progress import RUN_FIELD
from engine.temporal._client import TemporalExecutor, run_worker
from installers import load_connector

from .conftest import Server

FUNCTIONS = """
from pathlib import Path
from installers import Registry
registry = Registry("executors test")
HERE = Path(__file__).parent

def note(word, ctx):
    with (HERE.parent / "calls.log").open("a") as log:  # both versions' calls, in order
        log.write(f"{word} {ctx.step.name if ctx.step else '-'}\\n")

def make(ctx):
    if (HERE.parent / f"broken-{ctx.step.name}").exists():
        raise RuntimeError("the ERP refused the credentials")
    note("make", ctx)
    return {"stepsToUpdate": [{"name": ctx.step.name, "description": f"made {ctx.step.name}"}]}

def persist(ctx):
    note("persist", ctx)
    return {"pending": {**ctx.options["pending"], "checked": True}}

for name in ("makeA", "makeB", "makeC", "makeD"):
    registry.add(name, make)
registry.add("undo", lambda ctx: note("undo", ctx))
registry.add("setUp", lambda ctx: note("setUp", ctx))
registry.add("connectorUpdate", lambda ctx: note("update", ctx))
registry.add("persist", persist)
"""


def connector(directory: Path, version: str, steps: str) -> Path:
    manifest = {
        "name": "Executors test",
        "_connectorId": "executors-test",
        "version": version,
        "installerFunction": "setUp",
        "updateFunction": "connectorUpdate",
        "persistSettingsFunction": "persist",
        "settings": {"frequency": "daily"},
        "install": [
            {"name": s, "installerFunction": f"make{s}", "uninstallerFunction": "undo"}
            for s in steps
        ],
    }
    return write_connector_folder(directory, manifest, FUNCTIONS)


#: Fields that differ between any two runs: ids, times, who held the lease.
VOLATILE = ("_id", "lastModified", "createdAt", RUN_FIELD)


def comparable(doc: Document | None) -> Document | None:
    return None if doc is None else {k: v for k, v in doc.items() if k not in VOLATILE}


async def story(engine: Engine, folder: Path) -> dict[str, Any]:
    """Every command the engine has, through its executor; what each left, by name."""
    first = load_connector(connector(folder / "v1", "1.0.0", "ABC"))
    newer = load_connector(connector(folder / "v2", "1.1.0", "ABCD"))
    seen: dict[str, Any] = {}

    async def now(integration_id: str) -> Document | None:
        found = await engine.api.list("integrations", _connectorId="executors-test")
        return comparable(next((d for d in found if d["_id"] == integration_id), None))

    (folder / "broken-B").touch()
    with pytest.raises(StepFailed) as failed:
        await engine.install(first)
    [made] = [d["_id"] for d in await engine.api.list("integrations") if d["mode"] == "install"]
    seen["failed"] = (str(failed.value).split(": ", 1)[-1], await now(made))
    (folder / "broken-B").unlink()
    await engine.resume(made, first)
    seen["resumed"] = await now(made)
    await engine.save_settings(made, {"frequency": "hourly"}, first)
    seen["settings"] = await now(made)
    await engine.update(made, newer)
    seen["updated"] = await now(made)
    await engine.uninstall(made, newer)
    seen["uninstalled"] = await now(made)

    (folder / "broken-C").touch()
    with pytest.raises(StepFailed) as rolled_back:
        await engine.install(first, atomic=True)
    seen["rolled back"] = (rolled_back.value.rolled_back, rolled_back.value.deleted)
    seen["left"] = await engine.api.list("integrations", _connectorId="executors-test")
    seen["calls"] = (folder / "calls.log").read_text().splitlines()
    return seen


@contextlib.asynccontextmanager
async def temporal_engine(
    api: ApiClient, journal: Journal, address: str, queue: str, folder: Path
) -> AsyncIterator[Engine]:
    """An engine whose plans run on Temporal, with a worker of this process that has the
    connector's newer version (a worker serves one version of each connector)."""
    client = await Client.connect(address)
    connectors = {"executors-test": load_connector(connector(folder / "v2", "1.1.0", "ABCD"))}
    worker = asyncio.create_task(run_worker(api, client, queue, connectors))
    try:
        yield Engine(api, journal, executor=TemporalExecutor(client, queue))
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker


async def test_both_executors_make_the_same_calls_and_leave_the_same_documents(
    server: Server, temporal_address: str, tmp_path: Path
) -> None:
    results = []
    for name in ("local", "temporal"):
        folder = tmp_path / name
        async with ApiClient(server.url, server.token()) as api:
            for doc in await api.list("integrations", _connectorId="executors-test"):
                await api.delete("integrations", doc["_id"])
            journal = Journal(tmp_path / f"{name}.db")
            if name == "local":
                results.append(await story(Engine(api, journal, executor=LocalExecutor()), folder))
                continue
            queue = f"executors-{tmp_path.name}"
            async with temporal_engine(api, journal, temporal_address, queue, folder) as engine:
                results.append(await story(engine, folder))
    local, temporal = results
    assert local == temporal
    assert local["calls"] == [
        *("setUp -", "make A"),  # B failed
        *("make B", "make C"),  # resumed
        "persist -",
        *("update -", "make D"),
        *("undo D", "undo C", "undo B", "undo A"),
        *("setUp -", "make A", "make B", "undo B", "undo A"),  # C failed: rolled back
    ]
    assert local["failed"][1]["install"][1]["completed"] is False
    assert local["resumed"]["mode"] == "settings"
    assert local["settings"]["settings"] == {"frequency": "hourly", "checked": True}
    assert local["updated"]["version"] == "1.1.0" and len(local["updated"]["install"]) == 4
    assert local["uninstalled"] is None
    assert local["rolled back"] == (["B", "A"], True) and local["left"] == []
