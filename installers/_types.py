"""What a connector function receives, returns and raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from engine.client import ApiClient
    from engine.models import InstallStep, Integration


class UserActionRequired(Exception):
    """Raised by a function whose step needs a person (credentials, a bundle at ``url``).

    The step stays incomplete; the engine shows ``message`` and ``url`` and exits 7, and
    ``smartconnector resume`` runs the function again once the person has acted.
    """

    def __init__(self, message: str, url: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.url = url


class RetryableError(Exception):
    """Raised by a function for a failure worth retrying under the step's retry policy."""


@dataclass
class StepResult:
    """What a function hands back: changes to steps, as integrator-extension's ``stepsToUpdate``."""

    steps_to_update: list[dict[str, Any]] = field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        return {"stepsToUpdate": self.steps_to_update}


@dataclass
class StepContext:
    """Everything a connector function may use.

    ``step`` is ``None`` for connector-level functions. ``idempotency_key`` is the same for
    every retry and resume of the same step, so a function can make its own effects
    idempotent (e.g. look up what it created under that key before creating again).
    """

    integration: Integration
    step: InstallStep | None
    api: ApiClient
    idempotency_key: str
    log: FilteringBoundLogger
    options: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
