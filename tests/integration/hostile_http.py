"""A loopback HTTP server that misbehaves on purpose: trickles, stalls, refuses, redirects."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RELEASE_S = 30.0
"""The most a test waits on a hostile server (its thread at shutdown, a result)."""


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Hostile:
    """A loopback HTTP server whose handler misbehaves until ``release`` is set."""

    def __init__(self, behaviour: str, *, status: int = 200) -> None:
        self.release = threading.Event()
        self.requests = 0
        self._behaviour, self._status = behaviour, status
        hostile = self

        class Handler(_Quiet):
            def do_GET(self) -> None:
                hostile.requests += 1
                with contextlib.suppress(ConnectionError):  # the client gave up: as intended
                    getattr(hostile, f"_{hostile._behaviour}")(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/shapes.pt"

    def _trickle_body(self, handler: BaseHTTPRequestHandler) -> None:
        """Headers, then one byte every 2 s: never idle, never done."""
        handler.send_response(200)
        handler.send_header("Content-Length", str(1 << 20))
        handler.end_headers()
        while not self.release.is_set():
            handler.wfile.write(b"x")
            handler.wfile.flush()
            self.release.wait(2.0)

    def _trickle_headers(self, handler: BaseHTTPRequestHandler) -> None:
        """The status line a byte at a time, every 0.3 s."""
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n":
            if self.release.wait(0.3):
                return
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()

    def _silent(self, handler: BaseHTTPRequestHandler) -> None:
        """Reads the request, then never answers."""
        self.release.wait(RELEASE_S)

    def _status_only(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_error(self._status)

    def _redirect(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", self.location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    location = ""

    @contextlib.contextmanager
    def running(self) -> Iterator[Hostile]:
        thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        try:
            yield self
        finally:
            self.release.set()
            self.server.shutdown()
            self.server.server_close()
            thread.join(RELEASE_S)
