"""The layers: leaves ← the connector author's API ← drivers, and nothing imports upward."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import ROOT

LEAVES = ["engine.errors", "engine.modes", "engine.models", "engine.client", "engine.telemetry"]
AUTHOR = ["installers", "installers.fakes", "installers.remote"]
DRIVERS = (
    "engine.runner",
    "engine.run",
    "engine.calling",
    "engine.plan",
    "engine.cli",
    "engine.temporal",
    "engine.rollout",
    "engine.pytest_plugin",
    "engine.extension_server",
    "engine.journal",
    "sandbox",
    "fastapi",
    "temporalio",
)


def imported_by(module: str) -> set[str]:
    """The modules a fresh interpreter holds after ``import module``."""
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return set(json.loads(out.stdout))


def ours(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    """The modules that are one of ``packages`` or inside one."""
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


@pytest.mark.parametrize("leaf", LEAVES)
def test_a_leaf_imports_no_other_layer(leaf: str) -> None:
    """Models, errors and the client import neither the author's API nor any driver."""
    loaded = imported_by(leaf)
    assert ours(loaded, ("installers",)) == []
    assert ours(loaded, DRIVERS) == []


@pytest.mark.parametrize("module", AUTHOR)
def test_the_authors_api_imports_only_leaves(module: str) -> None:
    """`installers` (registry, context, fakes, remote functions) pulls in no driver."""
    assert ours(imported_by(module), DRIVERS) == []


def test_engine_names_are_listed_once_and_typed_the_same() -> None:
    """``engine``'s lazy table and its type-checking imports name the same things."""
    import ast

    import engine

    tree = ast.parse((ROOT / "engine" / "__init__.py").read_text())
    typed = {
        alias.name: f"{node.module}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("engine.")
        for alias in node.names
    }
    assert typed == engine._LAZY
    assert engine.__all__ == sorted(engine._LAZY)
