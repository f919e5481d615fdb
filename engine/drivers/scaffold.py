"""``smartconnector new``: a connector folder that installs and passes its own test as written."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any

from engine.errors import BadInput

TEMPLATES = Path(__file__).parent / "templates"


def title_of(folder: Path) -> str:
    """A connector name from its folder's: ``acme_netsuite`` → ``Acme Netsuite``."""
    words = re.split(r"[\s_\-.]+", folder.resolve().name)
    return " ".join(w[:1].upper() + w[1:] for w in words if w) or "My Connector"


def manifest_of(name: str) -> dict[str, Any]:
    """The new connector's connector.json: one step, an update, nobody asked by default."""
    return {
        "name": name,
        "_connectorId": secrets.token_hex(12),
        "version": "1.0.0",
        "updateFunction": "update",
        "install": [
            {
                "name": "Connection",
                "description": f"Connect {name} to the account",
                "imageURL": "",
                "installerFunction": "connect",
                "uninstallerFunction": "disconnect",
            }
        ],
        "settings": {"sections": [], "commonresources": {}, "askForCredentials": False},
        "functions": "functions.py",
    }


def new_connector(folder: Path, name: str | None = None) -> list[Path]:
    """Write connector.json, functions.py and test_connector.py into ``folder``.

    ``folder`` may exist only as an empty directory; anything else is refused and nothing
    is written. Returns the files written.
    """
    if folder.exists() and not folder.is_dir():
        raise BadInput(f"{folder} is a file, not a folder for a new connector", field="DIR")
    if folder.is_dir() and any(folder.iterdir()):
        raise BadInput(
            f"{folder} exists and is not empty; choose a new folder (nothing was written)",
            field="DIR",
        )
    name = name if name is not None else title_of(folder)
    if not name.strip():
        raise BadInput("--name must not be empty", field="--name")
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "connector"
    env = slug.replace("-", "_").upper()
    fields = {
        "name": name,
        "name_literal": json.dumps(name, ensure_ascii=False),
        "slug": slug,
        "folder": str(folder),
        "env": env,
    }
    files = {
        "connector.json": json.dumps(manifest_of(name), indent=2) + "\n",
        "functions.py": (TEMPLATES / "functions.py.txt").read_text().format(**fields),
        "test_connector.py": (TEMPLATES / "test_connector.py.txt").read_text().format(**fields),
    }
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, text in files.items():
        (folder / filename).write_text(text)
        written.append(folder / filename)
    return written
