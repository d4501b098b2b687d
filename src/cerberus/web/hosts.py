"""The ``Host`` header check of ``cerberus serve``: a request is answered only when it names a
host the server was started for (a DNS-rebinding page names its own domain and is refused).

Accepted: ``127.0.0.1``, ``localhost``, ``[::1]``, the ``--host`` the server listens on and
every ``--allowed-host``; with or without a port (``localhost:8000``), case-insensitive. Anything
else, or no ``Host`` header, is a 400 whose ``detail`` says which host was refused and the way
out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from cerberus.errors import CerberusError, shown

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
"""The names this machine is always reached by."""


def host_name(header: str) -> str:
    """A ``Host`` header's host, lower case, without its port or the brackets of an IPv6
    address: ``"LocalHost:8000"`` -> ``"localhost"``, ``"[::1]:80"`` -> ``"::1"``."""
    text = header.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        return text[1:end] if end > 0 else text
    if text.count(":") == 1:  # name:port (a bare IPv6 address has several colons)
        text = text.split(":")[0]
    return text.rstrip(".")


def allowed_hosts(host: str | None = None, extra: Iterable[str] = ()) -> frozenset[str]:
    """The host names a server listening on ``host`` answers: :data:`LOCAL_HOSTS`, ``host``
    (unless it is a wildcard address) and ``extra`` (``--allowed-host``), each checked."""
    names = set(LOCAL_HOSTS)
    given = [h for h in [host or "", *extra] if h not in ("", "0.0.0.0", "::")]
    for h in given:
        name = host_name(h)
        if not name or any(c in name for c in " /\\@?#*"):
            raise CerberusError(f"--allowed-host {shown(h)}: not a host name")
        names.add(name)
    return frozenset(names)


class HostCheck:
    """Pure ASGI middleware: a request whose ``Host`` header is not in ``hosts`` is answered
    400 before any route runs; other scopes (lifespan) pass.

    Args:
        app: the ASGI app guarded.
        hosts: accepted host names (:func:`allowed_hosts`).
    """

    def __init__(self, app, hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = frozenset(host_name(h) for h in hosts)

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers", ())).get(b"host", b"").decode("latin-1")
        if host_name(header) in self.hosts:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        said = f"host {shown(header)}" if header else "no Host header"
        detail = (
            f"{said} is not served here; this server answers "
            f"{', '.join(sorted(self.hosts))} (cerberus serve --allowed-host NAME adds one)"
        )
        body = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-content-type-options", b"nosniff"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
