"""The layers: leaves ← the connector author's API ← drivers, and nothing imports upward."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import ROOT

#: The leaves: engine's modules at the top of its folder (the public ones users import, the
#: package's entry points aside), and its telemetry.
ENTRY_POINTS = {"__init__", "__main__", "pytest_plugin"}
LEAVES = [
    *sorted(
        f"engine.{p.stem}" for p in (ROOT / "engine").glob("*.py") if p.stem not in ENTRY_POINTS
    ),
    "engine.telemetry",
]
#: One integration's run: every module in engine/run/.
RUN = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts)
    for p in (ROOT / "engine" / "run").rglob("[!_]*.py")
)
AUTHOR = ["installers", "installers.fakes", "installers.remote"]
#: What drives runs: the engine and its executors, the fleet, the CLI, the page, Temporal.
DRIVERS = (
    "engine.drivers",
    "engine.fleet",
    "engine.cli",
    "engine.ui",
    "engine.temporal",
    "engine.check",
    "engine.pytest_plugin",
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


def test_the_layers_are_found_in_their_folders() -> None:
    assert "engine.errors" in LEAVES and "engine.client" in LEAVES
    assert "engine.run.plan" in RUN and "engine.run.integration" in RUN
    assert "engine.run.functions.caller" in RUN


@pytest.mark.parametrize("leaf", LEAVES)
def test_a_leaf_imports_no_other_layer(leaf: str) -> None:
    """Models, errors and the client import neither the author's API, the run nor any
    driver."""
    loaded = imported_by(leaf)
    assert ours(loaded, ("installers", "engine.run")) == []
    assert ours(loaded, DRIVERS) == []


@pytest.mark.parametrize("module", RUN)
def test_the_run_imports_no_driver(module: str) -> None:
    """engine/run/ (plan, progress, the run, its writes and calls) imports the leaves and the
    author's API, never what drives it."""
    assert ours(imported_by(module), DRIVERS) == []


@pytest.mark.parametrize("module", AUTHOR)
def test_the_authors_api_imports_only_leaves(module: str) -> None:
    """`installers` (registry, context, fakes, remote functions) pulls in no driver and no
    part of the run."""
    assert ours(imported_by(module), (*DRIVERS, "engine.run")) == []


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
