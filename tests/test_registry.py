"""Registries and connector loading: duplicates, import failures, unresolved names."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ConnectorInvalid
from engine.pytest_plugin import write_connector_folder
from engine.run.functions.resolve import check_functions
from installers import DuplicateFunction, Registry, StepContext, load_connector

from .conftest import EXAMPLE

MANIFEST: dict[str, Any] = {
    "name": "Demo",
    "_connectorId": "demo",
    "version": "1.0.0",
    "install": [{"name": "A", "installerFunction": "installA", "uninstallerFunction": "removeA"}],
}
FUNCTIONS = """
from installers import Registry
registry = Registry("demo")

@registry.function("installA")
async def install_a(ctx):
    return None

@registry.function("removeA")
def remove_a(ctx):
    return None
"""


def write_connector(
    tmp_path: Path, manifest: Any = None, functions: str | None = FUNCTIONS, raw: str | None = None
) -> Path:
    if raw is not None:  # a connector.json that is not a manifest at all
        (tmp_path / "connector.json").write_text(raw)
        if functions is not None:
            (tmp_path / "functions.py").write_text(functions)
        return tmp_path
    return write_connector_folder(tmp_path, manifest or MANIFEST, functions)


def test_duplicate_names_both_places() -> None:
    """Registering a name twice fails, naming both definitions' file and line."""
    registry = Registry("r")

    @registry.function("f")
    def first(ctx: StepContext) -> None: ...

    with pytest.raises(DuplicateFunction) as info:

        @registry.function("f")
        def second(ctx: StepContext) -> None: ...

    message = str(info.value)
    assert message.count("test_registry.py:") == 2
    assert f"test_registry.py:{inspect.getsourcelines(first)[1]} and" in message


def test_function_defaults_to_its_own_name() -> None:
    """@registry.function() without a name registers the function's __name__."""
    registry = Registry("r")

    @registry.function()
    async def verifyThing(ctx: StepContext) -> None: ...

    found = registry.get("verifyThing")
    assert found is not None and found.is_async and len(registry) == 1


def test_loads_a_directory(tmp_path: Path) -> None:
    """connector.json plus functions.py give a manifest and a registry."""
    connector = load_connector(write_connector(tmp_path))
    assert connector.manifest.connector_id == "demo"
    assert {f.name for f in connector.registry} == {"installA", "removeA"}
    check_functions(connector)


def test_functions_py_sees_its_own_file(tmp_path: Path) -> None:
    """functions.py is imported from its file, so __file__ works inside it."""
    code = (
        FUNCTIONS + "\nimport pathlib\nHERE = pathlib.Path(__file__).parent\n"
        "assert (HERE / 'connector.json').exists()\n"
    )
    load_connector(write_connector(tmp_path, functions=code))


def test_functions_as_import_path(tmp_path: Path) -> None:
    """ "functions": "package.module" imports a module found next to the manifest."""
    pkg = tmp_path / "demo_functions_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "steps.py").write_text(FUNCTIONS)
    manifest = {**MANIFEST, "functions": "demo_functions_pkg.steps"}
    connector = load_connector(write_connector(tmp_path, manifest, functions=None))
    assert "installA" in connector.registry


@pytest.mark.parametrize(
    ("raw", "functions", "field", "words"),
    [
        ("{not json", FUNCTIONS, "connector.json", "not valid JSON"),
        (json.dumps({**MANIFEST, "version": 1}), FUNCTIONS, "version", "valid string"),
        (
            json.dumps({**MANIFEST, "install": [MANIFEST["install"][0]] * 2}),
            FUNCTIONS,
            "install[1].name",
            "duplicate",
        ),
        (
            json.dumps({k: v for k, v in MANIFEST.items() if k != "_connectorId"}),
            FUNCTIONS,
            "_connectorId",
            "required",
        ),
        (json.dumps(MANIFEST), "import nothing_here_at_all\n", "functions", "functions.py:1"),
        (json.dumps(MANIFEST), "x = 1\n\ndef broken(:\n", "functions", "functions.py:3"),
        (json.dumps(MANIFEST), "y = 2\n", "functions", "defines no Registry"),
    ],
)
def test_bad_connectors_name_the_field(
    tmp_path: Path, raw: str, functions: str, field: str, words: str
) -> None:
    """Broken manifests and functions modules are ConnectorInvalid (exit 2) naming the field."""
    with pytest.raises(ConnectorInvalid) as info:
        load_connector(write_connector(tmp_path, raw=raw, functions=functions))
    assert info.value.field == field and info.value.exit_code == 2
    assert words in str(info.value)


def test_unknown_function_names_field_and_registry(tmp_path: Path) -> None:
    """A manifest naming a function the registry lacks fails before anything runs."""
    manifest = json.loads(json.dumps(MANIFEST))
    manifest["install"][0]["uninstallerFunction"] = "removeB"
    connector = load_connector(write_connector(tmp_path, manifest))
    with pytest.raises(ConnectorInvalid) as info:
        check_functions(connector)
    assert info.value.field == "install[0].uninstallerFunction"
    assert "removeB" in str(info.value) and "'demo'" in str(info.value)


def test_example_connector_resolves() -> None:
    """The shipped example loads and every function it names is defined."""
    connector = load_connector(EXAMPLE)
    check_functions(connector)
    assert len(connector.manifest.install) == 4
