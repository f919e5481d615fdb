"""The pytest plugin as connector authors get it, the public surface, and the README."""

from __future__ import annotations

import re
import subprocess
import sys

import engine
import installers
import sandbox

from .conftest import EXAMPLE, ROOT, run_pytest


def test_example_connector_tests_pass_with_the_installed_plugin() -> None:
    """The example's own tests run through the pytest11 entry point, with no conftest."""
    out = run_pytest(
        "-o", "addopts=", "--rootdir", str(EXAMPLE), str(EXAMPLE / "test_connector.py"), cwd=EXAMPLE
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout


def isort_key(name: str) -> tuple[int, str]:
    """Ruff's __all__ order (RUF022): CONSTANTS, then Classes, then functions."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_public_names_are_sorted_and_exist() -> None:
    """Each package's __all__ is sorted and every name in it resolves."""
    for module in (engine, installers, sandbox):
        assert module.__all__ == sorted(module.__all__, key=isort_key), module.__name__
        for name in module.__all__:
            assert getattr(module, name) is not None


def test_installers_import_does_not_pull_in_the_runner() -> None:
    """`import installers` stays light: the engine's runner loads only when asked for."""
    code = "import sys, installers; print('engine.drivers.runner' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "False"


def test_readme_opens_with_the_two_commands() -> None:
    """The README's first code block runs the main job, then the tests, on a fresh machine."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", readme, re.S)
    assert block
    commands = [line for line in block.group(1).splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2
    assert "smartconnector install examples/bigcommerce_netsuite" in commands[0]
    assert "pytest" in commands[1]
    assert all(c.startswith("python3 -m venv .venv") for c in commands)
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1].split("&& ")[-1] in ci


def test_docstring_examples_run() -> None:
    """The examples in the public modules' docstrings are executed and hold."""
    import doctest

    from installers import _registry, fakes

    for module in (_registry, fakes):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
