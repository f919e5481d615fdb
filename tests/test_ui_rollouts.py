"""The install page's /rollouts: its guards over HTTP, and an operator in Chromium pausing,
resuming and aborting a rollout that another process runs, the page following it live.
``SMARTCONNECTOR_SCREENSHOTS=docs`` also writes docs/rollouts.png (and -390) for the README."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from .conftest import CLI, ROOT, free_port
from .test_rollouts import Fleet, make_fleet, stop
from .test_ui_browser import CHROMIUM, browser_type_launch_args, shows_something

__all__ = ["browser_type_launch_args"]  # the fixture, for the browser test here


@dataclass
class Page:
    """`smartconnector ui` against the fleet's API, with a paused rollout going on."""

    fleet: Fleet
    url: str
    base: str
    rollout: subprocess.Popen[str]

    def card(self) -> str:
        return f'article[data-rollout="{self.fleet.rollout_id}"]'


def serve_ui(fleet: Fleet, tmp_path: Path) -> tuple[subprocess.Popen[str], str, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCONNECTOR_")}
    env.update(fleet.env, SMARTCONNECTOR_HOME=str(fleet.home), SMARTCONNECTOR_LOG_FORMAT="json")
    process = subprocess.Popen(
        [*CLI, "ui", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "ui.log").open("w"),
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
    return process, url, base


@pytest.fixture
def held(tmp_path: Path) -> Iterator[Page]:
    """8 integrations, `rollout --phase 25 --pause --concurrency 1` (updates of 1 s) held
    after phase 1, and the page."""
    with make_fleet(tmp_path, 8, 1.0) as fleet:
        rollout = fleet.start("--phase", "25", "--pause", "--concurrency", "1")
        ui, url, base = serve_ui(fleet, tmp_path)
        try:
            fleet.wait_for(lambda r: r["state"] == "paused")
            yield Page(fleet, url, base, rollout)
        finally:
            stop(rollout)
            ui.terminate()
            ui.wait(10)


def test_rollout_actions_need_the_session_and_the_csrf_token(held: Page) -> None:
    """/rollouts without the session token is 401; a Resume without the CSRF token is 403
    and changes nothing; with it the rollout goes on, and the page lists it with its
    phases and counts."""
    assert httpx.get(held.base + "/rollouts").status_code == 401
    action = f"/rollouts/{held.fleet.rollout_id}/resume"
    with httpx.Client(base_url=held.base) as client:
        page = client.get(held.url.replace("/?", "/rollouts?"))
        assert page.status_code == 200
        assert f'data-rollout="{held.fleet.rollout_id}" data-state="paused"' in page.text
        assert page.text.count('<li data-phase="') == 4
        assert client.post(action).status_code == 403
        time.sleep(1)
        assert (held.fleet.record() or {})["state"] == "paused"
        assert (held.fleet.record() or {})["control"] == "pause"
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf is not None
        sent = client.post(action, data={"csrf_token": csrf.group(1)})
        assert sent.status_code == 303
    assert (held.fleet.record() or {})["control"] == "run"
    assert held.fleet.status()["state"] in ("running", "paused")


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed")
def test_an_operator_pauses_resumes_and_aborts_a_rollout_from_the_page(
    held: Page, page: Any, tmp_path: Path
) -> None:
    """From /rollouts: Resume goes on to the next hold, which the page shows without a
    reload; Pause mid-phase holds it there; Abort ends the rollout command (exit 1)."""
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(held.url)
    page.get_by_role("link", name="Rollouts").click()
    card = page.locator(held.card())
    expect(card).to_have_attribute("data-state", "paused")
    expect(card.get_by_role("list", name="Phases").locator("li")).to_have_count(4)
    card.get_by_role("button", name="Resume").click()
    page.wait_for_load_state()
    page.evaluate("window.stillThisPage = true")  # gone if the page reloads
    expect(card.locator('li[data-phase="2"] progress')).to_have_attribute(
        "value", "2", timeout=20_000
    )
    expect(card).to_have_attribute("data-state", "paused", timeout=20_000)
    assert held.fleet.status()["updated"] == 4
    assert page.evaluate("window.stillThisPage") is True

    card.get_by_role("button", name="Resume").click()
    card.get_by_role("button", name="Pause").click()
    expect(card).to_have_attribute("data-state", "paused", timeout=20_000)
    expect(card.locator('li[data-phase="3"]')).to_have_attribute("aria-current", "step")
    status = held.fleet.agrees_with_the_api()
    assert status["state"] == "paused" and 4 <= status["updated"] < 6
    shoot(page, tmp_path)

    card.get_by_role("button", name="Abort").click()
    expect(card).to_have_attribute("data-state", "aborted", timeout=20_000)
    assert held.rollout.wait(30) == 1
    assert "aborted" in (held.rollout.stderr.read() if held.rollout.stderr else "")


def shoot(page: Any, tmp_path: Path) -> None:
    """Screenshots of the page at 1280 and 390 pixels wide: something on each, and nothing
    scrolling sideways on the phone."""
    out = ROOT / "docs" if os.environ.get("SMARTCONNECTOR_SCREENSHOTS") == "docs" else tmp_path
    for size, suffix in (
        ({"width": 1280, "height": 900}, ""),
        ({"width": 390, "height": 844}, "-390"),
    ):
        page.set_viewport_size(size)
        page.evaluate("document.activeElement && document.activeElement.blur()")
        png = page.screenshot(full_page=True)
        assert shows_something(png)
        (out / f"rollouts{suffix}.png").write_bytes(png)
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= size["width"], f"scrolls sideways at {size['width']} px"
    page.set_viewport_size({"width": 1280, "height": 900})
