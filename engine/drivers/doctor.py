"""``smartconnector doctor``: what a run needs, checked in a few seconds, changing nothing.

Each check gives its facts (the ``--json`` shape of SPEC §5a) and, when something is wrong,
one line that says what to do.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.client import ApiClient
from engine.drivers.config import Settings
from engine.errors import (
    ApiError,
    ApiUnavailable,
    AuthenticationFailed,
    NotFound,
    PermissionDenied,
    SmartConnectorError,
)
from engine.run.writer import CLAIM_WAIT
from engine.writes import WriteWay, probe


@dataclass
class Report:
    """Every check's facts, and the problems found, each with what to do."""

    api: dict[str, Any]
    extension: dict[str, Any] | None = None
    temporal: dict[str, Any] | None = None
    home: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    exit_code: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "api": self.api,
            "extension": self.extension,
            "temporal": self.temporal,
            "home": self.home,
        }

    def fail(self, problem: str, exit_code: int) -> None:
        self.problems.append(problem)
        if exit_code and (self.exit_code == 0 or exit_code == 3):
            self.exit_code = exit_code


def runs_for(way: WriteWay | None) -> str | None:
    """Whether one run per integration is ``guaranteed`` or ``advisory`` on ``way``."""
    if way is None:
        return None
    return "guaranteed" if way.exclusive else "advisory"


async def check_api(api: ApiClient, settings: Settings, report: Report) -> None:
    """Reachable, the token accepted, and the write way (probed on an integration the API
    holds, with a PATCH whose one ``test`` must fail: nothing changes)."""
    facts = report.api
    url = settings.api_url
    try:
        docs, _ = await api.page("integrations", None, limit="1")
    except (AuthenticationFailed, PermissionDenied) as exc:
        facts["reachable"] = True
        report.fail(
            f"the API at {url} refused the token ({exc.message}): set"
            " SMARTCONNECTOR_API_TOKEN (or --token-file) to a token with integration scopes",
            3,
        )
        return
    except NotFound:
        facts.update(reachable=True, authenticated=None)
        report.fail(
            f"the API at {url} has no /integrations: the URL must include the version path,"
            " e.g. http://127.0.0.1:8700/v1",
            5,
        )
        return
    except (ApiUnavailable, ApiError) as exc:
        report.fail(f"the API at {url} does not answer ({exc.message}): check --api-url", 5)
        return
    facts["reachable"] = facts["authenticated"] = True
    way = api.writes.way
    if docs:
        way = await probe(api, str(docs[0]["_id"]))
        api.writes.learn(way)  # remembered for runs
    facts["writes"] = way.value if way else "unknown"
    facts["exclusive_runs"] = runs_for(way)


async def check_extension(settings: Settings, report: Report) -> None:
    from installers.remote import ExtensionServer

    assert settings.extension_url is not None and settings.extension_token is not None
    report.extension = {"url": settings.extension_url, "healthy": False}
    try:
        async with ExtensionServer(settings.extension_url, settings.extension_token) as server:
            await server.check_health()
    except SmartConnectorError as exc:
        report.fail(
            f"the extension server does not answer GET /healthCheck ({exc.message}): start it,"
            " or fix --extension-url",
            5,
        )
        return
    report.extension["healthy"] = True


async def check_temporal(settings: Settings, report: Report) -> None:
    address = settings.temporal_address
    report.temporal = {"address": address, "reachable": False}
    try:
        from temporalio.client import Client

        await asyncio.wait_for(Client.connect(str(address)), timeout=5)
    except Exception as exc:
        report.fail(
            f"Temporal at {address} does not answer ({type(exc).__name__}): start it"
            " (`temporal server start-dev`), or fix --temporal-address",
            5,
        )
        return
    report.temporal["reachable"] = True


def check_home(home: Path, report: Report) -> None:
    """Writable (a file made and removed), and the journal readable if there is one."""
    report.home = {"path": str(home.resolve()), "writable": False, "journal": None}
    target = home if home.exists() else _existing_parent(home)
    try:
        with tempfile.NamedTemporaryFile(dir=target, prefix=".doctor-"):
            pass
        report.home["writable"] = True
    except OSError as exc:
        report.fail(
            f"home {home.resolve()} is not writable ({exc.strerror}): pass --home DIR (or set"
            " SMARTCONNECTOR_HOME) to a folder you can write",
            2,
        )
    journal = home / "journal.db"
    if journal.exists():
        report.home["journal"] = _journal_readable(journal)
        if not report.home["journal"]:
            report.fail(f"the journal {journal} cannot be read: move it aside and resume", 2)


def _existing_parent(path: Path) -> Path:
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return path


def _journal_readable(path: Path) -> bool:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            db.execute("select count(*) from sqlite_master").fetchone()
    except sqlite3.Error:
        return False
    return os.access(path, os.R_OK)


def embedded_way() -> WriteWay:
    """The embedded sandbox's way, from its profile (``SMARTCONNECTOR_SANDBOX_PROFILE``)."""
    from engine.drivers.config import embedded_profile
    from engine.writes import SANDBOX_PROFILE_WAYS, forced_way

    return forced_way() or SANDBOX_PROFILE_WAYS[embedded_profile()]


async def diagnose(settings: Settings) -> Report:
    """Every check that applies to ``settings``; the embedded sandbox is not opened (it
    would be made where there is none)."""
    rate = settings.rate_limit
    api: dict[str, Any] = {
        "url": settings.api_url,
        "reachable": False,
        "authenticated": False,
        "writes": None,
        "exclusive_runs": None,
        "rate": rate.rate,
    }
    report = Report(api)
    if settings.embedded:
        way = embedded_way()
        api.update(reachable=True, authenticated=True, writes=way.value)
        api["exclusive_runs"] = runs_for(way)
    else:
        from engine.drivers.config import open_client

        async with open_client(settings) as client:
            await check_api(client, settings, report)
    if settings.extension_url and settings.extension_token:
        await check_extension(settings, report)
    if settings.temporal_address:
        await check_temporal(settings, report)
    check_home(settings.home, report)
    return report


def describe(report: Report, settings: Settings) -> list[str]:
    """The report as lines a person reads: each part, then each problem and what to do."""
    api = report.api
    where = api["url"] or f"the embedded sandbox in {settings.home.resolve()}"
    lines = [f"API        {where}: " + _api_words(api)]
    if api["writes"]:
        lines.append(f"  writes   {api['writes']} — {_WAY_WORDS.get(api['writes'], '')}")
    if api["exclusive_runs"] == "guaranteed":
        lines.append("  runs     one per integration, guaranteed (compare-and-set on the document)")
    elif api["exclusive_runs"] == "advisory":
        lines.append(
            "  runs     one per integration, advisory: a run claims the integration in the"
            f" State API and reads its claim back {CLAIM_WAIT:g} s later; two runs started"
            " within that time on two machines are not excluded (--engine temporal excludes"
            " its own single runs of one integration always; a Temporal rollout's updates"
            " claim as here)"
        )
    burst = settings.rate_limit.burst
    lines.append(f"  rate     keeps under {api['rate']:g} requests/s (bucket {burst:g})")
    ext, temporal, home = report.extension, report.temporal, report.home
    lines.append(
        "extension  "
        + ("not configured" if ext is None else f"{ext['url']}: {_ok(ext['healthy'])}")
    )
    lines.append(
        "temporal   "
        + (
            "not configured"
            if temporal is None
            else f"{temporal['address']}: " + _ok(temporal["reachable"])
        )
    )
    journal = {None: "no journal yet", True: "journal readable", False: "journal unreadable"}
    lines.append(
        f"home       {home['path']}: {'writable' if home['writable'] else 'NOT writable'},"
        f" {journal[home['journal']]}"
    )
    lines += [f"problem: {p}" for p in report.problems]
    return lines


_WAY_WORDS = {
    "json-patch-test": "JSON Patch with test; the run's state kept in the document",
    "replace-only": "replace operations only; the run's state kept in the State API",
    "put-only": "no PATCH: whole-document PUT; the run's state kept in the State API",
    "unknown": "found on the first run (the API holds no integration to probe yet)",
}


def _api_words(api: dict[str, Any]) -> str:
    if not api["reachable"]:
        return "NOT reachable"
    if api["authenticated"] is None:
        return "answers, but serves no API at this path"
    return "reachable, token " + ("accepted" if api["authenticated"] else "REFUSED")


def _ok(flag: bool) -> str:
    return "answers" if flag else "does NOT answer"
