"""`smartconnector doctor` and `plan ID`, from outside, on each profile of a real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import EXAMPLE, Server, free_port, run_cli, start_server

WAYS = {"default": "json-patch-test", "platform": "replace-only", "put-only": "put-only"}


@pytest.fixture(scope="module", params=list(WAYS))
def profiled(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A sandbox server of each profile."""
    srv = start_server(tmp_path_factory.mktemp(request.param), "--profile", request.param)
    srv.profile = request.param  # type: ignore[attr-defined]
    yield srv
    srv.stop()


def env_for(server: Server, token: str | None = None) -> dict[str, str]:
    return {
        "SMARTCONNECTOR_API_URL": server.url,
        "SMARTCONNECTOR_API_TOKEN": token or server.token(),
    }


def test_doctor_tells_each_profiles_write_way_and_changes_nothing(
    profiled: Server, tmp_path: Path
) -> None:
    """The profile's way, found by a probe in a fresh home without changing a document."""
    env = env_for(profiled)
    profile = profiled.profile  # type: ignore[attr-defined]
    installed = run_cli("install", str(EXAMPLE), home=tmp_path, env=env)
    assert installed.returncode == 0, installed.stderr
    integration_id = installed.stdout.strip().splitlines()[-1]
    before = run_cli("status", integration_id, "--json", home=tmp_path, env=env).stdout
    out = run_cli("doctor", "--json", home=tmp_path / "fresh", env=env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["api"]["writes"] == WAYS[profile]
    assert report["api"]["exclusive_runs"] == ("guaranteed" if profile == "default" else "advisory")
    assert report["api"]["reachable"] and report["api"]["authenticated"]
    assert report["extension"] is None and report["temporal"] is None
    assert report["home"]["writable"] is True
    after = run_cli("status", integration_id, "--json", home=tmp_path, env=env).stdout
    assert after == before
    text = run_cli("doctor", home=tmp_path / "fresh", env=env)
    assert WAYS[profile] in text.stdout and "problem" not in text.stdout


def test_doctor_on_an_empty_api_says_unknown(tmp_path: Path) -> None:
    """With no integration to probe, the way is unknown until the first run."""
    srv = start_server(tmp_path, "--profile", "platform")
    try:
        out = run_cli("doctor", "--json", home=tmp_path / "home", env=env_for(srv))
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["api"]["writes"] == "unknown"
    finally:
        srv.stop()


def test_doctor_exit_codes(profiled: Server, tmp_path: Path) -> None:
    """3 for a refused token, 5 for an API that does not answer or a URL without /v1."""
    refused = run_cli("doctor", home=tmp_path, env=env_for(profiled, "not-a-token"))
    assert refused.returncode == 3 and "refused the token" in refused.stdout
    gone = {**env_for(profiled), "SMARTCONNECTOR_API_URL": f"http://127.0.0.1:{free_port()}/v1"}
    unreachable = run_cli("doctor", "--json", home=tmp_path, env=gone, timeout=30)
    assert unreachable.returncode == 5
    assert json.loads(unreachable.stdout)["api"]["reachable"] is False
    root = {**env_for(profiled), "SMARTCONNECTOR_API_URL": profiled.url.removesuffix("/v1")}
    no_version = run_cli("doctor", home=tmp_path, env=root)
    assert no_version.returncode == 5 and "/v1" in no_version.stdout
    assert "Traceback" not in refused.stderr + unreachable.stderr + no_version.stderr


def test_plan_of_an_integration_shows_what_uninstall_would_do(
    profiled: Server, tmp_path: Path
) -> None:
    """plan ID --uninstall lists the uninstallers in reverse, read from the API, changing
    nothing; plan ID of an installed integration has nothing to do."""
    env = env_for(profiled)
    installed = run_cli("install", str(EXAMPLE), home=tmp_path, env=env)
    integration_id = installed.stdout.strip().splitlines()[-1]
    out = run_cli("plan", integration_id, "--uninstall", "--json", home=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    actions = json.loads(out.stdout)
    assert [a["step"] for a in actions if a["function"]] == [
        "BigCommerce Bundle",
        "Integrator Bundle",
        "BigCommerce Connection",
        "NetSuite Connection",
    ]
    assert actions[0]["action"] == "mode" and actions[-1]["action"] == "delete"
    resume = run_cli("plan", integration_id, home=tmp_path, env=env)
    assert resume.returncode == 0 and "nothing to do" in resume.stdout
    status = json.loads(run_cli("status", integration_id, "--json", home=tmp_path, env=env).stdout)
    assert status["mode"] == "settings"
