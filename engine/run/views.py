"""Reading an integration as runs see it: the document with its run state, which on the
platform's State API ways lives apart from it (:mod:`engine.run.state_writer`)."""

from __future__ import annotations

import asyncio
from typing import Any

from engine.client import ApiClient, Document
from engine.errors import NotFound
from engine.run.progress import RUN_FIELD
from engine.writes import WriteWay


async def read_state(api: ApiClient, integration_id: str) -> dict[str, Any] | None:
    """The run state kept under the integration in the State API, if any."""
    try:
        found = await api.get_state(RUN_FIELD, resource="integrations", id=integration_id)
    except NotFound:
        return None
    return found if isinstance(found, dict) else None


def with_state(doc: Document, state: dict[str, Any] | None) -> Document:
    """The view of ``doc`` with ``state`` as its run state (none: without one)."""
    view = {k: v for k, v in doc.items() if k != RUN_FIELD}
    if state is not None:
        view[RUN_FIELD] = state
    return view


async def read_view(api: ApiClient, integration_id: str) -> Document:
    """The integration with its run state, wherever the API's way keeps it."""
    doc = await api.get("integrations", integration_id)
    return await view_of(api, doc)


async def read_views(api: ApiClient, **filters: str) -> list[Document]:
    """The integrations the API holds (matching ``filters``), each with its run state."""
    docs = await api.list("integrations", **filters)
    return list(await asyncio.gather(*(view_of(api, d) for d in docs)))


async def view_of(api: ApiClient, doc: Document) -> Document:
    """``doc`` (as read or listed) with its run state: read from the State API unless the
    API keeps it in the document (or ``doc`` carries it)."""
    way = api.writes.way
    if way is WriteWay.JSON_PATCH_TEST or (way is None and RUN_FIELD in doc):
        return doc
    return with_state(doc, await read_state(api, str(doc["_id"])))
