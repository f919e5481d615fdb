"""Fakes for testing connectors and the engine: functions that behave as told and record calls.

>>> connector = FakeConnector(["NetSuite Connection", "Bundle"])
>>> connector.fail("Bundle", times=1)          # its installer raises once, then succeeds
>>> [f.name for f in connector.installers()]
['install NetSuite Connection', 'install Bundle']
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
