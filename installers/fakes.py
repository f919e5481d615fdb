"""Fakes for testing connectors and the engine: functions that behave as told and record calls.

>>> connector = FakeConnector(["NetSuite Connection", "Bundle"])
>>> connector.fail("Bundle", times=1)          # its installer raises once, then succeeds
>>> [f.name for f in connector.installers()]
['install NetSuite Connection', 'install Bundle']
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonpatch
import jsonpointer

from engine.models import ConnectorManifest
from installers._loading import Connector
from installers._registry import Registry
from installers._types import StepContext, StepResult, UserActionRequired

#: Given the call number (1 for the first), return a result or raise.
Behaviour = Callable[[int], Any]


class FakeFailure(RuntimeError):
    """What a failing fake raises unless told otherwise."""


def succeeds(result: StepResult | dict[str, Any] | None = None) -> Behaviour:
    return lambda call: result


def fails(times: int | None = None, error: Exception | None = None) -> Behaviour:
    """Raise on the first ``times`` calls (every call if ``None``), then succeed."""

    def behave(call: int) -> None:
        if times is None or call <= times:
            raise error or FakeFailure(f"fake failure (call {call})")

    return behave


def waits_for_user(message: str, url: str | None = None, times: int = 1) -> Behaviour:
    """Raise :class:`UserActionRequired` on the first ``times`` calls, then succeed."""

    def behave(call: int) -> None:
        if call <= times:
            raise UserActionRequired(message, url)

    return behave


@dataclass
class FakeFunction:
    """An async connector function that records every context it is called with."""

    name: str
    behaviour: Behaviour = field(default_factory=succeeds)
    delay: float = 0.0
    calls: list[StepContext] = field(default_factory=list)
    successes: int = 0

    async def __call__(self, ctx: StepContext) -> Any:
        self.calls.append(ctx)
        if self.delay:
            await asyncio.sleep(self.delay)
        result = self.behaviour(len(self.calls))
        self.successes += 1
        return result


class FakeConnector:
    """A connector whose every function is a :class:`FakeFunction`, built in memory."""

    def __init__(
        self,
        steps: list[str] | int,
        *,
        connector_id: str = "fake-connector",
        version: str = "1.0.0",
        connector_functions: bool = False,
        extra_functions: tuple[str, ...] = (),
    ) -> None:
        """``connector_functions`` adds installer, preUninstall and uninstaller functions;
        ``extra_functions`` names more manifest keys (``updateFunction``,
        ``persistSettingsFunction``), each given a fake of that name."""
        names = [f"step {i + 1}" for i in range(steps)] if isinstance(steps, int) else steps
        self.registry = Registry(f"fake {connector_id}")
        self.functions: dict[str, FakeFunction] = {}
        self.steps = names
        self.manifest_data: dict[str, Any] = {
            "name": f"Fake {connector_id}",
            "_connectorId": connector_id,
            "version": version,
            "install": [
                {
                    "name": name,
                    "description": f"fake step {name}",
                    "installerFunction": self._add(f"install {name}"),
                    "uninstallerFunction": self._add(f"uninstall {name}"),
                }
                for name in names
            ],
            "settings": {"sections": []},
        }
        keys = ("installerFunction", "preUninstallFunction", "uninstallerFunction")
        for key in (*(keys if connector_functions else ()), *extra_functions):
            self.manifest_data[key] = self._add(key)

    def _add(self, name: str) -> str:
        self.functions[name] = fake = FakeFunction(name)
        self.registry.add(name, fake)
        return name

    def installer(self, step: str) -> FakeFunction:
        return self.functions[f"install {step}"]

    def uninstaller(self, step: str) -> FakeFunction:
        return self.functions[f"uninstall {step}"]

    def installers(self) -> list[FakeFunction]:
        return [self.installer(s) for s in self.steps]

    def fail(self, step: str, times: int | None = None) -> None:
        self.installer(step).behaviour = fails(times)

    def connector(self, directory: Path | None = None) -> Connector:
        manifest = ConnectorManifest.model_validate(self.manifest_data)
        where = directory or Path(f"<fake {manifest.connector_id}>")
        return Connector(manifest, self.registry, where, str(where))


class MemoryApi:
    """An in-memory stand-in for :class:`engine.ApiClient`: same methods, no HTTP.

    Documents get ``_id`` and ``lastModified`` as on the platform; JSON Patch ``test``
    failures raise the same :class:`engine.Conflict`. A write stores a new document and
    never changes a stored one, so what a read returns may be shared: do not mutate it.
    For measuring the engine alone and for tests that need no server.
    """

    def __init__(self) -> None:
        from engine.writes import WriteWay, WriteWays

        self.base_url = "memory://api/v1"
        self.public_url: str | None = None
        #: Like the sandbox, it takes JSON Patch with ``test`` and keeps every field.
        self.writes = WriteWays(self.base_url, forced=WriteWay.JSON_PATCH_TEST)
        #: Calls it answered: what a test counts of the engine's requests.
        self.requests_sent = 0
        self._docs: dict[str, dict[str, dict[str, Any]]] = {}
        self._state: dict[tuple[str | None, str | None], dict[str, Any]] = {}
        self._ids = itertools.count(1)

    def bearer_token(self) -> str:
        return "memory-token"

    def _missing(self, method: str, resource: str, id: str) -> Exception:
        from engine.errors import NotFound

        return NotFound(
            f"{method} /{resource}/{id} → 404", method=method, path=f"/{resource}/{id}", status=404
        )

    def _stamp(self, doc: dict[str, Any], id: str) -> dict[str, Any]:
        return {**doc, "_id": id, "lastModified": f"{next(self._ids):020d}"}

    async def create(
        self, resource: str, doc: dict[str, Any], *, repeatable: bool | None = None
    ) -> dict[str, Any]:
        self.requests_sent += 1
        stored = self._stamp(copy.deepcopy(doc), f"{next(self._ids):024x}")
        self._docs.setdefault(resource, {})[stored["_id"]] = stored
        return stored

    async def get(self, resource: str, id: str) -> dict[str, Any]:
        self.requests_sent += 1
        if id not in self._docs.get(resource, {}):
            raise self._missing("GET", resource, id)
        return copy.deepcopy(self._docs[resource][id])

    async def list(self, resource: str, **filters: str) -> list[dict[str, Any]]:
        self.requests_sent += 1
        return [
            copy.deepcopy(d)
            for d in self._docs.get(resource, {}).values()
            if all(str(d.get(k)) == v for k, v in filters.items())
        ]

    async def pages(
        self, resource: str, **filters: str
    ) -> AsyncIterator[builtins.list[dict[str, Any]]]:
        """As the client's: here every page is the whole list."""
        yield await self.list(resource, **filters)

    async def page(
        self, resource: str, cursor: str | None = None, **filters: str
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        """As the client's: one page, the whole list."""
        return await self.list(resource, **filters), None

    async def replace(self, resource: str, id: str, doc: dict[str, Any]) -> dict[str, Any]:
        self.requests_sent += 1
        if id not in self._docs.get(resource, {}):
            raise self._missing("PUT", resource, id)
        self._docs[resource][id] = self._stamp(copy.deepcopy(doc), id)
        return copy.deepcopy(self._docs[resource][id])

    async def patch(self, resource: str, id: str, ops: Any) -> dict[str, Any]:
        from engine.errors import Conflict

        self.requests_sent += 1
        if id not in self._docs.get(resource, {}):
            raise self._missing("PATCH", resource, id)
        current = self._docs[resource][id]
        try:  # the same RFC 6902 library as the sandbox
            patched = (
                _merge(current, ops)
                if isinstance(ops, dict)
                else jsonpatch.apply_patch(current, ops)
            )
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            raise Conflict(
                f"PATCH /{resource}/{id} → 409: {exc}",
                method="PATCH",
                path=f"/{resource}/{id}",
                status=409,
            ) from None
        self._docs[resource][id] = self._stamp(patched, id)
        return self._docs[resource][id]

    async def replace_applied(self, resource: str, id: str, doc: dict[str, Any]) -> dict[str, Any]:
        return await self.replace(resource, id, doc)

    async def patch_applied(self, resource: str, id: str, ops: Any) -> dict[str, Any]:
        return await self.patch(resource, id, ops)

    async def patch_status(self, resource: str, id: str, ops: Any) -> int:
        from engine.errors import ApiError

        try:
            await self.patch(resource, id, ops)
        except ApiError as exc:
            return exc.status or 400
        return 200

    async def delete(self, resource: str, id: str) -> None:
        self.requests_sent += 1
        if self._docs.get(resource, {}).pop(id, None) is None:
            raise self._missing("DELETE", resource, id)
        self._state.pop((resource, id), None)

    # -- the State API, as the sandbox keeps it -------------------------------------------

    def _state_of(self, method: str, resource: str | None, id: str | None) -> dict[str, Any]:
        self.requests_sent += 1
        if resource is not None and id not in self._docs.get(resource, {}):
            raise self._missing(method, resource, str(id))
        return self._state.setdefault((resource, id), {})

    async def state_keys(
        self, *, resource: str | None = None, id: str | None = None
    ) -> builtins.list[str]:
        return sorted(self._state_of("GET", resource, id))

    async def get_state(
        self, key: str, *, resource: str | None = None, id: str | None = None
    ) -> Any:
        kept = self._state_of("GET", resource, id)
        if key not in kept:
            raise self._missing("GET", "state", key)
        return copy.deepcopy(kept[key])

    async def put_state(
        self, key: str, value: Any, *, resource: str | None = None, id: str | None = None
    ) -> None:
        self._state_of("PUT", resource, id)[key] = copy.deepcopy(value)

    async def delete_state(
        self, key: str, *, resource: str | None = None, id: str | None = None
    ) -> None:
        if self._state_of("DELETE", resource, id).pop(key, None) is None:
            raise self._missing("DELETE", "state", key)


def _merge(doc: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 merge patch, copying only what changes."""
    merged = dict(doc)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
