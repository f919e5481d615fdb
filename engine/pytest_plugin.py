"""pytest fixtures for testing connectors, registered through the ``pytest11`` entry point.

A connector test in a few lines, in any folder, with no conftest.py and no configuration::

    async def test_installs(install_connector, sandbox_api):
        doc = await install_connector("path/to/my_connector")
        assert doc["mode"] == "settings"
        assert await sandbox_api.list("connections")

    async def test_is_safe_to_resume(check_connector):
        report = await check_connector("path/to/my_connector")
        assert report["ok"], report

The fixtures are plain (synchronous) pytest fixtures whose objects work on any event loop,
and an ``async def`` test that uses one of them is run on a fresh event loop by this
plugin, unless another plugin (pytest-asyncio, anyio) already runs it. So a project that
chose its async mode keeps it, and one that chose none needs nothing.

Everything heavy is imported inside the fixtures: loading the plugin, which pytest does
in every environment where smartconnector is installed, costs next to nothing.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import httpx

    from engine.client import ApiClient
    from engine.drivers.runner import Engine
    from engine.policy import RetryPolicy
    from installers import Connector
    from installers.fakes import FakeConnector

#: The fixtures this plugin provides; an async test using any of them is run here.
FIXTURES = frozenset(
    {
        "sandbox_store",
        "sandbox_token",
        "sandbox_transport",
        "sandbox_api",
        "smartconnector_engine",
        "fake_connector",
        "install_connector",
        "write_connector",
        "check_connector",
    }
)


def fast_retry() -> RetryPolicy:
    """Retries that keep tests fast; the API under test is in-process."""
    from engine.policy import RetryPolicy

    return RetryPolicy(
        attempts=8, budget=10.0, wait_initial=0.001, wait_max=0.01, wait_jitter=0.001
    )


#: pytest-asyncio warns on every run where this is unset; its coming default is "function".
LOOP_SCOPE = "asyncio_default_fixture_loop_scope"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Where pytest-asyncio is installed and the project set no fixture loop scope, set the
    one it will default to, so a connector's tests run without its deprecation warning."""
    if not config.pluginmanager.hasplugin("asyncio"):
        return
    try:
        if config.getini(LOOP_SCOPE) is not None:
            return  # the project chose one
    except ValueError:  # pragma: no cover - a pytest-asyncio that has no such option
        return
    # pytest has no public setter for an ini value; its cache is what getini answers from
    config._inicache[LOOP_SCOPE] = "function"


@pytest.hookimpl
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an ``async def`` test that uses this plugin's fixtures, if nobody else does.

    pytest-asyncio and anyio handle the tests they are asked to before this hook (they
    replace the coroutine, or answer first); what reaches here unhandled would fail with
    "async def functions are not natively supported".
    """
    test = pyfuncitem.obj
    if not inspect.iscoroutinefunction(test) or not FIXTURES & set(pyfuncitem.fixturenames):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    with asyncio.Runner() as runner:
        runner.run(test(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True


@pytest.fixture
def sandbox_store(tmp_path: Path) -> Iterator[Any]:
    """The sandbox's SQLite store in a temporary file."""
    from sandbox import Store

    store = Store(tmp_path / "sandbox.db")
    yield store
    store.close()


@pytest.fixture
def sandbox_token(sandbox_store: Any) -> str:
    """An all-scopes token for the in-process sandbox."""
    return str(sandbox_store.create_token(["all.User"]))


@pytest.fixture
def sandbox_transport(sandbox_store: Any) -> httpx.AsyncBaseTransport:
    """httpx's transport to the in-process sandbox over ``sandbox_store``, serving the profile
    ``$SMARTCONNECTOR_SANDBOX_PROFILE`` names (``platform`` or ``put-only``: only what the
    platform's docs promise), else ``default``. Override it to wrap what ``sandbox_api``
    sends (to count the requests, or to lose some)."""
    from engine.client import in_process
    from engine.drivers.config import embedded_profile
    from sandbox import create_app

    return in_process(create_app(sandbox_store, profile=embedded_profile()))


@pytest.fixture
def sandbox_api(
    sandbox_transport: httpx.AsyncBaseTransport, sandbox_token: str
) -> Iterator[ApiClient]:
    """An :class:`~engine.ApiClient` on an in-process sandbox (``sandbox_transport``).

    It holds no connection, so it works on whichever event loop the test runs.
    """
    from engine.client import ApiClient
    from engine.drivers.config import embedded_profile
    from engine.writes import SANDBOX_PROFILE_WAYS, WriteWays

    url = "http://sandbox.test/v1"
    writes = WriteWays(url, forced=SANDBOX_PROFILE_WAYS[embedded_profile()])
    api = ApiClient(
        url, sandbox_token, transport=sandbox_transport, retry=fast_retry(), writes=writes
    )
    yield api
    asyncio.run(api.aclose())


@pytest.fixture
def smartconnector_engine(sandbox_api: ApiClient, tmp_path: Path) -> Engine:
    """An :class:`~engine.Engine` on the in-process sandbox, its journal in ``tmp_path``.

    ``await smartconnector_engine.resume(id)`` goes on after a step that waited for a person;
    ``uninstall(id)`` removes an integration. Both find the connector it installed.
    """
    from engine.drivers.runner import Engine
    from engine.run.journal import Journal

    return Engine(sandbox_api, Journal(tmp_path / "journal.db"))


@pytest.fixture
def fake_connector() -> Callable[..., FakeConnector]:
    """Build a :class:`~installers.fakes.FakeConnector`: ``fake_connector(["a", "b"])``."""
    from installers.fakes import FakeConnector

    return FakeConnector


@pytest.fixture
def install_connector(
    smartconnector_engine: Engine,
) -> Callable[[Connector | FakeConnector | str | Path], Awaitable[dict[str, Any]]]:
    """Install a connector (directory, :class:`Connector` or fake) on the sandbox; returns
    its document. A step that waits for a person raises :class:`~engine.WaitingForUser`,
    whose ``integration_id`` ``smartconnector_engine.resume`` takes."""
    from installers import Connector, load_connector
    from installers.fakes import FakeConnector

    async def install(target: Connector | FakeConnector | str | Path) -> dict[str, Any]:
        if isinstance(target, FakeConnector):
            target = target.connector()
        if not isinstance(target, Connector):
            target = load_connector(Path(target))
        return await smartconnector_engine.install(target)

    return install


@pytest.fixture
def check_connector() -> Callable[..., Awaitable[dict[str, Any]]]:
    """Crash-test a connector (directory, :class:`Connector` or fake) as ``smartconnector
    check`` does, on throwaway sandboxes: ``report = await check_connector(path)`` is the
    ``--json`` report as a dict, so ``assert report["ok"], report`` says what is wrong.
    ``input=`` answers the fields of steps that wait for a person."""
    from engine.check import check_connector as check
    from installers.fakes import FakeConnector

    async def run(
        target: Connector | FakeConnector | str | Path, *, input: dict[str, str] | None = None
    ) -> dict[str, Any]:
        if isinstance(target, FakeConnector):
            target = target.connector()
        return (await check(target, input=input)).to_json()

    return run


@pytest.fixture
def write_connector(tmp_path: Path) -> Callable[..., Path]:
    """Write a connector folder: ``write_connector(manifest, functions_source)`` → its path.

    ``manifest`` is ``connector.json`` as a dict; ``functions_source`` (optional) is the
    text of its ``functions.py``. ``name`` picks the folder's name under ``tmp_path``.
    """

    def write(
        manifest: dict[str, Any], functions: str | None = None, name: str = "connector"
    ) -> Path:
        return write_connector_folder(tmp_path / name, manifest, functions)

    return write


def write_connector_folder(
    directory: Path, manifest: dict[str, Any], functions: str | None = None
) -> Path:
    """The folder behind :func:`write_connector`, for code that has no fixtures."""
    directory.mkdir(parents=True, exist_ok=True)
    if functions is not None:
        (directory / "functions.py").write_text(functions)
    (directory / "connector.json").write_text(json.dumps(manifest, indent=2))
    return directory
