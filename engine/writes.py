"""How an API takes a run's progress: the three write ways, found by probing, remembered.

An API of the sandbox's kind takes JSON Patch with ``test``, keeps unknown fields and honours
``Idempotency-Key``: the run's state lives in the document (``json-patch-test``). The platform
as its public docs describe it (SPEC §5a) takes ``replace`` operations only and drops unknown
fields (``replace-only``), or takes no PATCH at all (``put-only``): there the run's state lives
in the State API under the integration.

Which way an API takes is found once by a probe that changes nothing (a PATCH whose only
operation is a ``test`` that must fail) and remembered per API URL in ``$SMARTCONNECTOR_HOME``.
Compare-and-set counts as there only when that ``test`` is answered 409: an API that answers
2xx to it ignores ``test``.
"""

from __future__ import annotations

import contextlib
import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import structlog

log = structlog.get_logger("smartconnector.writes")

#: The environment variable (and ``--writes``) that forces a way instead of probing.
WRITES_ENV = "SMARTCONNECTOR_WRITES"
#: The file in the home where each API URL's way is remembered.
REMEMBERED = "api-writes.json"


class Patches(Protocol):
    """What a probe needs of an API client."""

    async def patch_status(self, resource: str, id: str, ops: Any) -> int: ...


class WriteWay(StrEnum):
    """How progress is written to an integration."""

    JSON_PATCH_TEST = "json-patch-test"  # JSON Patch with test; run state in the document
    REPLACE_ONLY = "replace-only"  # replace operations; run state in the State API
    PUT_ONLY = "put-only"  # PUT of the whole document; run state in the State API

    @property
    def exclusive(self) -> bool:
        """Whether one run per integration is guaranteed by the API (compare-and-set),
        rather than by a claim that two runs starting at once can both win."""
        return self is WriteWay.JSON_PATCH_TEST

    @property
    def keeps_idempotency_keys(self) -> bool:
        """Whether a POST retried with the same ``Idempotency-Key`` makes nothing twice."""
        return self is WriteWay.JSON_PATCH_TEST


#: The way each profile of the sandbox takes writes (``sandbox serve --profile``).
SANDBOX_PROFILE_WAYS = {
    "default": WriteWay.JSON_PATCH_TEST,
    "platform": WriteWay.REPLACE_ONLY,
    "put-only": WriteWay.PUT_ONLY,
}


def forced_way() -> WriteWay | None:
    """The way ``SMARTCONNECTOR_WRITES`` forces, if it is set."""
    value = os.environ.get(WRITES_ENV)
    return parse_way(value, WRITES_ENV) if value else None


def parse_way(value: str, field: str = "--writes") -> WriteWay:
    from engine.errors import BadInput

    try:
        return WriteWay(value)
    except ValueError:
        allowed = ", ".join(w.value for w in WriteWay)
        raise BadInput(f"{field}: {value!r} is not one of {allowed}", field=field) from None


async def probe(api: Patches, integration_id: str) -> WriteWay:
    """The way ``api`` takes writes to integrations, asked of ``integration_id``; nothing is
    changed: the PATCH's one operation is a ``test`` that must fail."""
    must_fail = [{"op": "test", "path": "/_id", "value": f"{integration_id}!probe"}]
    status = await api.patch_status("integrations", integration_id, must_fail)
    if status == 409:
        return WriteWay.JSON_PATCH_TEST
    if status in (404, 405, 501):  # no PATCH for an integration that GET finds
        return WriteWay.PUT_ONLY
    return WriteWay.REPLACE_ONLY  # a refused test (400, 422), or one ignored (2xx)


class WriteWays:
    """The way of one API: forced, remembered in the home, or probed once and remembered."""

    def __init__(
        self, url: str, remembered: Path | None = None, forced: WriteWay | None = None
    ) -> None:
        self.url = url
        self.path = remembered
        self.way: WriteWay | None = forced or self._remembered()
        #: Whether :attr:`way` was found or told, rather than supposed.
        self.confirmed = True

    @classmethod
    def at_home(cls, url: str, home: Path, forced: WriteWay | None = None) -> WriteWays:
        """The ways remembered in ``home`` (``forced``, when given, wins)."""
        return cls(url, home / REMEMBERED, forced)

    def _remembered(self) -> WriteWay | None:
        if self.path is None:
            return None
        with contextlib.suppress(OSError, ValueError, TypeError):
            found = json.loads(self.path.read_text()).get(self.url)
            return WriteWay(found) if found else None
        return None

    async def of(self, api: Patches, integration_id: str) -> WriteWay:
        """The way, probing ``integration_id`` the first time."""
        if self.way is None:
            self.learn(await probe(api, integration_id))
            assert self.way is not None
        return self.way

    def suppose(self, way: WriteWay) -> None:
        """Take ``way`` for this process without remembering it: the first write that
        works confirms it (:meth:`confirm`)."""
        self.way, self.confirmed = way, False

    def confirm(self) -> None:
        """A write went through the way supposed: remember it."""
        if not self.confirmed and self.way is not None:
            self.learn(self.way)

    def learn(self, way: WriteWay) -> None:
        """Take ``way`` as the API's, and remember it in the home."""
        if way is not self.way:
            log.info("write way found", api=self.url, writes=way.value)
        self.way, self.confirmed = way, True
        if self.path is None:
            return
        known: dict[str, str] = {}
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(self.path.read_text())
            known = loaded if isinstance(loaded, dict) else {}
        known[self.url] = way.value
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps(known, indent=2) + "\n")
            partial.replace(self.path)


__all__ = ["REMEMBERED", "WRITES_ENV", "WriteWay", "WriteWays", "parse_way", "probe"]
