"""The API's front gate, as plain ASGI middleware: which Host a request may name, which
Origin may write, and how large a request body may be.

- **Host.** A page on a foreign site can make the browser send requests to 127.0.0.1 under
  its own name (DNS rebinding); the browser then treats our answers as same-origin to that
  site. Such requests carry the foreign name in `Host`, so a request naming a host that is not
  allowed is refused (400) before it reaches a route. `allowed_hosts=None` allows any name:
  for a server beyond loopback, where the deployer knows the public name and writes need
  the admin token anyway.
- **Origin.** A write (any method but GET, HEAD, OPTIONS) that a browser sends from another
  site carries that site's `Origin`; it is refused (403) unless the origin is our own (the
  scheme, host and port the request was addressed to) or one of the configured CORS origins.
  Requests without `Origin` (curl, the producer, scripts) are not browsers' cross-site
  writes and pass on to the token and rate checks.
- **Body.** A body longer than `max_body_bytes` is refused (413) from its `Content-Length`;
  one streamed without a length is read here up to the limit, and refused as soon as it
  passes it: nothing reads an oversized body whole.

Starlette's TrustedHostMiddleware is not used: it parses an IPv6 `Host` (`[::1]:8000`) as
`[`, and answers in plain text where every other refusal of this API is a JSON problem.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def host_name(host: str) -> str:
    """The name in a Host header, without its port and IPv6 brackets, lower-cased."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host[1:]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Gate:
    def __init__(
        self,
        app: ASGIApp,
        allowed_hosts: Iterable[str] | None,
        cors_origins: Iterable[str],
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self.hosts = None if allowed_hosts is None else frozenset(host_name(h) for h in allowed_hosts)
        self.origins = frozenset(o.rstrip("/").lower() for o in cors_origins)
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await _problem(send, *refusal)
            return
        if "content-length" not in headers and scope["method"] not in SAFE_METHODS:
            replay = await self._buffered(receive)
            if replay is None:
                await _problem(send, 413, self._too_large())
                return
            receive = replay
        await self.app(scope, receive, send)

    async def _buffered(self, receive: Receive) -> Receive | None:
        """A body streamed without a length, read up to the limit before any route sees it:
        a receive that replays it, or None when it is longer than the limit."""
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_body:
                return None
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        return replay

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if self.hosts is not None and host_name(host) not in self.hosts:
            return 400, f"host {host_name(host)!r} is not served here; allowed: {', '.join(sorted(self.hosts))}"
        origin = headers.get("origin")
        if origin is not None and scope["method"] not in SAFE_METHODS and not self._own(origin, scope, host):
            return 403, f"writes from origin {origin!r} are refused: it is neither this server nor a CORS origin"
        length = headers.get("content-length")
        if length is not None and not length.isdigit():
            return 400, f"Content-Length {length!r} is not a byte count"
        if length is not None and int(length) > self.max_body:
            return 413, self._too_large()
        return None

    def _own(self, origin: str, scope: Scope, host: str) -> bool:
        origin = origin.rstrip("/").lower()
        if origin in self.origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme == scope.get("scheme", "http") and parts.netloc == host.strip().lower()

    def _too_large(self) -> str:
        return f"the request body is larger than {self.max_body:,} bytes"


async def _problem(send: Send, status: int, detail: str) -> None:
    body = orjson.dumps({"detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
