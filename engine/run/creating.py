"""Creating an integration: one POST, and where the API does not honour ``Idempotency-Key``,
a lost answer reconciled with what the API holds rather than sent again blindly (SPEC §5a)."""

from __future__ import annotations

import time

from engine.client import ApiClient, Document
from engine.errors import AnswerLost, ApiUnavailable
from engine.run.documents import ADOPT_SKEW, just_made, new_integration
from engine.run.progress import RUN_FIELD, RunState
from engine.run.views import read_state
from engine.run.writer import Owner
from engine.writes import WriteWay
from installers import Connector


async def post_integration(
    api: ApiClient, connector: Connector, owner: Owner, ttl: float, tries: int = 3
) -> Document:
    """The new integration (``mode: install``, under ``owner``'s lease where the document
    keeps it): POSTed once per try; a lost answer adopts what that POST made."""
    way = api.writes.way
    body = new_integration(connector, owner, ttl)
    if way not in (None, WriteWay.JSON_PATCH_TEST):
        body.pop(RUN_FIELD)  # the API keeps no unknown field
    began = time.time()
    try:
        return await api.create("integrations", body)
    except AnswerLost as lost:
        adopted = await adopt(api, connector, owner, began)
        if adopted is not None:
            return adopted
        if tries <= 1:
            raise lost
        return await post_integration(api, connector, owner, ttl, tries - 1)


async def adopt(
    api: ApiClient, connector: Connector, owner: Owner, began: float
) -> Document | None:
    """The integration a POST whose answer was lost made, if it made one; exit 5 naming
    the candidates when it cannot be told apart from another just made."""
    manifest = connector.manifest
    found = await api.list("integrations", _connectorId=manifest.connector_id)
    ours = [d for d in found if RunState.of(d).lease_owner == owner.run_id]
    if ours:  # an API that keeps the run state field says so exactly
        return ours[0]
    candidates = [
        doc
        for doc in found
        if just_made(doc, manifest, since=began - ADOPT_SKEW)
        and await read_state(api, str(doc["_id"])) is None
    ]
    if len(candidates) > 1:
        ids = ", ".join(str(d["_id"]) for d in candidates)
        raise ApiUnavailable(
            f"the answer to creating the integration was lost, and {len(candidates)} new"
            f" integrations of connector {manifest.connector_id} could be it: {ids}."
            " Uninstall the ones that are not yours (smartconnector uninstall ID), then"
            " resume the other",
            candidates=[str(d["_id"]) for d in candidates],
        )
    return candidates[0] if candidates else None
