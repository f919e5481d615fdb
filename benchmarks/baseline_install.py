"""The least HTTP an N-step install needs: one POST, one PATCH per step, one PATCH of the mode.

Plain httpx over one connection, no validation, no journal, no lease: the floor the engine's
overhead is measured against. Like the CLI, it freezes its objects before exiting, so neither
pays for the interpreter's last full garbage collection. ``--async`` does the same with
``httpx.AsyncClient`` on asyncio, as the engine does (the cost of async httpx, on its own).

Usage: python baseline_install.py API_URL N [--async]   (token on stdin)
"""

from __future__ import annotations

import gc
import sys
from typing import Any

import httpx


def document(steps: int) -> dict[str, Any]:
    return {
        "name": "baseline",
        "_connectorId": "bench",
        "version": "1",
        "mode": "install",
        "install": [
            {
                "name": f"s{i}",
                "installerFunction": "noop",
                "uninstallerFunction": "noop",
                "completed": False,
            }
            for i in range(steps)
        ],
    }


def patches(steps: int) -> list[list[dict[str, Any]]]:
    marks = [
        [{"op": "replace", "path": f"/install/{i}/completed", "value": True}] for i in range(steps)
    ]
    return [*marks, [{"op": "replace", "path": "/mode", "value": "settings"}]]


def run_sync(api_url: str, steps: int, headers: dict[str, str]) -> str:
    patch_headers = {**headers, "Content-Type": "application/json-patch+json"}
    with httpx.Client(base_url=api_url) as http:
        created = http.post("/integrations", json=document(steps), headers=headers)
        path = f"/integrations/{created.raise_for_status().json()['_id']}"
        for ops in patches(steps):
            http.patch(path, headers=patch_headers, json=ops).raise_for_status()
    return path


async def run_async(api_url: str, steps: int, headers: dict[str, str]) -> str:
    patch_headers = {**headers, "Content-Type": "application/json-patch+json"}
    async with httpx.AsyncClient(base_url=api_url) as http:
        created = await http.post("/integrations", json=document(steps), headers=headers)
        path = f"/integrations/{created.raise_for_status().json()['_id']}"
        for ops in patches(steps):
            (await http.patch(path, headers=patch_headers, json=ops)).raise_for_status()
    return path


def main() -> None:
    api_url, steps = sys.argv[1], int(sys.argv[2])
    headers = {"Authorization": f"Bearer {sys.stdin.readline().strip()}"}
    if "--async" in sys.argv[3:]:
        import asyncio

        path = asyncio.run(run_async(api_url, steps, headers))
    else:
        path = run_sync(api_url, steps, headers)
    print(path.rsplit("/", 1)[-1])
    gc.freeze()


if __name__ == "__main__":
    main()
