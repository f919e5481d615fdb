"""Who may do what, and how fast: token scopes and the per-token leaky bucket."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

#: Scopes that grant every action (the platform's account-wide scopes).
ACCOUNT_SCOPES = ("all.Application", "all.Organization", "all.User")
#: Read-only forms of the account-wide scopes; they grant GET only.
READ_SCOPES = tuple(f"{s}.read" for s in ACCOUNT_SCOPES)
#: Every scope a token may carry in the sandbox.
KNOWN_SCOPES = frozenset(
    {
        *ACCOUNT_SCOPES,
        *READ_SCOPES,
        "integration.*",
        "integration.get",
        "integration.patch",
        "integration.delete",
        "integration.put",
        "integrations.get",
        "integrations.post",
        "resources.*",
    }
)


def required_scope(resource: str, method: str, *, item: bool) -> str:
    """The action's own scope, as in the integration actions seed."""
    if resource != "integrations":  # other resources, and the account's own state
        return "resources.*"
    if item:
        return f"integration.{method.lower()}"
    return f"integrations.{method.lower()}"


def allows(scopes: frozenset[str], needed: str, method: str) -> bool:
    if needed in scopes or any(s in scopes for s in ACCOUNT_SCOPES):
        return True
    if method == "GET" and any(s in scopes for s in READ_SCOPES):
        return True
    return needed.startswith(("integration.", "integrations.")) and "integration.*" in scopes


def accepted_scopes(needed: str) -> list[str]:
    """What a 403 lists: the action's scope first, then what else would grant it."""
    wider = ["integration.*"] if needed.startswith(("integration.", "integrations.")) else []
    return [needed, *wider, *ACCOUNT_SCOPES]


@dataclass
class LeakyBucket:
    """integrator.io's limit: ``capacity`` requests, draining at ``rate`` per second."""

    capacity: float = 1000
    rate: float = 300
    _levels: dict[str, tuple[float, float]] = field(default_factory=dict)

    def admit(self, key: str) -> float | None:
        """``None`` when the request may go on; else the seconds to wait (Retry-After)."""
        now = time.monotonic()
        level, last = self._levels.get(key, (0.0, now))
        level = max(0.0, level - (now - last) * self.rate)
        if level + 1 > self.capacity:
            self._levels[key] = (level, now)
            return (level + 1 - self.capacity) / self.rate
        self._levels[key] = (level + 1, now)
        return None


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
