"""Serving the MCP tools over streamable HTTP, behind a bearer token.

Anyone who can reach the port could otherwise submit, predict and delete, and read back cell values of
any file the server can read through error messages. So by default every request must carry
`Authorization: Bearer <token>`: the token is read from a file only its owner may read (mode 0600),
generated there on first use. A bind to an address other than loopback needs the token; only a loopback
server may be started without one, and it says so.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from pathlib import Path
from typing import Any

from mcp_trainer.secretfile import SecretFileError, ensure_secret, load_or_create_secret

__all__ = ["BearerToken", "TokenFileError", "ensure_token", "is_loopback", "load_or_create_token"]

log = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


TokenFileError = SecretFileError  # the token file cannot be used; the message says why and how to fix it


def is_loopback(host: str) -> bool:
    """Whether `host` names only this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_or_create_token(path: Path) -> str:
    """The token in `path`, created (random, mode 0600) when the file does not exist.

    Raises TokenFileError for a file that is a link, not a regular file, readable or writable by others,
    owned by another user, or empty."""
    return load_or_create_secret(path, "token")


def ensure_token(path: Path) -> tuple[str, bool]:
    """`load_or_create_token`, saying whether this call generated the token (True) or read it (False)."""
    return ensure_secret(path, "token")


class BearerToken:
    """ASGI middleware: an HTTP request without `Authorization: Bearer <token>` gets 401 and goes no
    further. The comparison takes the same time whatever the guess. A GET of one of the `public` paths
    (the dashboard's page, which holds no data and asks for the token itself) needs none."""

    def __init__(self, app: ASGIApp, token: str, public: Collection[str] = ()) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()
        self._public = frozenset(public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan messages pass through
            await self.app(scope, receive, send)
            return
        if scope.get("method") in ("GET", "HEAD") and scope.get("path") in self._public:
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope.get("headers") or []:
            if name.lower() == b"authorization":
                given = value
        if hmac.compare_digest(given, self._expected):
            await self.app(scope, receive, send)
            return
        body = (
            b'{"error": "unauthorized", "message": "Send Authorization: Bearer <token> (see --token-file)."}'
        )
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b'Bearer realm="mcp-trainer"'),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
