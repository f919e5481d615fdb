"""``smartconnector doctor``: what a run needs, checked (SPEC §5a)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING

import typer

from engine.cli._app import app, fail, guard
from engine.cli._options import API, EXTENSION, RATE, TEMPORAL, JsonOut, common_options

if TYPE_CHECKING:
    from engine.drivers.config import Settings

#: Seconds doctor keeps retrying an API that does not answer: it answers in a few seconds.
DOCTOR_RETRY_BUDGET = 3.0


@app.command(
    epilog=(
        "Examples:  smartconnector doctor   ·   SMARTCONNECTOR_API_URL=https://api.example/v1"
        " smartconnector doctor --json"
    ),
)
@common_options(API, RATE, EXTENSION, TEMPORAL)
def doctor(settings: Settings, as_json: JsonOut = False) -> None:
    """Check what a run needs, changing nothing.

    The API (reachable, the token accepted, how it takes writes, whether one run per
    integration is guaranteed, the rate kept to), the extension server and Temporal when
    set, and the home.

    The write way is found with a PATCH whose one `test` must fail on an integration the
    API holds, so nothing changes: json-patch-test (the sandbox), replace-only (the platform
    as documented) or put-only (no PATCH). Exit 0 when every configured part answers, 3 when
    the token is refused, 5 when the API or a configured server does not answer.
    """
    import asyncio

    from engine.drivers.doctor import describe, diagnose
    from engine.policy import RetryPolicy

    settings = replace(settings, retry=RetryPolicy(budget=DOCTOR_RETRY_BUDGET))
    report = guard(lambda: asyncio.run(diagnose(settings)))
    if as_json:
        typer.echo(json.dumps(report.to_json()))
    else:
        for line in describe(report, settings):
            typer.echo(line)
    if report.exit_code:
        if not as_json:
            fail(f"{len(report.problems)} problem(s) found; see above", report.exit_code)
        raise typer.Exit(report.exit_code)
