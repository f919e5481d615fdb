"""What each sandbox profile serves, decided once when the app is built (SPEC §5, §5a).

``default`` is the permissive sandbox of SPEC §5. ``platform`` serves only what the
platform's public API docs promise (SPEC §5a), so the engine can be tested against an API that
offers nothing more. ``put-only`` is ``platform`` without PATCH of integrations, as some of the
platform's own API descriptions list it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from sandbox._store import Document

#: The top-level fields of the platform's integration schema: on the platform profiles an
#: integration keeps these and drops any other. The SmartConnector fields of the first seed,
#: the fields the seed's document shows, and the server's own ``_id`` and ``lastModified``
#: (``_connectorId`` is also what the store indexes for ``GET /integrations?_connectorId=``).
#: No ``createdAt``: the store does not stamp one.
INTEGRATION_FIELDS = frozenset(
    {
        "_id",
        "lastModified",
        "name",
        "description",
        "_connectorId",
        "mode",
        "install",
        "settings",
        "version",
        "updateInProgress",
    }
)
#: The fields the platform documents ``replace`` operations on, in ``PATCH /integrations/{_id}``
#: (each field itself, or any path below it).
INTEGRATION_PATCH_FIELDS = frozenset(
    {"name", "description", "mode", "settings", "version", "updateInProgress", "install"}
)


class IntegrationPatch(Enum):
    """How ``PATCH /integrations/{_id}`` is answered."""

    #: JSON Patch (every op, ``test`` included) or merge patch; 200 with the document.
    ANY = "any"
    #: ``replace`` operations on :data:`INTEGRATION_PATCH_FIELDS` only; 204 with no body.
    REPLACE_ONLY = "replace-only"
    #: Not served: 405, as for an API whose description lists no PATCH.
    NONE = "none"


@dataclass(frozen=True)
class Profile:
    """One profile's differences from the default sandbox."""

    name: str
    #: Whether a POST with an ``Idempotency-Key`` seen before answers the first document.
    honours_idempotency_key: bool
    #: The top-level fields an integration keeps; ``None`` keeps every field as given.
    integration_fields: frozenset[str] | None
    integration_patch: IntegrationPatch


_PROFILES = (
    Profile("default", True, None, IntegrationPatch.ANY),
    Profile("platform", False, INTEGRATION_FIELDS, IntegrationPatch.REPLACE_ONLY),
    Profile("put-only", False, INTEGRATION_FIELDS, IntegrationPatch.NONE),
)
#: The profile names ``create_app`` and ``sandbox serve --profile`` take; the first is the default.
PROFILES = tuple(p.name for p in _PROFILES)


def profile_named(name: str) -> Profile:
    """The profile called ``name``; any other name is a :class:`ValueError` naming the allowed."""
    for profile in _PROFILES:
        if profile.name == name:
            return profile
    raise ValueError(f"unknown sandbox profile {name!r}: use one of {', '.join(PROFILES)}")


def keep_fields(doc: Document, fields: frozenset[str]) -> Document:
    """``doc`` with only the top-level ``fields`` (what is inside them is kept as given)."""
    return {key: value for key, value in doc.items() if key in fields}
