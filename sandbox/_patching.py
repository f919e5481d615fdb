"""JSON Patch (RFC 6902) and JSON merge patch (RFC 7386) for stored documents."""

from __future__ import annotations

import copy
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


def apply_patch(doc: dict[str, Any], body: Any, content_type: str) -> dict[str, Any]:
    """Apply ``body`` to ``doc``: an array is a JSON Patch, an object a merge patch."""
    media = content_type.split(";")[0].strip().lower()
    if isinstance(body, list) and media != "application/merge-patch+json":
        _check_operations(body)
        try:
            result = jsonpatch.JsonPatch(body).apply(doc)
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
