"""The integrator.io API client: the resources, the State API and the application actions.

How each request goes out (rate limit, retries, error mapping) is :mod:`engine.sending`.
Retrying is only done where repeating is safe:

- GET, PUT and DELETE are idempotent (a DELETE whose first answer was lost and whose retry
  finds nothing has succeeded).
- POST carries an ``Idempotency-Key`` that stays the same across its retries, so a retry
  after a lost answer returns the first document instead of creating a second.
- A PATCH with ``test`` operations whose retry fails its test (409) is checked against the
  document: if every change it makes is already there, the first attempt was applied.
"""

from __future__ import annotations

import builtins
import secrets
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx
import jsonpointer
import structlog

from engine.errors import (
    ApiError,
    AuthenticationFailed,
    Conflict,
    NotFound,
    PermissionDenied,
)
from engine.policy import RateLimit, RetryPolicy
from engine.sending import CONNECTIONS, Sender, in_process, tls_for
from engine.writes import WriteWays

__all__ = ["CONNECTIONS", "ApiClient", "Document", "Patch", "in_process", "tls_for"]

Document = dict[str, Any]
Patch = list[dict[str, Any]] | dict[str, Any]

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"

log = structlog.get_logger("smartconnector.api")


def _content_type(ops: Patch) -> dict[str, str]:
    return {"Content-Type": JSON_PATCH if isinstance(ops, list) else MERGE_PATCH}


def _state_path(key: str | None, resource: str | None, id: str | None) -> str:
    """``/state[/key]``, or the same under ``/resource/id``; keys are escaped."""
    if (resource is None) != (id is None):
        raise ValueError("state under a document needs both resource= and id=")
    base = f"/{resource}/{quote(str(id), safe='')}/state" if resource else "/state"
    return base if key is None else f"{base}/{quote(key, safe='')}"


def _already_applied(doc: Any, ops: list[dict[str, Any]]) -> bool:
    """Whether every change in ``ops`` is present in ``doc`` (tests are ignored)."""
    missing = object()
    for op in ops:
        kind, path = op.get("op"), op.get("path", "")
        if kind == "test":
            continue
        if kind in ("add", "replace"):
            if path.endswith("/-"):
                return False
            if jsonpointer.resolve_pointer(doc, path, missing) != op.get("value"):
                return False
        elif kind == "remove":
            if jsonpointer.resolve_pointer(doc, path, missing) is not missing:
                return False
        else:
            return False
    return True


class ApiClient:
    """Async client for the Integration API and the resources a connector creates.

    ``resource`` is one of ``integrations``, ``connections``, ``exports``, ``imports``,
    ``flows``. Documents are plain dicts; failures raise the :mod:`engine.errors` tree.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        rate_limit: RateLimit | None = None,
        timeout: float = 30.0,
        reachable: bool = True,
        writes: WriteWays | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        #: How this API takes a run's progress (found by a probe unless known).
        self.writes = writes or WriteWays(self.base_url)
        #: The URL another process can reach this API at; ``None`` for an in-process sandbox.
        self.public_url: str | None = self.base_url if reachable else None
        self._token = token
        self._sender = Sender(
            self.base_url,
            token,
            transport=transport,
            retry=retry,
            rate_limit=rate_limit,
            timeout=timeout,
        )
        self._send = self._sender.send

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def retry(self) -> RetryPolicy:
        """How hard each request is tried."""
        return self._sender.retry

    def bearer_token(self) -> str:
        """The token, for handing on to a remote function (SPEC §6 ``bearerToken``) only."""
        return self._token

    async def aclose(self) -> None:
        await self._sender.aclose()

    # -- resources ------------------------------------------------------------------------

    async def list(self, resource: str, **filters: str) -> list[Document]:
        """Every document of ``resource`` matching ``filters``, following ``Link: rel=next``."""
        return [doc async for page in self.pages(resource, **filters) for doc in page]

    async def pages(self, resource: str, **filters: str) -> AsyncIterator[builtins.list[Document]]:
        """The documents of ``resource`` matching ``filters``, a page at a time: a fleet
        is read without holding all of it."""
        docs, cursor = await self.page(resource, None, **filters)
        yield docs
        while cursor is not None:
            docs, cursor = await self.page(resource, cursor)
            yield docs

    async def page(
        self, resource: str, cursor: str | None = None, **filters: str
    ) -> tuple[builtins.list[Document], str | None]:
        """One page of ``resource``: the first (matching ``filters``), or the one ``cursor``
        (the previous page's) names; with the cursor of the next, ``None`` after the last."""
        if cursor is None:
            response = await self._send("GET", f"/{resource}", params=filters or None)
        else:
            response = await self._send("GET", cursor)
        return response.json(), response.links.get("next", {}).get("url")

    async def get(self, resource: str, id: str) -> Document:
        return (await self._send("GET", f"/{resource}/{id}")).json()  # type: ignore[no-any-return]

    async def create(
        self, resource: str, doc: Document, *, repeatable: bool | None = None
    ) -> Document:
        """POST ``doc``. Its retries carry one ``Idempotency-Key``; on an API that does not
        honour it (``repeatable`` defaults to whether the API's write way does) an answer
        lost after the request may have been applied is not retried but raised as
        :class:`~engine.errors.AnswerLost`."""
        if repeatable is None:
            repeatable = self.writes.way is not None and self.writes.way.keeps_idempotency_keys
        key = secrets.token_hex(16)
        response = await self._send(
            "POST",
            f"/{resource}",
            json=doc,
            headers={"Idempotency-Key": key},
            repeatable=repeatable,
        )
        return response.json()  # type: ignore[no-any-return]

    async def replace(self, resource: str, id: str, doc: Document) -> Document:
        """PUT the whole document; the document as it is after it (read again when the API
        answers with no body)."""
        replaced = await self.replace_applied(resource, id, doc)
        return replaced if replaced is not None else await self.get(resource, id)

    async def replace_applied(self, resource: str, id: str, doc: Document) -> Document | None:
        """:meth:`replace`, or ``None`` when the API answers with no body (204)."""
        response = await self._send("PUT", f"/{resource}/{id}", json=doc)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()  # type: ignore[no-any-return]

    async def patch(self, resource: str, id: str, ops: Patch) -> Document:
        """A JSON Patch (a list of operations) or a merge patch (a dict); the document as it
        is after it (read again when the API answers 204, as the platform's docs say)."""
        changed = await self.patch_applied(resource, id, ops)
        return changed if changed is not None else await self.get(resource, id)

    async def patch_status(self, resource: str, id: str, ops: Patch) -> int:
        """The status a PATCH is answered with (retried as any request), success or not."""
        try:
            await self._send("PATCH", f"/{resource}/{id}", json=ops, headers=_content_type(ops))
        except (AuthenticationFailed, PermissionDenied):
            raise  # the token's, not the API's way
        except ApiError as exc:
            if exc.status is None or exc.status >= 500 or exc.status == 429:
                raise
            return exc.status
        return 200

    async def patch_applied(self, resource: str, id: str, ops: Patch) -> Document | None:
        """:meth:`patch`, or ``None`` when the API answers with no body (204): the caller
        applies the change to the document it holds."""
        path = f"/{resource}/{id}"
        try:
            response = await self._send("PATCH", path, json=ops, headers=_content_type(ops))
        except Conflict as exc:
            if not isinstance(ops, list) or exc.attempt == 1:
                raise
            current = await self.get(resource, id)
            if not _already_applied(current, ops):
                raise
            log.debug("patch already applied", path=path)
            return current
        if response.status_code == 204 or not response.content:
            return None
        return response.json()  # type: ignore[no-any-return]

    async def delete(self, resource: str, id: str) -> None:
        try:
            await self._send("DELETE", f"/{resource}/{id}")
        except NotFound as exc:
            if exc.attempt == 1:
                raise

    # -- the State API: small values by key, the account's or under a document -------------

    async def state_keys(
        self, *, resource: str | None = None, id: str | None = None
    ) -> builtins.list[str]:
        """The keys kept for the account (or under ``resource``/``id``)."""
        response = await self._send("GET", _state_path(None, resource, id))
        return list(response.json().get("keys", []))

    async def get_state(
        self, key: str, *, resource: str | None = None, id: str | None = None
    ) -> Any:
        """The value under ``key``; a missing key raises :class:`~engine.errors.NotFound`."""
        return (await self._send("GET", _state_path(key, resource, id))).json()

    async def put_state(
        self, key: str, value: Any, *, resource: str | None = None, id: str | None = None
    ) -> None:
        """Keep ``value`` (any JSON) under ``key``, replacing what was there."""
        await self._send("PUT", _state_path(key, resource, id), json=value)

    async def delete_state(
        self, key: str, *, resource: str | None = None, id: str | None = None
    ) -> None:
        """Remove ``key``; a missing key raises :class:`~engine.errors.NotFound`."""
        try:
            await self._send("DELETE", _state_path(key, resource, id))
        except NotFound as exc:
            if exc.attempt == 1:  # a retry finding nothing: the first try deleted it
                raise

    # -- application-scoped integration actions (second seed) -----------------------------

    async def application_get(self, application_id: str, integration_id: str) -> Document:
        path = f"/applications/{application_id}/integrations/{integration_id}"
        return (await self._send("GET", path)).json()  # type: ignore[no-any-return]

    async def application_patch(
        self, application_id: str, integration_id: str, changes: Document
    ) -> Document:
        path = f"/applications/{application_id}/integrations/{integration_id}"
        return (await self._send("PATCH", path, json=changes)).json()  # type: ignore[no-any-return]

    async def application_delete(self, application_id: str, integration_id: str) -> None:
        path = f"/applications/{application_id}/integrations/{integration_id}"
        await self._send("DELETE", path)
