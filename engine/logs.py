"""structlog set-up: console on a terminal, JSON otherwise, secrets always redacted."""

from __future__ import annotations

import contextvars
import functools
import logging
import re
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog

SECRET_KEYS = re.compile(r"token|authorization|secret|password|bearer", re.IGNORECASE)
REDACTED = "[redacted]"


class Redactor:
    """A structlog processor that hides secrets by key name and by value."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, secret: str | None) -> None:
        if secret:
            self._secrets.add(secret)

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: REDACTED if _secret_key(k) else self.scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub(v) for v in value]
        return value

    def __call__(
        self, logger: Any, name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        return self.scrub(dict(event_dict))  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=512)
def _secret_key(key: Any) -> bool:
    """Whether a key names a secret (keys repeat: every log line has the same few)."""
    return SECRET_KEYS.search(str(key)) is not None


#: The level of a run's routine events (a function succeeded): see :func:`fleet_events`.
_routine_level = contextvars.ContextVar("routine_level", default=logging.INFO)


def routine_level() -> int:
    return _routine_level.get()


@contextmanager
def fleet_events() -> Iterator[None]:
    """While many integrations run at once (runs started inside inherit it): each run's
    routine events at debug level, so that a fleet logs one line per integration, the
    command's own, not one more per function call."""
    token = _routine_level.set(logging.DEBUG)
    try:
        yield
    finally:
        _routine_level.reset(token)


#: The process-wide redactor; the CLI registers every token it reads.
redactor = Redactor()


def _stderr_logger(*args: Any) -> structlog.PrintLogger:
    """A logger on whatever ``sys.stderr`` is now (it may be replaced after set-up)."""
    return structlog.PrintLogger(sys.stderr)


#: What the step display shows on a terminal; not logged again there.
SHOWN_BY_THE_DISPLAY = frozenset(
    {"function succeeded", "mode change", "rollout outcome", "rollout state"}
)


def _drop_displayed(
    logger: Any, name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if event_dict.get("event") in SHOWN_BY_THE_DISPLAY:
        raise structlog.DropEvent
    return event_dict


def configure(log_format: str | None = None, level: int = logging.INFO) -> None:
    """Log to stderr as ``console`` (default on a TTY) or ``json`` (default otherwise).

    On a terminal with console logs the CLI shows each step as it goes, so the engine's
    routine events are not logged twice; the connectors' own events still are.
    """
    fmt = log_format or ("console" if sys.stderr.isatty() else "json")
    display = fmt == "console" and sys.stderr.isatty()
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            *([_drop_displayed] if display else []),
            redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
