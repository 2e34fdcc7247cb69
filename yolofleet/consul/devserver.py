"""The embedded dev Consul: real HTTP on a ``ThreadingHTTPServer`` over the dev state store.

``DevConsul(host, port, data_dir)`` serves the API subset in :mod:`yolofleet.consul.devapi`
until ``stop()``. It behaves like an agent process for clients:

- ``stop()`` drops every open connection, including keep-alive ones and blocking queries in
  flight, the way a killed agent would; clients see connection errors, not answers.
- ``start()`` after ``stop()`` binds the same port again with a fresh store. With a ``data_dir``
  the KV entries, tombstones, indexes and sessions come back from the snapshot; without one the
  state is gone, like a wiped cluster, and clients see the index go backwards.
- ``restart(wipe=True)`` also deletes the snapshot first.

Sessions may have TTLs as short as ``min_session_ttl`` (default 100 ms) so tests run quickly;
this is Consul's ``session_ttl_min`` setting, which a real agent defaults to 10 s.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from yolofleet.consul.devapi import ApiReply, ApiRequest, ConsulApi
from yolofleet.consul.kvstore import KVStore
from yolofleet.consul.snapshot import SNAPSHOT_NAME, SnapshotWriter, load_image

logger = logging.getLogger(__name__)

REAP_INTERVAL = 0.05


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate small writes
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self._send(ApiReply(status=411, body=b"Length Required", content_type="text/plain"))
            self.close_connection = True
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = ApiRequest(
            method=self.command,
            path=unquote(parts.path),
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            body=body,
        )
        reply = self.server.api.handle(request)
        if self.server.stopping:
            self.close_connection = True  # a stopped agent answers nothing
            return
        self._send(reply)

    def _send(self, reply: ApiReply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        if reply.index is not None:
            self.send_header("X-Consul-Index", str(reply.index))
            self.send_header("X-Consul-KnownLeader", "true")
            self.send_header("X-Consul-LastContact", "0")
            self.send_header("X-Consul-Effective-Consistency", "leader")
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http %s", format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: ConsulApi) -> None:
        super().__init__(address, _Handler)
        self.api = api
        self.stopping = False
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("dev consul connection error client=%s", client_address, exc_info=True)

    def drop_connections(self) -> None:
        """Cut every open connection, so handler threads blocked on them finish."""
        with self._open_lock:
            doomed = list(self._open)
        for sock in doomed:
            with contextlib.suppress(OSError):  # already closed by its handler
                sock.shutdown(socket.SHUT_RDWR)


class DevConsul:
    """An in-process dev Consul agent: ``start()``, use ``.address``, ``stop()``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        data_dir: str | Path | None = None,
        *,
        min_session_ttl: float = 0.1,
    ) -> None:
        self._host = host
        self._port = port
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._min_session_ttl = min_session_ttl
        self._server: _Server | None = None
        self._store: KVStore | None = None
        self._writer: SnapshotWriter | None = None
        self._threads: list[threading.Thread] = []
        self._stop_reaper = threading.Event()

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The bound port (after the first ``start()`` when created with port 0)."""
        return self._port

    @property
    def address(self) -> str:
        """``"HOST:PORT"``, the form ``CONSUL_HTTP_ADDR`` and ``--consul`` take."""
        return f"{self._host}:{self._port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> DevConsul:
        """Load the snapshot (if any), bind and serve; returns ``self``."""
        if self._server is not None:
            raise RuntimeError(f"dev consul at {self.address} is already running")
        writer, image = None, None
        if self._data_dir is not None:
            self._data_dir.mkdir(parents=True, exist_ok=True)
            image = load_image(self._data_dir / SNAPSHOT_NAME)
            writer = SnapshotWriter(self._data_dir / SNAPSHOT_NAME)
        store = KVStore(
            image=image,
            min_session_ttl=self._min_session_ttl,
            on_change=writer.mark_dirty if writer else None,
        )
        server = _Server((self._host, self._port), ConsulApi(store))
        self._port = server.server_address[1]
        if writer is not None:
            writer.start(store.dump)
        self._server, self._store, self._writer = server, store, writer
        self._stop_reaper.clear()
        self._threads = [
            threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"dev-consul-{self._port}",
                daemon=True,
            ),
            threading.Thread(target=self._reap, name="dev-consul-reaper", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        logger.info(
            "dev consul listening address=%s data_dir=%s restored=%s",
            self.address,
            self._data_dir,
            image is not None,
        )
        return self

    def stop(self) -> None:
        """Stop serving and drop all connections; with a data dir, save the state first."""
        server, store, writer = self._server, self._store, self._writer
        if server is None or store is None:
            return
        server.stopping = True
        server.shutdown()
        server.server_close()
        server.drop_connections()
        store.close()
        self._stop_reaper.set()
        for thread in self._threads:
            thread.join()
        if writer is not None:
            writer.close()
        self._server, self._store, self._writer = None, None, None
        logger.info("dev consul stopped address=%s", self.address)

    def restart(self, *, wipe: bool = False) -> None:
        """Stop and start again on the same port; ``wipe`` deletes the saved state in between."""
        self.stop()
        if wipe and self._data_dir is not None:
            (self._data_dir / SNAPSHOT_NAME).unlink(missing_ok=True)
        self.start()

    def _reap(self) -> None:
        store = self._store
        while store is not None and not self._stop_reaper.wait(REAP_INTERVAL):
            store.expire_sessions()

    def __enter__(self) -> DevConsul:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
