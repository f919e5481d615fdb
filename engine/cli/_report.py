"""What a command prints when a run ends or stops: the id or status, what stopped it, where,
and the one piece of advice that is true now."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import typer

from engine.cli._app import with_engine

if TYPE_CHECKING:
    from engine.drivers.config import Settings
    from engine.drivers.runner import Engine


def print_status(doc: dict[str, Any], as_json: bool) -> None:
    from engine.run.documents import status_of
    from engine.run.progress import RunState

    status = status_of(doc)
    if as_json:
        typer.echo(json.dumps(status))
        return
    typer.echo(
        f"integration {status['_id']}  mode {status['mode']}  version {status['version']}"
        + ("  (update in progress)" if status["updateInProgress"] else "")
    )
    for step in status["install"]:
        typer.echo(f"  [{'x' if step['completed'] is True else ' '}] {step['name']}")
    stopped = RunState.of(doc).stopped
    if stopped:
        where = f" — {stopped['url']}" if stopped.get("url") else ""
        label = "waiting" if status["waiting"] else "failed"
        typer.echo(
            f"  {label} at {stopped.get('step') or '(connector)'}"
            f" ({stopped.get('function')}): {stopped.get('message')}{where}"
        )
        if stopped.get("raisedAt"):
            typer.echo(f"    raised at {stopped['raisedAt']}")
        fields = (status["waiting"] or {}).get("fields")
        if fields:
            from engine.cli._answers import fields_asked, how_to_answer

            typer.echo(f"    answers asked: {fields_asked(fields)}")
            typer.echo(f"    then: {how_to_answer(str(status['_id']), fields)}")


def report_outcome(
    settings: Settings,
    job: Callable[[Engine], Awaitable[dict[str, Any]]],
    as_json: bool,
    verbose: bool = False,
    *,
    creates: bool = False,
    said: Callable[[dict[str, Any]], str] | None = None,
) -> None:
    """Run an install-like job; print the id (or status) last, also when it stops early.

    ``said`` makes the line (on stderr) that says what the job did, when it did it all.
    """
    from engine.errors import SmartConnectorError

    async def job_keeping_id(engine: Engine) -> dict[str, Any]:
        try:
            return await job(engine)
        except SmartConnectorError as exc:
            integration_id = exc.context.get("integration_id")
            if integration_id and (exc.exit_code in (1, 7, 130) or answers_refused(exc)):
                stopped = await stopped_status(engine, integration_id, exc)
                explain(exc, verbose)
                typer.echo(json.dumps(stopped) if as_json else integration_id)
                raise typer.Exit(exc.exit_code) from None
            raise

    doc = with_engine(settings, job_keeping_id, creates=creates)
    if said is not None:
        typer.echo(said(doc), err=True)
    if as_json:
        print_status(doc, True)
    else:
        typer.echo(doc["_id"])


def answers_refused(exc: Exception) -> bool:
    """``--input-file`` answers the waiting step did not ask for (it stays waiting)."""
    from engine.errors import BadInput

    return isinstance(exc, BadInput) and exc.field == "--input-file"


async def stopped_status(
    engine: Engine, integration_id: str, exc: Exception
) -> dict[str, Any] | None:
    """``status --json`` of a run that stopped; for a deleted integration, from the error."""
    from engine.errors import StepFailed
    from engine.run.documents import status_of

    if isinstance(exc, StepFailed) and exc.deleted:
        return {
            **status_of({"_id": integration_id}),
            "mode": None,
            "error": {k: exc.context.get(k) for k in ("step", "function")} | {"message": str(exc)},
            "deleted": True,
            "rolledBack": exc.rolled_back,
        }
    try:
        return status_of(await engine.status(integration_id))
    except Exception:
        return None


def steps_done(doc: dict[str, Any]) -> str:
    """``3/4``: the steps completed of all."""
    steps = [s for s in doc.get("install") or [] if isinstance(s, dict)]
    return f"{sum(1 for s in steps if s.get('completed') is True)}/{len(steps)}"


def resumed(doc: dict[str, Any]) -> str:
    """What a resume did, from the document it ended with."""
    if doc.get("mode") == "uninstall":  # a resumed uninstall ends by deleting it
        return f"resumed {doc.get('_id')}: uninstalled and deleted it"
    return (
        f"resumed {doc.get('_id')}: installed (mode {doc.get('mode')},"
        f" version {doc.get('version')}, {steps_done(doc)} steps)"
    )


def next_step(exc: Exception) -> str | None:
    """The one advice line a stop deserves, from what is true now, or ``None``."""
    from engine.errors import (
        AuthenticationFailed,
        Interrupted,
        PermissionDenied,
        StepFailed,
        WaitingForUser,
    )

    integration_id = getattr(exc, "context", {}).get("integration_id")
    if not integration_id:
        return None
    resume = f"smartconnector resume {integration_id}"
    if isinstance(exc, StepFailed):
        if exc.deleted:
            return None  # nothing is left to resume
        if exc.rollback_failed:
            return f"fix the cause, then `{resume}` finishes the rollback"
        return f"fix the cause, then `{resume}`"
    if isinstance(exc, WaitingForUser):
        from engine.cli._answers import how_to_answer
        from engine.run.documents import asked_fields

        fields = asked_fields({"fields": exc.fields})
        return how_to_answer(integration_id, fields) if fields else f"once done, `{resume}`"
    if answers_refused(exc):
        return f"fix the answers, then `{resume} --input-file FILE`"
    if isinstance(exc, Interrupted):
        return f"`{resume}` goes on from here"
    if isinstance(exc, AuthenticationFailed | PermissionDenied):
        return f"fix the token or its scopes, then `{resume}`"
    return None


def explain(exc: Exception, verbose: bool = False) -> None:
    """What stopped a run, where, and what to do next, on stderr."""
    import traceback

    from engine.errors import Interrupted, StepFailed, WaitingForUser
    from engine.logs import redactor

    label = (
        "waiting"
        if isinstance(exc, WaitingForUser)
        else "interrupted"
        if isinstance(exc, Interrupted)
        else "error"
    )
    typer.echo(f"{label}: {redactor.scrub(str(exc))}", err=True)
    if isinstance(exc, StepFailed) and exc.raised_at:
        typer.echo(f"  raised at {exc.raised_at}", err=True)
    cause = exc.__cause__
    while isinstance(cause, StepFailed) and cause.__cause__ is not None:  # an atomic rollback
        cause = cause.__cause__
    if isinstance(exc, StepFailed) and cause is not None:
        if verbose:
            trace = "".join(traceback.format_exception(cause))
            typer.echo(redactor.scrub(trace).rstrip(), err=True)
        else:
            typer.echo("  (--verbose shows the whole traceback)", err=True)
    if isinstance(exc, WaitingForUser) and exc.url:
        typer.echo(f"  go to: {exc.url}", err=True)
    if isinstance(exc, WaitingForUser):
        from engine.cli._answers import explain_waiting

        explain_waiting(exc)
    advice = next_step(exc)
    if advice:
        typer.echo(f"  then: {advice}", err=True)
