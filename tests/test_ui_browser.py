"""The install page in a real browser: Debian's Chromium, driven by Playwright.

A person's install from start to finish, the page following runs live, and how it reads:
nothing scrolls sideways on a phone, headers keep their words whole, the filter box filters.
``SMARTCONNECTOR_SCREENSHOTS=docs`` also writes the screenshots in docs/ that the README shows.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from engine.pytest_plugin import write_connector_folder

from .conftest import EXAMPLE, ROOT
from .test_input import SECRET, everything_written
from .test_ui import Ui, asking_example, serving_example_and_slow, start_ui

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Chromium is not installed (.ci/run installs it)"
)
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[Ui]:
    """The page offering the example and a slow connector."""
    yield from serving_example_and_slow(tmp_path)


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


# -- how the page reads, on a few integrations made once -------------------------------------

BUNDLE_URL = (
    "https://system.netsuite.com/app/bundler/bundledetails.nl?sourcecompanyid=TSTDRV1234567"
    "&domain=PRODUCTION&config=F&id=20038&whence=installer"
)
TWO_CONNECTORS = f"""
from installers import Registry, UserActionRequired
registry = Registry("page-fleet")

@registry.function("ok")
def ok(ctx):
    return None

@registry.function("bundle")
def bundle(ctx):
    raise UserActionRequired("Install the Integrator bundle in NetSuite, then press Verify",
                             url={BUNDLE_URL!r})

@registry.function("refused")
def refused(ctx):
    raise RuntimeError("NetSuite refused the saved search "
                       "customsearch_shopify_orders_awaiting_fulfillment_and_invoicing: "
                       "INSUFFICIENT_PERMISSION")
"""


def connector_of(name: str, connector_id: str, *steps: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "_connectorId": connector_id,
        "version": "2.3.0",
        "install": [
            {"name": n, "description": d, "installerFunction": f, "uninstallerFunction": "ok"}
            for n, d, f in steps
        ],
    }


SALESFORCE = connector_of(
    "Salesforce - NetSuite Connector",
    "salesforce-netsuite",
    ("Salesforce Connection", "Connect your Salesforce org", "ok"),
    ("Integrator Bundle", "Install Integrator Bundle in NetSuite", "bundle"),
)
SHOPIFY = connector_of(
    "Shopify - NetSuite Connector",
    "shopify-netsuite",
    ("Shopify Connection", "Connect your Shopify store", "ok"),
    ("NetSuite Connection", "Configure NetSuite account credentials", "ok"),
    ("Order Flow", "Import Shopify orders into NetSuite", "refused"),
    ("Inventory Flow", "Send NetSuite inventory levels to Shopify", "ok"),
)


@dataclass
class Fleet:
    """A page serving four integrations: the example installed, a step failed at step 3,
    and two waiting (the example for its credentials, one for a bundle at a long URL)."""

    ui: Ui
    pages: dict[str, str]

    def open(self, page: Any, name: str) -> None:
        page.goto(self.ui.url)  # each test's browser context signs in afresh
        page.goto(self.ui.base + self.pages[name])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """The integrations the page's looks are checked on, made once through the page."""
    tmp = tmp_path_factory.mktemp("fleet")
    connectors = [
        asking_example(tmp / "example"),
        write_connector_folder(tmp / "salesforce", SALESFORCE, TWO_CONNECTORS),
        write_connector_folder(tmp / "shopify", SHOPIFY, TWO_CONNECTORS),
    ]
    server = start_ui(tmp, *connectors)
    try:
        with httpx.Client(base_url=server.base, follow_redirects=True) as client:
            pages = make_fleet(client, server.url)
        yield Fleet(server, pages)
    finally:
        server.process.terminate()
        server.process.wait(10)


def make_fleet(client: httpx.Client, url: str) -> dict[str, str]:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).text)
    assert found
    csrf = found.group(1)
    example_id = json.loads((EXAMPLE / "connector.json").read_text())["_connectorId"]

    def install(connector_id: str, until: str) -> str:
        path = client.post(
            "/install", data={"connector": connector_id, "csrf_token": csrf}
        ).url.path
        wait_for(client, path, until)
        return path

    installed = install(example_id, 'data-status="waiting"')
    answers = {"account": "TSTDRV000000", "token": "t0ken", "csrf_token": csrf}
    client.post(f"{installed}/verify", data=answers)
    wait_for(client, installed, 'data-mode="settings"')
    return {
        "installed": installed,
        "failed": install("shopify-netsuite", 'data-status="failed"'),
        "bundle": install("salesforce-netsuite", 'data-status="waiting"'),
        "waiting": install(example_id, 'data-status="waiting"'),
    }


def wait_for(client: httpx.Client, path: str, marker: str) -> None:
    deadline = time.monotonic() + 20
    while marker not in client.get(path).text:
        assert time.monotonic() < deadline, f"{path} never showed {marker}"
        time.sleep(0.05)


def test_no_page_scrolls_sideways_on_a_phone(fleet: Fleet, page: Any) -> None:
    """At 390 px no page (base, long URL, long error, installed) is wider than the window."""
    page.set_viewport_size(PHONE)
    for name in ("bundle", "failed", "waiting", "installed"):
        fleet.open(page, name)
        widths = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], (name, widths)
    page.goto(fleet.ui.base + "/")
    assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
    fleet.open(page, "bundle")
    assert page.locator(".url").inner_text() == BUNDLE_URL  # the long URL is there, wrapped
    fleet.open(page, "failed")
    assert "customsearch_shopify_orders" in page.locator(".error").inner_text()


BROKEN_WORDS = """(selector) => {
  const broken = [];
  for (const element of document.querySelectorAll(selector)) {
    const texts = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
    for (let node = texts.nextNode(); node; node = texts.nextNode()) {
      for (const word of node.data.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(node, word.index);
        range.setEnd(node, word.index + word[0].length);
        const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
        if (lines.size > 1) broken.push(word[0]);
      }
    }
  }
  return broken;
}"""


@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["390px", "1280px"])
def test_headers_keep_their_words_whole(fleet: Fleet, page: Any, size: dict[str, int]) -> None:
    """No word of a heading, table header, label or state breaks across two lines."""
    page.set_viewport_size(size)
    for name in ("waiting", "installed", "failed"):
        fleet.open(page, name)
        assert page.evaluate(BROKEN_WORDS, "h1, h2, label, .step-name, .pill, .status") == []
    page.goto(fleet.ui.base + "/")
    assert page.evaluate(BROKEN_WORDS, "h1, h2, th, label, .name, .pill") == []
    styles = page.locator("td").evaluate_all(
        "cells => cells.map(c => getComputedStyle(c, '::before'))"
        ".map(s => s.wordBreak + ' ' + s.overflowWrap)"
    )
    assert set(styles) == {"normal normal"}


def test_the_filter_box_keeps_the_rows_that_match(fleet: Fleet, page: Any) -> None:
    """The labelled filter box keeps the rows that match, counts them, and says when none do."""
    page.goto(fleet.ui.url)
    shown = page.locator("#integrations tbody tr:visible")
    box = page.get_by_label("Filter integrations")
    assert shown.count() == 4
    failed_id = fleet.pages["failed"].rsplit("/", 1)[1]
    box.fill(failed_id[-8:])
    assert shown.count() == 1 and "Shopify" in shown.inner_text()
    box.fill("waiting")
    assert shown.count() == 2
    assert page.locator("#shown").inner_text() == "2 of 4 integrations"
    box.fill("magento")
    assert shown.count() == 0
    assert page.get_by_text("No integration matches the filter.").is_visible()
    box.fill("")
    assert shown.count() == 4


def test_the_state_and_the_confirmation_follow_a_run_live(ui: Ui, page: Any) -> None:
    """The header follows a run step by step, then says Installed and confirms it, no reload."""
    page.goto(ui.url)
    page.locator("li", has_text="Slow").get_by_role("button", name="Install").click()
    state = page.locator("#state .pill")
    expect(state).to_have_text("Installing — step 1 of 1")
    page.evaluate("window.stillThisPage = true")
    expect(state).to_have_text("Installed", timeout=20_000)
    expect(page.get_by_role("status")).to_contain_text("Installed — 1 step done")
    assert page.evaluate("window.stillThisPage") is True


def test_a_waiting_steps_button_opens_its_url_in_a_new_tab(
    fleet: Fleet, page: Any, context: Any
) -> None:
    """The waiting step's Open button opens its URL in a new tab; the page stays."""
    context.route(
        "https://system.netsuite.com/**",
        lambda route: route.fulfill(body="<h1>Bundle</h1>", content_type="text/html"),
    )
    fleet.open(page, "bundle")
    with context.expect_page() as opened:
        page.get_by_role("link", name="Open system.netsuite.com").click()
    assert opened.value.url == BUNDLE_URL
    assert page.url == fleet.ui.base + fleet.pages["bundle"]


def test_the_uninstall_confirmation_lists_the_steps_in_red(fleet: Fleet, page: Any) -> None:
    """Uninstall's confirmation lists the steps last first, in red; Keep it changes nothing."""
    fleet.open(page, "installed")
    page.get_by_role("button", name="Uninstall").click()
    undone = page.get_by_role("list", name="Steps to undo").locator("li")
    assert undone.all_inner_texts() == [
        "BigCommerce Bundle",
        "Integrator Bundle",
        "BigCommerce Connection",
        "NetSuite Connection",
    ]
    confirm = page.get_by_role("button", name="Uninstall")
    assert confirm.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(198, 47, 42)"
    page.get_by_role("link", name="Keep it").click()
    expect(page.locator("#state .pill")).to_have_text("Installed")


def test_screenshots_of_the_finished_page(fleet: Fleet, page: Any, tmp_path: Path) -> None:
    """Screenshots at 1280 and 390 px show every image loaded and none a placeholder."""
    out = ROOT / "docs" if os.environ.get("SMARTCONNECTOR_SCREENSHOTS") == "docs" else tmp_path
    shots = {"install-base": None, "install-page": "waiting", "installed": "installed"}
    for size, suffix in ((DESKTOP, ""), (PHONE, "-390")):
        page.set_viewport_size(size)
        for shot, name in shots.items():
            if name is None:
                page.goto(fleet.ui.url)
            else:
                fleet.open(page, name)
            if name == "waiting":
                page.get_by_label("NetSuite account ID").fill("TSTDRV000000")
                page.evaluate("document.activeElement.blur()")
            images = page.locator("img").evaluate_all(
                "images => images.map(i => [i.currentSrc, i.naturalWidth])"
            )
            assert all(width > 0 and "placeholder" not in src for src, width in images)
            png = page.screenshot(full_page=True)
            assert shows_something(png)
            (out / f"{shot}{suffix}.png").write_bytes(png)
