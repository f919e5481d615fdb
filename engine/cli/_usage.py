"""Usage checks made before anything runs: each answers with one line saying what to do."""

from __future__ import annotations

import errno
import re
import socket
from pathlib import Path

#: What a base URL looks like, for the messages that ask for one.
EXAMPLE_URL = "http://127.0.0.1:8700/v1"
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_VERSIONED = re.compile(r"/v\d+/?$")


def api_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be an API base URL, or ``None`` when it can."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        return f"{url!r} is not a valid URL ({exc})"
    if parsed.scheme not in ("http", "https"):
        guess = f" (did you mean http://{url}?)" if parsed.scheme and not parsed.host else ""
        return f"{url!r} is not an http(s) URL{guess}"
    host = parsed.host
    if not host:
        return f"{url!r} names no host"
    if ":" not in host and not _HOST.fullmatch(host):  # IPv6 addresses hold colons
        return f"{url!r} names no valid host ({host!r})"
    if parsed.port is not None and not 0 < parsed.port < 65536:
        return f"{url!r} has no valid port ({parsed.port})"
    return None


def api_options_problem(api_url: str | None, token_file: Path | None) -> str | None:
    """``--api-url`` must be an http(s) URL with a valid host, and ``--token-file`` is for it
    alone (the embedded sandbox makes its own token); ``None`` when both are usable."""
    problem = api_url_problem(api_url) if api_url else None
    if problem:
        return (
            f"--api-url (or SMARTCONNECTOR_API_URL): {problem}; give the API's base URL with"
            f" its version, as in {EXAMPLE_URL}"
        )
    if token_file is not None and not api_url:
        return (
            "--token-file is for a server given with --api-url; the embedded sandbox makes its"
            " own token, so drop --token-file or add --api-url URL"
        )
    return None


def versioned(url: str) -> bool:
    """Whether a base URL ends in its API version (``/v1``), as the platform's do."""
    import httpx

    return _VERSIONED.search(httpx.URL(url).path) is not None


def unreachable_hint(url: str) -> str:
    """What to check when the API at ``url`` did not answer (exit 5)."""
    if not versioned(url):
        return version_hint(url)
    return f"check --api-url {url}: is the server up, and are its host and port right?"


def version_hint(url: str) -> str:
    """What to check when the API at ``url`` did not answer as an API would."""
    return (
        f"check --api-url {url}: the base URL must include the version path (/v1),"
        f" as in {EXAMPLE_URL}"
    )


def claim_port(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or :class:`OSError` with a message saying what
    to do; taken before anything is printed, so a busy port prints no URL."""
    if not 0 <= port <= 65535:  # else the socket module raises OverflowError, not OSError
        raise OSError(
            errno.EINVAL, f"port {port} is out of range; pass --port from 0 (any free one) to 65535"
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            message = f"port {port} on {host} is taken; pass --port with a free one"
        elif exc.errno == errno.EACCES:
            message = f"port {port} on {host} needs privileges; pass --port above 1023"
        else:
            message = f"cannot serve on {host}:{port}: {exc.strerror or exc}; check --host"
        raise OSError(exc.errno, message) from None


def claimed(host: str, port: int) -> socket.socket:
    """A server's listening socket, taken before its URL is printed: exit 2 with one line
    when it cannot be (a port taken, out of range, or needing privileges)."""
    from engine.cli._app import fail

    try:
        return claim_port(host, port)
    except OSError as exc:
        fail(exc.strerror or str(exc), 2)
