"""uvicorn's h11 HTTP protocol with a header timeout: a connection whose request headers are
not complete within ``header_timeout`` seconds of its opening (or of the end of its previous
answer) is closed. uvicorn's own keep-alive timeout is cancelled by any byte received and
does not start before a first request, so a client that connects and sends nothing, or sends
one byte now and then, would hold a connection forever."""

from __future__ import annotations

import asyncio
from typing import Any

HEADER_TIMEOUT = 10.0
"""Seconds a client has to send a request's headers."""


def header_timeout_protocol(seconds: float = HEADER_TIMEOUT) -> type[Any]:
    """A subclass of uvicorn's ``H11Protocol`` closing connections whose headers take longer
    than ``seconds`` (give it to ``uvicorn.Config(http=...)``)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    if not seconds > 0:
        raise ValueError(f"header timeout {seconds}: must be above 0")

    class HeaderTimeoutProtocol(H11Protocol):
        header_timeout = float(seconds)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self._header_timer: asyncio.TimerHandle | None = None
            super().connection_made(transport)
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            if not self.transport.is_closing():
                self._header_timer = self.loop.call_later(self.header_timeout, self._expired)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expired(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def handle_events(self) -> None:
            before = self.cycle
            super().handle_events()
            if self.cycle is not before:  # a request's headers arrived
                self._disarm()

        def on_response_complete(self) -> None:
            self._arm()  # the next request's headers (a pipelined one disarms it again)
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol
