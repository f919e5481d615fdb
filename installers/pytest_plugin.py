"""pytest fixtures for testing connectors, registered through the ``pytest11`` entry point.

A connector test in a few lines::

    async def test_installs(install_connector, sandbox_api):
        doc = await install_connector("path/to/my_connector")
        assert doc["mode"] == "settings"
        assert await sandbox_api.list("connections")
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from engine.client import ApiClient, RetryPolicy
from engine.journal import Journal
from engine.runner import Engine
from installers._loading import Connector, load_connector
from installers.fakes import FakeConnector

#: Retries that keep tests fast; the API under test is in-process.
FAST_RETRY = RetryPolicy(
    attempts=8, budget=10.0, wait_initial=0.001, wait_max=0.01, wait_jitter=0.001
)


@pytest.fixture
def sandbox_store(tmp_path: Path) -> Any:
    """The sandbox's SQLite store in a temporary file."""
    from sandbox import Store

    store = Store(tmp_path / "sandbox.db")
    yield store
    store.close()


@pytest.fixture
def sandbox_token(sandbox_store: Any) -> str:
    """An all-scopes token for the in-process sandbox."""
    return str(sandbox_store.create_token(["all.User"]))


@pytest_asyncio.fixture
async def sandbox_api(sandbox_store: Any, sandbox_token: str) -> AsyncIterator[ApiClient]:
    """An :class:`ApiClient` talking to an in-process sandbox through the ASGI transport."""
    from sandbox import create_app

    transport = httpx.ASGITransport(app=create_app(sandbox_store))
    async with ApiClient(
        "http://sandbox.test/v1", sandbox_token, transport=transport, retry=FAST_RETRY
    ) as api:
        yield api


@pytest.fixture
def smartconnector_engine(sandbox_api: ApiClient, tmp_path: Path) -> Engine:
    """An :class:`Engine` on the in-process sandbox with a journal in ``tmp_path``."""
    return Engine(sandbox_api, Journal(tmp_path / "journal.db"))


@pytest.fixture
def fake_connector() -> Callable[..., FakeConnector]:
    """Build a :class:`FakeConnector`: ``fake_connector(["a", "b"])`` or ``fake_connector(3)``."""
    return FakeConnector


@pytest.fixture
def install_connector(
    smartconnector_engine: Engine,
) -> Callable[[Connector | FakeConnector | str | Path], Awaitable[dict[str, Any]]]:
    """Install a connector (directory, :class:`Connector` or fake) on the sandbox; its document."""

    async def install(target: Connector | FakeConnector | str | Path) -> dict[str, Any]:
        if isinstance(target, FakeConnector):
            target = target.connector()
        if not isinstance(target, Connector):
            target = load_connector(target)
        return await smartconnector_engine.install(target)

    return install
