"""Only this app's own page, or a script, may make the server do something: no other site can.

A browser lets any page it shows send requests to 127.0.0.1: a form posted to /api/prompts, a `text/plain`
"JSON" body posted to /api/compose, a websocket to /stream. None of those need a CORS preflight, so the
server itself must refuse them. Every request that changes state (any method but GET, HEAD and OPTIONS)
and every websocket is refused (403, or close code 1008) when

- its `Origin` header names another site than the address it was sent to (browsers send it with every
  POST and websocket), or is "null" (a sandboxed frame, a file:// page);
- its `Sec-Fetch-Site` header says `cross-site` or `same-site` (a browser's own word for where it came from);
- it is sent to a server bound to a loopback address under a host name that is not a loopback one
  (`Host: evil.example:8000`): a DNS-rebinding page is same-origin with itself, not with us. This one holds
  for every request, reads included.

Scripts (curl, Python) send none of those headers and are served. JSON bodies must say
`Content-Type: application/json` (415 otherwise), which no cross-site form can. The server sends no CORS
headers, so no other site can read an answer either.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
ALLOWED_FETCH_SITES = {"same-origin", "none"}

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hostname(netloc: str) -> str:
    return urlsplit(f"//{netloc}").hostname or ""


def refusal(scope: Scope, *, changes_state: bool) -> str | None:
    """Why this request must be refused, or None."""
    headers = _headers(scope)
    host = headers.get("host", "")
    server = scope.get("server") or ("", 0)
    if _is_loopback(str(server[0])) and not _is_loopback(_hostname(host)):
        return f"this server answers only to its loopback address, not to the host name {host[:80]!r}"
    if not changes_state:
        return None
    origin = headers.get("origin")
    if origin is not None:
        parts = urlsplit(origin)
        if origin == "null" or parts.netloc.lower() != host.lower():
            return f"requests from another site ({origin[:80]}) are refused; use this server's own page"
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ALLOWED_FETCH_SITES:
        return f"requests from another site ({site}) are refused; use this server's own page"
    return None


def websocket_refusal(websocket: Any) -> str | None:
    return refusal(websocket.scope, changes_state=True)


class SameOriginMiddleware:
    """Refuses, with 403 and a JSON error, the HTTP requests `refusal` names (module docstring)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            why = refusal(scope, changes_state=scope["method"] not in SAFE_METHODS)
            if why is not None:
                body = json.dumps({"type": "error", "field": "origin", "message": why}).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 403,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def is_json(content_type: str | None) -> bool:
    """`application/json` (with or without parameters) or a `+json` type."""
    media = (content_type or "").split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))
