"""The install page: its guards (the real command on a loopback port) and its markup (the app
in-process, on the plugin's sandbox). tests/test_ui_browser.py drives it in Chromium."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.drivers.runner import Engine
from engine.pytest_plugin import write_connector_folder
from engine.ui import UiConfig, create_ui_app
from engine.ui._words import when
from installers import Connector, load_connector

from .conftest import CLI, EXAMPLE, ROOT, free_port

SLOW = """
import time
from installers import Registry
registry = Registry("slow")

@registry.function("slow")
def slow(ctx):
    time.sleep(2)

@registry.function("noop")
def noop(ctx):
    return None
"""


@dataclass
class Ui:
    """`smartconnector ui` on a loopback port."""

    url: str
    base: str
    home: Path
    process: subprocess.Popen[str]


def start_ui(tmp_path: Path, *connectors: Path) -> Ui:
    port = free_port()
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMARTCONNECTOR_", "NETSUITE"))}
    env.update(SMARTCONNECTOR_HOME=str(home), SMARTCONNECTOR_LOG_FORMAT="json")
    args = [arg for c in connectors for arg in ("--connector", str(c))]
    process = subprocess.Popen(
        [*CLI, "ui", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "err.log").open("w"),
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(base, timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    return Ui(url, base, home, process)


def asking_example(work: Path) -> Path:
    """A copy of the example connector in ``work`` that asks for its NetSuite credentials."""
    shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = json.loads((work / "connector.json").read_text())
    manifest["settings"]["askForCredentials"] = True
    (work / "connector.json").write_text(json.dumps(manifest))
    return work


def serving_example_and_slow(tmp_path: Path) -> Iterator[Ui]:
    """`smartconnector ui` offering the example (asking for its credentials) and a connector
    whose one step takes two seconds; stopped when the caller is done."""
    slow = write_connector_folder(
        tmp_path / "slow",
        {
            "name": "Slow",
            "_connectorId": "slow",
            "version": "1.0.0",
            "install": [
                {"name": "Wait", "installerFunction": "slow", "uninstallerFunction": "noop"}
            ],
        },
        SLOW,
    )
    server = start_ui(tmp_path, asking_example(tmp_path / "example"), slow)
    yield server
    server.process.terminate()
    server.process.wait(10)


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[Ui]:
    """The page offering the example and a slow connector."""
    yield from serving_example_and_slow(tmp_path)


def test_every_page_needs_the_token_the_right_host_and_a_csrf_token(ui: Ui) -> None:
    """No token or cookie: 401. Another Host: 421. A POST without the CSRF token: 403, and
    nothing is installed."""
    assert httpx.get(ui.base + "/").status_code == 401
    assert httpx.get(ui.url, headers={"Host": "evil.example:80"}).status_code == 421
    with httpx.Client(base_url=ui.base, follow_redirects=True) as client:
        assert client.get(ui.url).status_code == 200  # the cookie is set
        refused = client.post("/install", data={"connector": "slow"})
        assert refused.status_code == 403
        assert "No integrations yet" in client.get("/").text  # the cookie alone serves
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text)
        assert csrf is not None
        sent = client.post(
            "/install", data={"connector": "nope"}, headers={"X-CSRF-Token": csrf.group(1)}
        )
        assert sent.status_code == 404  # past the CSRF check: the header is enough
    assert httpx.get(ui.url.replace("127.0.0.1", "localhost")).status_code == 200


# -- the page's markup, over HTTP (the app in-process, on the plugin's sandbox) -----------

STEP_NAMES = ("One", "Two", "Three", "Four")


def integration(mode: str = "install", done: int = 0, **fields: Any) -> dict[str, Any]:
    """An integration of four steps, the first ``done`` of them completed."""
    steps = [
        {
            "name": name,
            "description": f"Set up {name.lower()}",
            "completed": i < done,
            "installerFunction": "install",
            "uninstallerFunction": "uninstall",
        }
        for i, name in enumerate(STEP_NAMES)
    ]
    doc = {"name": "Shop", "_connectorId": "shop", "version": "1.0.0", "mode": mode}
    return {**doc, "install": steps, "settings": {"schedule": "daily"}, **fields}


@asynccontextmanager
async def served(engine: Engine, *connectors: Connector) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the install page served over ``engine``, signed in, sending the CSRF
    token with every request."""

    async def open_engine() -> tuple[Engine, Callable[[], Awaitable[None]]]:
        async def leave_open() -> None:
            return None

        return engine, leave_open

    config = UiConfig("127.0.0.1", 8702, list(connectors), open_engine)
    transport = httpx.ASGITransport(app=create_ui_app(config))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://127.0.0.1:8702", follow_redirects=True
    ) as client:
        assert (await client.get(f"/?token={config.session}")).status_code == 200
        client.headers["X-CSRF-Token"] = config.csrf
        yield client


def state_words(html: str) -> str:
    found = re.search(r'id="state"[^>]*><span class="pill">([^<]*)</span>', html)
    assert found, "the page shows no state"
    return found.group(1)


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        (integration("install", done=1), "Installing — step 2 of 4"),
        (
            integration("install", smartconnector={"waiting": {"step": "Two", "message": "Go"}}),
            "Waiting for you",
        ),
        (integration("settings", done=4), "Installed"),
        (
            integration(
                "settings",
                done=4,
                updateInProgress=True,
                smartconnector={"update": {"to": "1.2.0"}},
            ),
            "Updating to 1.2.0",
        ),
        (integration("uninstall", done=3), "Uninstalling"),
        (
            integration("install", done=2, smartconnector={"error": {"step": "Three"}}),
            "Failed at step 3",
        ),
    ],
)
async def test_the_header_says_the_state_in_words(
    doc: dict[str, Any], words: str, sandbox_api: Any, smartconnector_engine: Engine
) -> None:
    """The integration's page and its row in the install base say its state in words."""
    made = await sandbox_api.create("integrations", doc)
    async with served(smartconnector_engine) as client:
        assert state_words((await client.get(f"/integrations/{made['_id']}")).text) == words
        assert f'<span class="pill">{words}</span>' in (await client.get("/")).text


@pytest.mark.parametrize("message", ["Set up two", "Paste the key from the admin console"])
async def test_a_waiting_step_shows_its_message_once(
    message: str, sandbox_api: Any, smartconnector_engine: Engine
) -> None:
    """A waiting step's message shows once, and not at all when it repeats the description."""
    waiting = {"waiting": {"step": "Two", "message": message}}
    made = await sandbox_api.create("integrations", integration(done=1, smartconnector=waiting))
    async with served(smartconnector_engine) as client:
        html = (await client.get(f"/integrations/{made['_id']}")).text
    assert html.count(message) == 1
    assert html.count("Set up two") == 1


async def test_a_waiting_steps_url_is_a_button_that_opens_a_new_tab(
    sandbox_api: Any, smartconnector_engine: Engine
) -> None:
    """A waiting step's URL is a button-styled link to a new tab (noopener), the URL beside it."""
    url = "https://system.netsuite.com/app/bundler/bundledetails.nl?id=20038&whence=installer"
    waiting = {"waiting": {"step": "Two", "message": "Install the bundle", "url": url}}
    made = await sandbox_api.create("integrations", integration(done=1, smartconnector=waiting))
    async with served(smartconnector_engine) as client:
        html = (await client.get(f"/integrations/{made['_id']}")).text
    link = re.search(r'<a class="button[^"]*" href="([^"]+)" target="_blank" rel="([^"]+)">', html)
    assert link and link.group(1) == url.replace("&", "&amp;")
    assert "noopener" in link.group(2).split()
    assert f'<p class="url">{url.replace("&", "&amp;")}</p>' in html


async def test_a_finished_install_is_confirmed(smartconnector_engine: Engine) -> None:
    """After an install the page started finishes, the page says so in a status banner."""
    example = load_connector(EXAMPLE)
    async with served(smartconnector_engine, example) as client:
        started = await client.post("/install", data={"connector": example.manifest.connector_id})
        page = started.url.path
        for _ in range(200):
            html = (await client.get(page)).text
            if 'data-mode="settings"' in html and 'role="status"' in html:
                break
            await asyncio.sleep(0.02)
    banner = re.search(r'<p class="banner" role="status">(.*?)</p>', html)
    assert banner and re.sub("<[^>]+>", "", banner.group(1)).startswith("Installed — 4 steps done")


async def test_the_uninstall_confirmation_lists_what_it_undoes_last_first(
    sandbox_api: Any, smartconnector_engine: Engine
) -> None:
    """Uninstall first lists the done steps it undoes, last first, with a destructive button."""
    made = await sandbox_api.create("integrations", integration("install", done=3))
    async with served(smartconnector_engine) as client:
        html = (await client.post(f"/integrations/{made['_id']}/uninstall")).text
    undo = re.search(r'<ol class="undo" aria-label="Steps to undo">(.*?)</ol>', html)
    assert undo and re.findall(r"<span>([^<]+)</span>", undo.group(1)) == ["Three", "Two", "One"]
    assert re.search(r'<button type="submit" class="danger">Uninstall</button>', html)
    assert (await sandbox_api.get("integrations", made["_id"]))["mode"] == "install"


async def test_the_install_base_shows_short_ids_last_changes_and_a_filter_box(
    sandbox_api: Any, smartconnector_engine: Engine
) -> None:
    """Install base rows show a short id, the last change in words, newest first, and a filter."""
    older = await sandbox_api.create("integrations", integration(name="Older"))
    await asyncio.sleep(0.01)
    newer = await sandbox_api.create("integrations", integration(name="Newer"))
    async with served(smartconnector_engine) as client:
        html = (await client.get("/")).text
    assert '<label for="filter">Filter integrations</label>' in html
    assert '<input id="filter" type="search"' in html
    assert html.index(">Newer<") < html.index(">Older<")
    for doc in (older, newer):
        full = doc["_id"]
        assert f'<code class="id" title="{full}">{full[-8:]}</code>' in html
        assert f'<time datetime="{doc["lastModified"]}"' in html
    assert re.findall(r"<time [^>]+>([^<]+)</time>", html) == ["just now", "just now"]


def test_last_changes_read_as_a_person_says_them() -> None:
    """A last change reads as how long ago it was, or as a date once it is a week old."""
    now = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
    assert when("2025-03-10T11:59:30.000Z", now) == ("just now", "2025-03-10 11:59 UTC")
    assert when("2025-03-10T11:57:00.000Z", now) == ("3 min ago", "2025-03-10 11:57 UTC")
    assert when("2025-03-10T07:00:00.000Z", now) == ("5 h ago", "2025-03-10 07:00 UTC")
    assert when("2025-03-09T10:00:00.000Z", now) == ("yesterday", "2025-03-09 10:00 UTC")
    assert when("2024-12-04T14:38:00.000Z", now) == ("4 Dec 2024", "2024-12-04 14:38 UTC")
    assert when("not a time", now) is None


async def test_settings_are_a_labelled_form_not_raw_json_on_the_page(
    sandbox_api: Any, smartconnector_engine: Engine
) -> None:
    """Settings are a labelled textarea in a form that saves them, not JSON dumped in the page."""
    made = await sandbox_api.create("integrations", integration("settings", done=4))
    async with served(smartconnector_engine) as client:
        html = (await client.get(f"/integrations/{made['_id']}")).text
    form = re.search(r'<form method="post" action="[^"]+/settings">(.*?)</form>', html, re.S)
    assert form and '<label for="settings">Settings (JSON)</label>' in form.group(1)
    assert '<textarea id="settings" name="settings"' in form.group(1)
    assert "<pre" not in html
    assert html.count("&quot;schedule&quot;") == 1


async def test_the_example_ships_the_images_of_its_steps(smartconnector_engine: Engine) -> None:
    """Each step of the example has its own SVG image, served from its folder: no placeholder."""
    example = load_connector(EXAMPLE)
    doc = await smartconnector_engine.install(example)
    async with served(smartconnector_engine, example) as client:
        html = (await client.get(f"/integrations/{doc['_id']}")).text
        sources = re.findall(r'<img src="([^"]+)" alt="([^"]+)"', html)
        assert [alt for _, alt in sources] == [s["name"] for s in doc["install"]]
        assert "placeholder" not in html
        for source, _ in sources:
            image = await client.get(source)
            assert image.headers["content-type"] == "image/svg+xml"
            assert image.text.lstrip().startswith("<svg")
