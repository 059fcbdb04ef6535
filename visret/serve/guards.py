"""What every request to ``visret serve`` passes through before a route sees it.

- The body is counted as it arrives: a request that declares or streams (chunked) more than the
  limit gets 413 and is read no further, so nothing large is ever spooled to disk.
- The ``Host`` header must name the address the server listens on (or ``localhost``): a web page
  on another site that a DNS name rebound to 127.0.0.1 cannot read the index.
- HEAD is answered as GET without the body.
- Answers carry headers that keep the pages from being framed, sniffed as another type, or made
  to run scripts other than the server's own.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Iterable

Scope = dict[str, Any]
Message = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

#: Headers on every answer; the API docs page (Swagger UI from a CDN) gets all but the script policy.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
CONTENT_POLICY = (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                  b"script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
DOCS_PATHS = ("/docs", "/redoc", "/openapi.json")
LOCAL_NAMES = ("127.0.0.1", "localhost", "::1")


def host_names(listening_on: str, extra: Iterable[str] = ()) -> set[str] | None:
    """Host names a request may carry: the listening address, the loopback names and ``extra``;
    None (any) when listening on every interface, where the machine's own names are unknown."""
    if listening_on in ("0.0.0.0", "::", ""):
        return None
    return {listening_on.strip("[]").lower(), *LOCAL_NAMES, *(name.strip("[]").lower() for name in extra)}


def _request_host(scope: Scope) -> str:
    raw = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1").strip().lower()
    if raw.startswith("["):  # [::1]:8000
        return raw[1 : raw.find("]")] if "]" in raw else raw
    return raw.rsplit(":", 1)[0] if raw.count(":") == 1 else raw


class _TooLarge(Exception):
    """Raised into the app's body reading once the limit is passed."""


class Guards:
    """ASGI middleware applying the rules above around ``app``."""

    def __init__(self, app: ASGIApp, max_body: int, hosts: set[str] | None):
        self.app, self.max_body, self.hosts = app, max_body, hosts

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.hosts is not None and _request_host(scope) not in self.hosts:
            await _answer(send, 421, "this server answers only requests addressed to it (Host header)")
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body:
            await _answer(send, 413, f"the upload is larger than {self.max_body} bytes")
            return
        head = scope.get("method") == "HEAD"  # answered as GET without the body
        if head:
            scope = {**scope, "method": "GET"}
        received, started, refused = 0, False, False

        async def counted() -> Message:
            nonlocal received, refused
            message = await receive()
            received += len(message.get("body", b"")) if message["type"] == "http.request" else 0
            if received > self.max_body:
                refused = True
                raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the app's own answer to a body it never got whole is replaced below
            if message["type"] == "http.response.start":
                started = True
                extra = SECURITY_HEADERS if scope["path"].startswith(DOCS_PATHS) else [*SECURITY_HEADERS, CONTENT_POLICY]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        try:
            await self.app(scope, counted, guarded_send)
        except Exception:  # the limit, however the app passed it on; anything else is the app's own
            if not refused:
                raise
        if refused and not started:
            await _answer(send, 413, f"the upload is larger than {self.max_body} bytes")


async def _answer(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})
