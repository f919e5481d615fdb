"""JSON Patch (RFC 6902) and JSON merge patch (RFC 7386) for stored documents."""

from __future__ import annotations

import copy
import re
from typing import Any

import jsonpatch
import jsonpointer

_OPS_NEEDING_VALUE = frozenset({"add", "replace", "test"})
_OPS_NEEDING_FROM = frozenset({"move", "copy"})
_OPS = _OPS_NEEDING_VALUE | _OPS_NEEDING_FROM | {"remove"}


class PatchError(Exception):
    """A patch that cannot be applied; ``status`` is the HTTP answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _check_operations(ops: list[Any]) -> None:
    for i, op in enumerate(ops):
        where = f"operation {i}"
        if not isinstance(op, dict):
            raise PatchError(400, "malformed_request", f"{where}: expected an object")
        name = op.get("op")
        if name not in _OPS:
            raise PatchError(400, "malformed_request", f"{where}: unknown op {name!r}")
        if not isinstance(op.get("path"), str):
            raise PatchError(400, "malformed_request", f"{where}: path must be a string")
        if name in _OPS_NEEDING_VALUE and "value" not in op:
            raise PatchError(400, "malformed_request", f"{where}: {name} needs a value")
        if name in _OPS_NEEDING_FROM and not isinstance(op.get("from"), str):
            raise PatchError(400, "malformed_request", f"{where}: {name} needs from")


def apply_patch(
    doc: dict[str, Any], body: Any, content_type: str, *, in_place: bool = False
) -> dict[str, Any]:
    """Apply ``body`` to ``doc``: an array is a JSON Patch, an object a merge patch.

    ``in_place`` lets a JSON Patch change ``doc`` rather than a deep copy of it, for a
    caller whose ``doc`` is its own and is dropped when the patch fails.
    """
    media = content_type.split(";")[0].strip().lower()
    if isinstance(body, list) and media != "application/merge-patch+json":
        _check_operations(body)
        try:
            result = jsonpatch.JsonPatch(body).apply(doc, in_place=in_place)
        except jsonpatch.JsonPatchTestFailed as exc:
            raise PatchError(409, "conflict", f"test failed: {exc}") from None
        except (jsonpatch.JsonPatchConflict, jsonpointer.JsonPointerException) as exc:
            raise PatchError(409, "conflict", f"cannot apply: {exc}") from None
        except jsonpatch.JsonPatchException as exc:
            raise PatchError(400, "malformed_request", str(exc)) from None
    elif isinstance(body, dict) and media != "application/json-patch+json":
        result = merge_patch(doc, body)
    elif media == "application/json-patch+json":
        raise PatchError(400, "malformed_request", "a JSON Patch is an array of operations")
    else:
        raise PatchError(400, "malformed_request", "expected a JSON Patch array or a merge patch")
    if not isinstance(result, dict):
        raise PatchError(422, "invalid_document", "the patched document is not an object")
    return result


Replacement = tuple[str, list[str], Any]  # the path as given, its reference tokens, the value
_INDEX = re.compile(r"0|[1-9][0-9]*")


def replace_operations(body: Any, content_type: str, fields: frozenset[str]) -> list[Replacement]:
    """The platform's PATCH body, checked whole before anything changes.

    Only a JSON array of ``replace`` operations on ``fields`` (or paths below them) is
    taken; any other op, a merge patch, or another field is a 400 naming what was refused.
    """
    media = content_type.split(";")[0].strip().lower()
    if isinstance(body, dict) or media == "application/merge-patch+json":
        raise PatchError(
            400, "malformed_request", "merge patch is not supported: send a JSON Patch array"
        )
    if not isinstance(body, list):
        raise PatchError(400, "malformed_request", "expected a JSON Patch array of operations")
    return [_replacement(i, op, fields) for i, op in enumerate(body)]


def _replacement(index: int, op: Any, fields: frozenset[str]) -> Replacement:
    where = f"operation {index}"
    if not isinstance(op, dict):
        raise PatchError(400, "malformed_request", f"{where}: expected an object")
    if op.get("op") != "replace":
        raise PatchError(
            400, "malformed_request", f"{where}: op {op.get('op')!r} is not supported, only replace"
        )
    path = op.get("path")
    if not isinstance(path, str):
        raise PatchError(400, "malformed_request", f"{where}: path must be a string")
    if "value" not in op:
        raise PatchError(400, "malformed_request", f"{where}: replace needs a value")
    try:
        parts = jsonpointer.JsonPointer(path).parts
    except jsonpointer.JsonPointerException as exc:
        raise PatchError(400, "malformed_request", f"{where}: path {path!r}: {exc}") from None
    if not parts or parts[0] not in fields:
        raise PatchError(
            400,
            "malformed_request",
            f"{where}: path {path!r} cannot be replaced;"
            f" only {', '.join(sorted(fields))} and paths under them",
        )
    return path, parts, op["value"]


def apply_replacements(doc: dict[str, Any], replacements: list[Replacement]) -> dict[str, Any]:
    """Apply checked ``replace`` operations to ``doc`` in place, in order.

    Unlike RFC 6902, and as the platform does, a replace of a missing key under an existing
    object sets it; a path through a missing parent, or an array index out of range, is 400.
    """
    for index, (path, parts, value) in enumerate(replacements):
        parent: Any = doc
        try:
            for part in parts[:-1]:
                parent = _child(parent, part)
            last = parts[-1]
            if isinstance(parent, list):
                _child(parent, last)  # an element that is there
                parent[int(last)] = value
            elif isinstance(parent, dict):
                parent[last] = value
            else:
                raise LookupError(last)
        except LookupError as exc:
            raise PatchError(
                400,
                "malformed_request",
                f"operation {index}: path {path!r} does not exist: no {exc.args[0]!r} there",
            ) from None
    return doc


def _child(container: Any, part: str) -> Any:
    if isinstance(container, dict) and part in container:
        return container[part]
    if isinstance(container, list) and _INDEX.fullmatch(part) and int(part) < len(container):
        return container[int(part)]
    raise LookupError(part)
