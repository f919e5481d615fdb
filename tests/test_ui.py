"""The install page in a real browser (Debian's Chromium, driven by Playwright), and its guards."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.pytest_plugin import write_connector_folder

from .conftest import CLI, EXAMPLE, ROOT, free_port
from .test_input import SECRET, everything_written

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Chromium is not installed (.ci/run installs it)"
)

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


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The example connector, asking for its NetSuite credentials."""
    work = tmp_path / "example"
    shutil.copytree(EXAMPLE, work)
    manifest = json.loads((work / "connector.json").read_text())
    manifest["settings"]["askForCredentials"] = True
    (work / "connector.json").write_text(json.dumps(manifest))
    return work


@pytest.fixture
def ui(tmp_path: Path, example: Path) -> Iterator[Ui]:
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
    server = start_ui(tmp_path, example, slow)
    yield server
    server.process.terminate()
    server.process.wait(10)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Debian's Chromium, headless, with nothing reaching out to the network."""
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


def shows_something(png: bytes) -> bool:
    """A screenshot of a page with content, not a blank one (a blank PNG compresses to a few
    hundred bytes)."""
    return png.startswith(b"\x89PNG") and len(png) > 8_000


def test_a_person_installs_the_example_from_the_page_and_uninstalls_it(
    ui: Ui, page: Any, tmp_path: Path
) -> None:
    """Install, answer the NetSuite step's questions in the form, watch the steps finish
    without a reload, save settings, then uninstall after a confirmation; the secret shows
    nowhere, and the page shows something at 1280 and at 390 pixels wide."""
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(ui.url)
    page.get_by_role("button", name="Install").first.click()
    steps = page.get_by_role("list", name="Install steps")
    first = steps.locator("li").first
    first.wait_for()
    assert first.get_attribute("data-step") == "NetSuite Connection"
    page.wait_for_selector('li[data-step="NetSuite Connection"][data-status="waiting"]')
    assert page.get_by_role("heading", level=1).inner_text() == "BigCommerce - NetSuite Connector"
    assert page.locator("body").get_attribute("data-mode") == "install"
    assert page.get_by_alt_text("NetSuite Connection").count() == 1
    account = page.get_by_label("NetSuite account ID")
    token = page.get_by_label("Token")
    assert account.get_attribute("type") == "text" and token.get_attribute("type") == "password"
    account.fill("TSTDRV000000")
    token.fill(SECRET)
    (tmp_path / "waiting-1280.png").write_bytes(page.screenshot(full_page=True))
    page.set_viewport_size({"width": 390, "height": 844})
    narrow = page.screenshot(full_page=True)
    (tmp_path / "waiting-390.png").write_bytes(narrow)
    assert shows_something(narrow)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.get_by_role("button", name="Verify").click()

    page.evaluate("window.stillThisPage = true")  # gone if the page reloads
    page.wait_for_selector('body[data-mode="settings"]', timeout=20_000)
    statuses = steps.locator("li").evaluate_all("items => items.map(i => i.dataset.status)")
    assert statuses == ["done"] * 4
    assert page.evaluate("window.stillThisPage") is True
    done = page.screenshot(full_page=True)
    (tmp_path / "done-1280.png").write_bytes(done)
    assert shows_something(done)
    assert SECRET not in page.content()

    settings = page.get_by_label("Settings (JSON)")
    saved = {**json.loads(settings.input_value()), "schedule": "hourly"}
    settings.fill(json.dumps(saved))
    page.get_by_role("button", name="Save settings").click()
    assert json.loads(page.get_by_label("Settings (JSON)").input_value())["schedule"] == "hourly"

    page.get_by_role("button", name="Uninstall").click()
    page.get_by_role("button", name="Uninstall").click()  # the confirmation
    page.wait_for_url(ui.base + "/", timeout=20_000)
    assert page.get_by_role("table", name="Integrations").count() == 0
    assert SECRET not in everything_written(ui.home)


def test_an_action_while_a_run_holds_the_integration_is_refused(ui: Ui, page: Any) -> None:
    """While an install runs, Uninstall answers 409 with the engine's message in an alert,
    and changes nothing."""
    page.goto(ui.url)
    page.locator("li", has_text="Slow").get_by_role("button", name="Install").click()
    page.wait_for_selector('li[data-step="Wait"][data-status="running"]')
    page.get_by_role("button", name="Uninstall").click()
    with page.expect_response(lambda r: r.request.method == "POST") as answered:
        page.get_by_role("button", name="Uninstall").click()
    assert answered.value.status == 409
    assert "being run" in page.get_by_role("alert").inner_text()
    page.wait_for_selector('li[data-step="Wait"][data-status="done"]', timeout=20_000)


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
