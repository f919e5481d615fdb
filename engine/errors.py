"""Every error smartconnector raises, in one tree.

::

    SmartConnectorError                exit 1
    ├── BadInput                       exit 2   bad connector, document or usage; nothing changed
    │   ├── ConnectorInvalid                    connector.json / functions.py cannot be used
    │   └── DocumentInvalid                     an integration document fails validation
    ├── ApiError                                an HTTP answer we cannot use (method, path, status)
    │   ├── BadRequest              400  exit 2
    │   ├── AuthenticationFailed    401  exit 3
    │   ├── PermissionDenied        403  exit 3
    │   ├── NotFound                404  exit 6
    │   ├── Conflict                409  exit 4
    │   ├── Unprocessable           422  exit 2
    │   ├── RateLimited             429  exit 5
    │   └── ServerError             5xx  exit 5
    ├── ApiUnavailable                 exit 5   transport failures outlasted the retry budget
    │   └── AnswerLost                          a POST's answer was lost; it may have been applied
    ├── LeaseHeld                      exit 4   another run holds the integration
    ├── IllegalTransition              exit 1   the state machine refused a trigger
    ├── StepFailed                     exit 1   a connector function raised; resumable
    ├── WaitingForUser                 exit 7   a step needs a person (UserActionRequired)
    └── Interrupted                    exit 130 Ctrl-C; resumable

HTTP statuses are mapped to this tree once, in the API client (:func:`error_for_status`).
Messages never contain tokens: the client builds them from method, path and the server's
``errors[]`` only.
"""

from __future__ import annotations

from typing import Any, ClassVar


class SmartConnectorError(Exception):
    """Base of every error; ``exit_code`` is what the CLI exits with."""

    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = {k: v for k, v in context.items() if v is not None}

    def __str__(self) -> str:
        return self.message

    @property
    def integration_id(self) -> str | None:
        """The integration the error is about, when there is one (``resume`` takes it)."""
        found = self.context.get("integration_id")
        return str(found) if found is not None else None


class BadInput(SmartConnectorError):
    """Input that cannot be used; nothing was changed."""

    exit_code = 2

    def __init__(self, message: str, *, field: str | None = None, **context: Any) -> None:
        super().__init__(message, field=field, **context)
        self.field = field


class ConnectorInvalid(BadInput):
    """A connector directory, manifest or functions module that cannot be used."""


class DocumentInvalid(BadInput):
    """An integration document that does not validate."""


class ApiError(SmartConnectorError):
    """The API answered with a status we cannot use."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        method: str,
        path: str,
        status: int | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message, method=method, path=path, status=status)
        self.method = method
        self.path = path
        self.status = status
        self.errors = errors or []
        #: Which try of the request got this answer; after a retry a 404 or 409 may
        #: only mean the first, unanswered try took effect.
        self.attempt = 1


class BadRequest(ApiError):
    exit_code = 2


class AuthenticationFailed(ApiError):
    exit_code = 3


class PermissionDenied(ApiError):
    exit_code = 3


class NotFound(ApiError):
    exit_code = 6


class Conflict(ApiError):
    exit_code = 4


class Unprocessable(ApiError):
    exit_code = 2


class RateLimited(ApiError):
    exit_code = 5

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServerError(ApiError):
    exit_code = 5


class ApiUnavailable(SmartConnectorError):
    """The API could not be reached (timeouts, resets) within the retry budget."""

    exit_code = 5


class AnswerLost(ApiUnavailable):
    """A POST to an API that does not honour ``Idempotency-Key`` got no usable answer: it may
    or may not have created the document, so it is not sent again blindly."""


class LeaseHeld(SmartConnectorError):
    """Another run holds the integration's lease."""

    exit_code = 4


class IllegalTransition(SmartConnectorError):
    """A trigger that the current state does not allow."""


class StepFailed(SmartConnectorError):
    """A connector function raised; the integration is left resumable.

    ``raised_at`` is where in the connector's code (``file:line, in name``). After an atomic
    install, ``rolled_back`` names the steps undone and ``deleted`` says the integration is
    gone (nothing is left to resume); ``rollback_failed`` says undoing stopped half-way
    (``resume`` finishes it).
    """

    def __init__(
        self,
        message: str,
        *,
        raised_at: str | None = None,
        rolled_back: list[str] | None = None,
        deleted: bool = False,
        rollback_failed: bool = False,
        **context: Any,
    ) -> None:
        super().__init__(message, **context)
        self.raised_at = raised_at
        self.rolled_back = rolled_back
        self.deleted = deleted
        self.rollback_failed = rollback_failed

    def undone(self, integration_id: str, steps: list[str]) -> StepFailed:
        """This failure of an atomic install, after its completed ``steps`` were undone and
        integration ``integration_id`` deleted."""
        what = ", ".join(repr(n) for n in steps) or "no completed steps"
        return StepFailed(
            f"{self}; rolled back: undid {what} and deleted integration {integration_id}",
            integration_id=integration_id,
            raised_at=self.raised_at,
            rolled_back=steps,
            deleted=True,
            step=self.context.get("step"),
            function=self.context.get("function"),
        )

    def undo_failed(self, integration_id: str, undo_failure: SmartConnectorError) -> StepFailed:
        """This failure of an atomic install, after undoing it failed too."""
        return StepFailed(
            f"{self}; rolling back failed too: {undo_failure}. The integration is left"
            " in uninstall mode",
            integration_id=integration_id,
            raised_at=self.raised_at,
            rollback_failed=True,
            step=self.context.get("step"),
            function=self.context.get("function"),
        )


class WaitingForUser(SmartConnectorError):
    """A step needs a person to act before ``resume`` can go on; ``fields`` (each
    ``{"name", "label", "secret"}``) are the answers it asks for."""

    exit_code = 7

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        fields: list[dict[str, Any]] | None = None,
        **context: Any,
    ) -> None:
        super().__init__(message, url=url, **context)
        self.url = url
        self.fields = fields or []


class Interrupted(SmartConnectorError):
    """The run was interrupted (Ctrl-C) after recording its progress.

    ``abandoned`` is true when a second Ctrl-C cut a function off (``function`` names it):
    it was not recorded and runs again on resume, with the same idempotency key.
    """

    exit_code = 130

    def __init__(self, message: str, *, abandoned: bool = False, **context: Any) -> None:
        super().__init__(message, **context)
        self.abandoned = abandoned


_STATUS_ERRORS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: BadRequest,
    422: Unprocessable,
    429: RateLimited,
}


def error_for_status(
    status: int,
    *,
    method: str,
    path: str,
    errors: list[dict[str, Any]],
    retry_after: float | None = None,
) -> ApiError:
    """The one place an HTTP status becomes an exception."""
    detail = "; ".join(str(e.get("message") or e.get("code") or "") for e in errors) or "no detail"
    message = f"{method} {path} → {status}: {detail}"
    if status == 429:
        return RateLimited(
            message, method=method, path=path, status=status, errors=errors, retry_after=retry_after
        )
    cls = _STATUS_ERRORS.get(status, ServerError if status >= 500 else ApiError)
    return cls(message, method=method, path=path, status=status, errors=errors)


def to_wire(exc: SmartConnectorError) -> dict[str, Any]:
    """An error as JSON, to cross a process boundary (a Temporal activity, a workflow
    result): its class, message and every fact it carries."""
    plain = (str, int, float, list, type(None))  # bool is an int
    facts = {
        k: v
        for k, v in vars(exc).items()
        if k not in ("message", "context") and isinstance(v, plain)
    }
    return {"type": type(exc).__name__, "message": exc.message, "context": exc.context} | {
        "facts": facts
    }


def from_wire(data: dict[str, Any]) -> SmartConnectorError:
    """The same class, message and facts as :func:`to_wire` was given, on this side."""
    cls = _error_classes().get(str(data.get("type")), SmartConnectorError)
    exc = cls.__new__(cls)
    Exception.__init__(exc, data.get("message", ""))
    exc.message = str(data.get("message", ""))
    exc.context = dict(data.get("context") or {})
    for name, value in (data.get("facts") or {}).items():
        setattr(exc, name, value)
    return exc


def _error_classes() -> dict[str, type[SmartConnectorError]]:
    found: dict[str, type[SmartConnectorError]] = {}
    pending: list[type[SmartConnectorError]] = [SmartConnectorError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending += cls.__subclasses__()
    return found
