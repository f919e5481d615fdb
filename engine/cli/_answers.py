"""The answers a waiting step asks for: read from ``--input-file``, asked at a terminal,
checked against what was asked, and shown to the person who must give them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from engine.cli._app import fail

if TYPE_CHECKING:
    from engine.client import Document
    from engine.drivers.runner import Engine
    from engine.errors import WaitingForUser
    from installers import Connector


def read_answers(path: Path) -> dict[str, str]:
    """``--input-file``: a JSON object of strings; anything else is exit 2, naming the key."""
    from engine.cli._app import read_json_file

    answers = read_json_file(path, "--input-file")
    if not isinstance(answers, dict):
        fail(f"--input-file: {path} must hold a JSON object of answers", 2)
    for key, value in answers.items():
        if not isinstance(value, str):
            fail(f"--input-file: {key}: an answer is a string, not {type(value).__name__}", 2)
    return answers


def waiting_fields(doc: Document) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The document's waiting record (``None`` when nothing waits) and the fields it asks."""
    from engine.run.documents import asked_fields
    from engine.run.progress import RunState

    waiting = RunState.of(doc).waiting
    return waiting, asked_fields(waiting)


def ask_for_answers(doc: Document) -> dict[str, str]:
    """On a terminal: the waiting step's fields, asked one by one (secret ones hidden)."""
    waiting, fields = waiting_fields(doc)
    if fields and waiting is not None:
        typer.echo(f"{waiting.get('step')}: {waiting.get('message')}", err=True)
    return {
        f["name"]: str(typer.prompt(f["label"], hide_input=f["secret"], err=True)) for f in fields
    }


def check_answers(
    answers: dict[str, str],
    waiting: dict[str, Any] | None,
    fields: list[dict[str, Any]],
    integration_id: str | None = None,
) -> None:
    """Every key of ``answers`` must be a field the ``waiting`` step asked for: exit 2 (as
    :class:`BadInput`) naming the first other key and the names asked, never ignored."""
    from engine.errors import BadInput

    names = [f["name"] for f in fields]
    unknown = [key for key in answers if key not in names]
    if not unknown:
        return
    key = unknown[0]
    if waiting is None:
        asked = f"integration {integration_id} is not waiting for answers"
    else:
        step, function = waiting.get("step"), waiting.get("function")
        who = f"step {step!r}" if step else f"function {function!r}"
        listed = ", ".join(names) + _did_you_mean(key, names) if names else "no answers"
        asked = f"{who} asks for {listed}"
    raise BadInput(
        f"--input-file: {key!r} is not an answer the waiting step asked for: {asked}."
        " Nothing more was run",
        field="--input-file",
        integration_id=integration_id,
    )


def _did_you_mean(key: str, names: list[str]) -> str:
    from engine.run.functions.resolve import closest_name

    close = closest_name(key, names)
    return f" (did you mean {close!r}?)" if close else ""


async def answers_for_resume(
    engine: Engine, integration_id: str, given: dict[str, str] | None
) -> dict[str, str] | None:
    """What ``resume`` hands the waiting step: the file's answers, checked before anything
    runs, or on a terminal the person's."""
    if given is None and not sys.stdin.isatty():
        return None
    doc = await engine.status(integration_id)
    if given is None:
        return ask_for_answers(doc) or None
    waiting, fields = waiting_fields(doc)
    check_answers(given, waiting, fields, integration_id)
    return given or None


async def install_answering(
    engine: Engine,
    connector: Connector,
    given: dict[str, str] | None,
    **options: Any,
) -> Document:
    """``install --input-file``: when a step stops to ask, its answers come from the file
    and it runs again at once, so an install that asks finishes in one command."""
    from engine.errors import WaitingForUser
    from engine.run.documents import asked_fields

    try:
        doc = await engine.install(connector, **options)
    except WaitingForUser as waiting:
        if not given or not waiting.fields or waiting.integration_id is None:
            raise
        where = {k: waiting.context.get(k) for k in ("step", "function")}
        fields = asked_fields({"fields": waiting.fields})
        check_answers(given, where, fields, waiting.integration_id)
        return await engine.resume(waiting.integration_id, connector, input=given)
    if given:
        typer.echo("note: no step asked for answers; --input-file was not used", err=True)
    return doc


def fields_asked(fields: list[dict[str, Any]]) -> str:
    """``account (NetSuite account ID), token (Token, secret)``."""
    return ", ".join(
        f"{f['name']} ({f['label']}{', secret' if f['secret'] else ''})" for f in fields
    )


def how_to_answer(integration_id: str, fields: list[dict[str, Any]]) -> str:
    """The advice for a step that asks: both ways of giving the answers."""
    example = json.dumps({f["name"]: "..." for f in fields})
    resume = f"smartconnector resume {integration_id}"
    return (
        f"put the answers in a JSON file ({example}) and run `{resume} --input-file FILE`,"
        f" or run `{resume}` at a terminal to be asked"
    )


def explain_waiting(exc: WaitingForUser) -> None:
    """The answers a stopped run asks for, by name and label, on stderr."""
    from engine.run.documents import asked_fields

    fields = asked_fields({"fields": exc.fields})
    if fields:
        typer.echo(f"  answers asked: {fields_asked(fields)}", err=True)
