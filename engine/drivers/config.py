"""Where the engine works: home directory, API endpoint and token, resolved once.

With no API URL the engine talks to the embedded sandbox in ``$SMARTCONNECTOR_HOME``
through httpx's ASGI transport: the same client code as for a remote server, no port.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import BadInput
from engine.policy import RateLimit, RetryPolicy
from engine.writes import SANDBOX_PROFILE_WAYS, WriteWays, forced_way

if TYPE_CHECKING:
    from engine.client import ApiClient
    from engine.models import StepPolicy

EMBEDDED_URL = "http://embedded.sandbox/v1"
EMBEDDED_TOKEN_LABEL = "embedded"
ADMIN_SCOPES = ["all.User"]
#: What the embedded sandbox serves: ``default`` (SPEC §5), or ``platform`` / ``put-only``, only
#: what the platform's docs promise (SPEC §5a), to run the engine against that. ``sandbox
#: serve --profile`` falls back to it too.
SANDBOX_PROFILE_ENV = "SMARTCONNECTOR_SANDBOX_PROFILE"


@dataclass(frozen=True)
class Settings:
    """Resolved options (CLI flag, else environment variable, else default)."""

    home: Path = field(default_factory=lambda: Path(".smartconnector"))
    api_url: str | None = None
    token: str | None = field(default=None, repr=False)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: The budget of requests the engine keeps under (``--api-rate``, ``--api-burst``).
    rate_limit: RateLimit = field(default_factory=RateLimit)
    #: The extension server for functions a connector does not define locally (SPEC §6).
    extension_url: str | None = None
    extension_token: str | None = field(default=None, repr=False)
    #: ``local`` (in-process asyncio) or ``temporal`` (workflows run by ``worker``s).
    engine: str = "local"
    temporal_address: str | None = None
    task_queue: str = "smartconnector"
    #: Policy for connector functions whose step sets none.
    step_policy: StepPolicy | None = None

    @property
    def embedded(self) -> bool:
        return self.api_url is None

    @property
    def sandbox_db(self) -> Path:
        return self.home / "sandbox.db"


def read_token(token_file: Path | None) -> str | None:
    """The API token from ``--token-file`` or ``SMARTCONNECTOR_API_TOKEN``; never from argv."""
    if token_file is not None:
        try:
            raw = token_file.read_bytes()
        except OSError as exc:
            raise BadInput(
                f"--token-file: cannot read {token_file}: {exc.strerror}; give a readable file"
                " holding the API token",
                field="--token-file",
            ) from None
        try:
            token: str | None = raw.decode().strip()
        except UnicodeDecodeError:
            token = None
        if token is None or not token.isprintable():
            raise BadInput(
                f"--token-file: {token_file} is not a text file holding one token;"
                " put the API token alone in it",
                field="--token-file",
            )
        if not token:
            raise BadInput(
                f"--token-file: {token_file} is empty; put the API token in it",
                field="--token-file",
            )
        return token
    return os.environ.get("SMARTCONNECTOR_API_TOKEN") or None


def sandbox_profile(name: str | None, source: str = SANDBOX_PROFILE_ENV) -> str:
    """The sandbox profile ``name`` (``default`` when unset), checked; ``source`` is where the
    name came from, for the message of a :class:`BadInput` naming the profiles there are."""
    from sandbox import PROFILES

    if not name:
        return PROFILES[0]
    if name not in PROFILES:
        raise BadInput(f"{source}: {name!r} is not one of {', '.join(PROFILES)}", field=source)
    return name


def embedded_profile() -> str:
    """The embedded sandbox's profile: ``$SMARTCONNECTOR_SANDBOX_PROFILE``, else ``default``."""
    return sandbox_profile(os.environ.get(SANDBOX_PROFILE_ENV))


def open_client(settings: Settings) -> ApiClient:
    """An API client for ``settings``: a remote API, or the embedded sandbox."""
    from engine.client import ApiClient, in_process  # httpx: not for `plan DIR`

    if not settings.embedded:
        if not settings.token:
            raise BadInput(
                "--api-url is set but no token: set SMARTCONNECTOR_API_TOKEN or --token-file",
                field="token",
            )
        assert settings.api_url is not None
        return ApiClient(
            settings.api_url,
            settings.token,
            retry=settings.retry,
            rate_limit=settings.rate_limit,
            writes=WriteWays.at_home(settings.api_url, settings.home, forced_way()),
        )
    from sandbox import Store, create_app  # the embedded default only

    profile = embedded_profile()  # a bad name is found before anything is made
    store = Store(settings.sandbox_db)
    store.forget_tokens(EMBEDDED_TOKEN_LABEL, older_than=24 * 3600)
    token = store.create_token(ADMIN_SCOPES, label=EMBEDDED_TOKEN_LABEL)
    return ApiClient(
        EMBEDDED_URL,
        token,
        transport=in_process(create_app(store, profile=profile)),
        retry=settings.retry,
        rate_limit=settings.rate_limit,
        reachable=False,
        writes=WriteWays(EMBEDDED_URL, forced=forced_way() or SANDBOX_PROFILE_WAYS[profile]),
    )
