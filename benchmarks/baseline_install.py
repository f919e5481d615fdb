"""The least HTTP an N-step install needs: one POST, one PATCH per step, one PATCH of the mode.

Plain httpx over one connection, no validation, no journal, no lease: the floor the engine's
overhead is measured against. Usage: python baseline_install.py API_URL N (token on stdin).
"""

from __future__ import annotations

import sys

import httpx


def main() -> None:
    api_url, steps = sys.argv[1], int(sys.argv[2])
    token = sys.stdin.readline().strip()
    headers = {"Authorization": f"Bearer {token}"}
    patch = {**headers, "Content-Type": "application/json-patch+json"}
    doc = {
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
    with httpx.Client(base_url=api_url) as http:
        created = http.post("/integrations", json=doc, headers=headers).raise_for_status().json()
        path = f"/integrations/{created['_id']}"
        for i in range(steps):
            http.patch(
                path,
                headers=patch,
                json=[{"op": "replace", "path": f"/install/{i}/completed", "value": True}],
            ).raise_for_status()
        http.patch(
            path, headers=patch, json=[{"op": "replace", "path": "/mode", "value": "settings"}]
        ).raise_for_status()
    print(created["_id"])


if __name__ == "__main__":
    main()
