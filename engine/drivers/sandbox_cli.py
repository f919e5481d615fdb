"""``smartconnector sandbox …``: serving the sandbox API and creating its tokens."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from engine.errors import BadInput

if TYPE_CHECKING:
    import socket

    from sandbox import AccessLog


def parse_scopes(scopes: str) -> list[str]:
    from sandbox import KNOWN_SCOPES

    wanted = [s for s in scopes.replace(",", " ").split() if s]
    if not wanted:
        raise BadInput("--scopes: give at least one scope", field="--scopes")
    unknown = [s for s in wanted if s not in KNOWN_SCOPES]
    if unknown:
        raise BadInput(
            f"--scopes: unknown scope(s) {', '.join(unknown)};"
            f" known: {', '.join(sorted(KNOWN_SCOPES))}",
            field="--scopes",
        )
    return wanted


def create_token(db: Path, scopes: str) -> str:
    from sandbox import Store

    wanted = parse_scopes(scopes)
    store = Store(db)
    try:
        return store.create_token(wanted, label="cli")
    finally:
        store.close()


def serve(
    *,
    host: str,
    listening: socket.socket,
    db: Path,
    faults: str | None,
    seed: int | None,
    fault_delay: float,
    rate: float,
    burst: float,
    profile: str | None = None,
) -> None:
    from engine.drivers.config import sandbox_profile
    from sandbox import AccessLog, FaultInjector, Store, create_app

    served = sandbox_profile(profile, "--profile")
    fault_table = _fault_table(faults)
    log = structlog.get_logger("smartconnector.sandbox")
    asgi = create_app(Store(db), rate=rate, burst=burst, profile=served)
    wrapped = (
        FaultInjector(asgi, fault_table, seed=seed, delay=fault_delay) if fault_table else asgi
    )
    log.info(
        "sandbox listening",
        url=f"http://{host}:{listening.getsockname()[1]}/v1",
        db=str(db),
        faults=fault_table,
        profile=served,
    )
    _listen(AccessLog(wrapped, log.info), listening)


def _fault_table(faults: str | None) -> dict[str, float]:
    """``--faults`` parsed (none when not given), or a usage error naming the option."""
    from sandbox import FaultSpecError, parse_faults

    try:
        return parse_faults(faults) if faults else {}
    except FaultSpecError as exc:
        raise BadInput(str(exc), field="--faults") from None


def _listen(app: AccessLog, listening: socket.socket) -> None:
    """Serve ``app`` on the socket the command claimed (a bad port was refused there)."""
    import uvicorn

    served = uvicorn.Config(
        app,
        access_log=False,
        log_level="warning",
        lifespan="off",
        proxy_headers=False,  # loopback, no proxy in front: nothing to trust
    )
    uvicorn.Server(served).run(sockets=[listening])
