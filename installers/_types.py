"""What a connector function receives, returns and raises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from engine.client import ApiClient
    from engine.models import InstallStep, Integration


@dataclass(frozen=True)
class Field:
    """An answer a waiting step asks the person for: ``name`` is its key in ``ctx.input``,
    ``label`` what the person reads; a ``secret`` one is typed hidden and is handed to the
    function and nothing else (never logged, journalled, written or shown again)."""

    name: str
    label: str
    secret: bool = False

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "secret": self.secret}


class UserActionRequired(Exception):
    """Raised by a function whose step needs a person (credentials, a bundle at ``url``).

    The step stays incomplete; the engine shows ``message`` and ``url`` and exits 7, and
    ``smartconnector resume`` runs the function again once the person has acted. ``fields``
    asks for answers, which the next try finds in ``ctx.input``.
    """

    def __init__(
        self, message: str, url: str | None = None, fields: tuple[Field, ...] | list[Field] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        self.fields = tuple(fields)


class RetryableError(Exception):
    """Raised by a function for a failure worth retrying under the step's retry policy."""


@dataclass
class StepResult:
    """What a function hands back: changes to steps, as integrator-extension's ``stepsToUpdate``."""

    steps_to_update: list[dict[str, Any]] = field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        return {"stepsToUpdate": self.steps_to_update}


class StepContext:
    """Everything a connector function may use.

    ``integration`` is the current document, typed; ``step`` is ``None`` for connector-level
    functions. ``idempotency_key`` is the same for every retry and resume of the same step,
    so a function can make its own effects idempotent (e.g. look up what it created under
    that key before creating again). ``options`` carries the SDK's ``opts`` and, for
    ``persistSettings``, ``pending``. ``input`` holds the answers to the ``fields`` the
    step's previous try asked for (strings by field name; empty when nothing was asked).
    """

    def __init__(
        self,
        *,
        integration: Integration | Callable[[], Integration],
        step: InstallStep | None,
        api: ApiClient,
        idempotency_key: str,
        log: FilteringBoundLogger,
        options: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
        input: dict[str, str] | None = None,
    ) -> None:
        self._integration = integration
        self.step = step
        self.api = api
        self.idempotency_key = idempotency_key
        self.log = log
        self.options: dict[str, Any] = options if options is not None else {}
        self.settings: dict[str, Any] = settings if settings is not None else {}
        self.input: dict[str, str] = input if input is not None else {}

    @property
    def integration(self) -> Integration:
        """The integration document, typed (built when first asked for)."""
        if callable(self._integration):
            self._integration = self._integration()
        return self._integration

    def __repr__(self) -> str:
        step = self.step.name if self.step else None
        return f"StepContext(step={step!r}, idempotency_key={self.idempotency_key!r})"
