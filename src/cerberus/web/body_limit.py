"""Pure ASGI middleware for the server (:mod:`cerberus.web.app`): body limits on the bytes read.

A ``BaseHTTPMiddleware`` only sees the ``Content-Length`` header, which a chunked upload does not
send; this layer counts the body's ``http.request`` messages as the route reads them and stops
at the route's limit, so neither a temporary file nor memory grows past it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any


class Guard:
    """Pure ASGI middleware in front of every route (not a ``BaseHTTPMiddleware``: it sees the
    body's ``http.request`` messages one by one):

    - counts the body bytes actually read, with or without a ``Content-Length`` (chunked
      uploads), and answers 413 as soon as the route's limit (``limit_for``) is passed: the rest of
      the body is never read, and the route sees a disconnected client;
    - answers ``HEAD`` like ``GET`` without the body;
    - adds ``headers`` to every response (replacing any of the same name).

    Args:
        app: the ASGI app guarded.
        limit_for: request path -> the most body bytes a request to it may send.
        headers: response headers added to every answer (name -> value).
    """

    def __init__(
        self, app: Any, limit_for: Callable[[str], int], headers: Mapping[str, str]
    ) -> None:
        self.app = app
        self.limit_for = limit_for
        self.headers = dict(headers)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        head = scope["method"] == "HEAD"
        if head:
            scope = {**scope, "method": "GET"}
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._too_large(send, limit, head)
            return
        state = {"read": 0, "answered": False}

        async def counted_receive() -> dict:
            if state["answered"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["read"] += len(message.get("body", b""))
                if state["read"] > limit:
                    state["answered"] = True
                    await self._too_large(send, limit, head)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict) -> None:
            if state["answered"]:
                return  # the 413 went out; what the route says after it is dropped
            if message["type"] == "http.response.start":
                message = {**message, "headers": _with_headers(message, self.headers)}
            elif message["type"] == "http.response.body" and head:
                message = {**message, "body": b""}
            await send(message)

        await self.app(scope, counted_receive, guarded_send)

    async def _too_large(self, send: Any, limit: int, head: bool) -> None:
        body = json.dumps({"detail": f"request body over the limit of {limit} bytes"}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        start = {"type": "http.response.start", "status": 413, "headers": headers}
        await send({**start, "headers": _with_headers(start, self.headers)})
        await send({"type": "http.response.body", "body": b"" if head else body})


def _with_headers(start: dict, added: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    """A ``http.response.start`` message's headers with ``added`` in place of any of the same
    name."""
    names = {h.lower() for h in added}
    kept = [(k, v) for k, v in start.get("headers", ()) if k.decode("latin-1").lower() not in names]
    return kept + [(k.lower().encode(), v.encode()) for k, v in added.items()]
