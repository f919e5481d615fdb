"""Typed views of the integration document and the connector manifest.

camelCase on the wire, snake_case in Python. Types are strict (``completed: "yes"`` and
``version: 1`` are errors, not coerced) and unknown fields are kept, so a document read,
changed and written back loses nothing the platform or another tool put there.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from engine.errors import BadInput
from engine.modes import Mode as Mode  # where it has always been imported from, too

#: The modes a document can be in (``removed`` is no document at all).
DocumentMode = Literal[Mode.INSTALL, Mode.SETTINGS, Mode.UNINSTALL]

#: Largest document (serialised) the engine accepts, as the platform's request limit.
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024
#: Largest single string in a modelled field; real names and URLs are far shorter.
MAX_FIELD_CHARS = 64 * 1024

Name = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
FunctionName = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Text = Annotated[str, StringConstraints(max_length=MAX_FIELD_CHARS)]


class WireModel(BaseModel):
    """Strict, alias-first, keeps unknown fields."""

    model_config = ConfigDict(
        strict=True,
        extra="allow",
        populate_by_name=True,
        serialize_by_alias=True,
        validate_by_alias=True,
        validate_by_name=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The document as JSON-ready camelCase, with exactly the fields it was given."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class StepPolicy(WireModel):
    """How a step's function is run: its timeout and how often a retryable error is retried."""

    timeout: Annotated[float, Field(gt=0)] | None = None
    retries: Annotated[int, Field(ge=0, le=100)] = 0
    retry_delay: Annotated[float, Field(ge=0, alias="retryDelay")] = 1.0


class InstallStep(WireModel):
    """One entry of an integration's ``install`` list."""

    name: Name
    description: Text | None = None
    image_url: Text | None = Field(default=None, alias="imageURL")
    completed: bool = False
    installer_function: FunctionName = Field(alias="installerFunction")
    uninstaller_function: FunctionName = Field(alias="uninstallerFunction")
    connection_id: Text | None = Field(default=None, alias="_connectionId")
    install_url: Text | None = Field(default=None, alias="installURL")
    policy: StepPolicy | None = None


class Integration(WireModel):
    """A SmartConnector integration document."""

    id: Text | None = Field(default=None, alias="_id")
    last_modified: Text | None = Field(default=None, alias="lastModified")
    name: Text | None = None
    connector_id: Text | None = Field(default=None, alias="_connectorId")
    mode: DocumentMode
    install: list[InstallStep]
    settings: dict[str, Any] | None = None
    version: Text | None = None
    update_in_progress: bool = Field(default=False, alias="updateInProgress")


class ConnectorManifest(WireModel):
    """``connector.json``: what a connector installs and which functions do it."""

    name: Name
    connector_id: Name = Field(alias="_connectorId")
    version: Name
    installer_function: FunctionName | None = Field(default=None, alias="installerFunction")
    update_function: FunctionName | None = Field(default=None, alias="updateFunction")
    pre_uninstall_function: FunctionName | None = Field(default=None, alias="preUninstallFunction")
    uninstaller_function: FunctionName | None = Field(default=None, alias="uninstallerFunction")
    persist_settings_function: FunctionName | None = Field(
        default=None, alias="persistSettingsFunction"
    )
    install: list[InstallStep]
    settings: dict[str, Any] = Field(default_factory=dict)
    functions: Text | None = None

    def function_names(self) -> list[tuple[str, str]]:
        """Every function the manifest names, as ``(field path, function name)``."""
        names: list[tuple[str, str]] = []
        for alias in (
            "installerFunction",
            "updateFunction",
            "preUninstallFunction",
            "uninstallerFunction",
            "persistSettingsFunction",
        ):
            value = getattr(self, _FIELD_BY_ALIAS[alias])
            if value is not None:
                names.append((alias, value))
        for i, step in enumerate(self.install):
            names.append((f"install[{i}].installerFunction", step.installer_function))
            names.append((f"install[{i}].uninstallerFunction", step.uninstaller_function))
        return names


_FIELD_BY_ALIAS = {
    (info.alias or name): name for name, info in ConnectorManifest.model_fields.items()
}

M = TypeVar("M", bound=WireModel)


def field_path(loc: Sequence[int | str]) -> str:
    """``("install", 2, "completed")`` → ``install[2].completed``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(document)"


#: At most this many problems are listed in one error; the rest are counted.
MAX_PROBLEMS = 50


def parse(model: type[M], data: Any, *, what: str, error: type[BadInput] = BadInput) -> M:
    """Validate ``data`` as ``model``; every problem is named with its field (e.g.
    ``install[2].name``), all in one error."""
    if not isinstance(data, dict):
        raise error(
            f"{what}: expected a JSON object, got {type(data).__name__}", field="(document)"
        )
    size = len(json.dumps(data, separators=(",", ":")))
    if size > MAX_DOCUMENT_BYTES:
        raise oversized(data, size, what, error)
    problems = _duplicate_step_names(data)
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        hinted = [_with_hint(e, data) for e in errors[:MAX_PROBLEMS]]  # only these are shown
        messages = hinted + [str(e["msg"]) for e in errors[MAX_PROBLEMS:]]
        found = [(field_path(e["loc"]), m) for e, m in zip(errors, messages, strict=True)]
        problems = found + problems
    if problems:
        raise problems_error(what, problems, error)
    return parsed


def _with_hint(error: Any, data: Any) -> str:
    """The problem's message; for a missing field, the key beside it that looks like a typo
    of it (``"instal"`` for ``install``)."""
    message = str(error["msg"])
    *parents, name = error["loc"] or ("",)
    if error["type"] != "missing" or not isinstance(name, str):
        return message
    node = data
    for part in parents:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return message
    known = _known_keys()
    keys = (
        [k for k in node if isinstance(k, str) and k not in known] if isinstance(node, dict) else []
    )
    close = difflib.get_close_matches(name, keys, n=1, cutoff=0.75)
    return f"{message} (found {close[0]!r}: did you mean {name!r}?)" if close else message


@functools.cache
def _known_keys() -> frozenset[str]:
    """Every field name the wire models know: a key that is one is no typo."""
    return frozenset(
        info.alias or name
        for model in WireModel.__subclasses__()
        for name, info in model.model_fields.items()
    )


def problems_error(
    what: str, problems: list[tuple[str, str]], error: type[BadInput] = BadInput
) -> BadInput:
    """One error naming each ``(field, problem)``: on one line when there is one, else a
    line each."""
    (path, message), count = problems[0], len(problems)
    if count == 1:
        return error(f"{what}: {path}: {message}", field=path)
    lines = [f"  {p}: {m}" for p, m in problems[:MAX_PROBLEMS]]
    if count > MAX_PROBLEMS:
        lines.append(f"  ... and {count - MAX_PROBLEMS} more")
    return error(f"{what}: {count} problems\n" + "\n".join(lines), field=path)


def oversized(data: Any, size: int, what: str, error: type[BadInput] = BadInput) -> BadInput:
    """The error for a document over the limit: it names the field that makes it so."""
    path = _largest_field(data)
    field = _dig_path(data, path)
    field_size = len(json.dumps(field, separators=(",", ":")))
    return error(
        f"{what}: {path}: {_mb(field_size)}, which makes the document {size} bytes, over the"
        f" {MAX_DOCUMENT_BYTES} byte ({_mb(MAX_DOCUMENT_BYTES)}) limit",
        field=path,
    )


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB" if size >= 100 * 1024 else f"{size / 1024:.1f} KB"


def _dig_path(data: Any, path: str) -> Any:
    """The value at a :func:`field_path` (``install[0].description``)."""
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        data = data[int(index)] if index else data[name]
    return data


def _duplicate_step_names(data: dict[str, Any]) -> list[tuple[str, str]]:
    """``(field, problem)`` for each step named as an earlier one is."""
    steps = data.get("install")
    seen: dict[str, int] = {}
    found = []
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        name = step.get("name") if isinstance(step, dict) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            found.append(
                (
                    f"install[{i}].name",
                    f"duplicate step name {name!r} (also install[{seen[name]}].name)",
                )
            )
        else:
            seen[name] = i
    return found


def _largest_field(data: Any, path: tuple[int | str, ...] = ()) -> str:
    best_path, best_size = path, -1
    items: list[tuple[int | str, Any]]
    if isinstance(data, dict):
        items = list(data.items())
    elif isinstance(data, list):
        items = list(enumerate(data))
    else:
        return field_path(path)
    for key, value in items:
        size = len(json.dumps(value))
        if size > best_size:
            best_path, best_size = (*path, key), size
    if best_size < 0:
        return field_path(path)
    nested = _dig(data, best_path[len(path) :])
    if isinstance(nested, dict | list):
        return _largest_field(nested, best_path)
    return field_path(best_path)


def _dig(data: Any, keys: tuple[int | str, ...]) -> Any:
    for key in keys:
        data = data[key]
    return data
