"""Serve model artifacts over HTTP by content digest, for nodes that share no volume with us.

``GET /artifacts/<sha256>`` answers the file's bytes with ``Content-Length``, ``ETag`` (the
quoted digest) and a long-lived cache header, since a digest's content never changes; ``HEAD``
answers the headers alone and ``If-None-Match`` with the digest gets ``304``. Anything else, an
unknown digest or a path that is not exactly 64 lowercase hex digits, is ``404``: a file path
is only ever built from a validated digest, so there is no way out of the served set.

Files come from a directory holding ``<sha256>.pt`` (the layout of a node's artifact cache) or
from a mapping sha256 → path, which :meth:`ArtifactServer.publish` extends while serving. The
server does not hash what it serves; the fetching side verifies every byte against the digest.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import threading
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

PATH_PREFIX = "/artifacts/"
CHUNK_BYTES = 1 << 20
IDLE_TIMEOUT_S = 30.0
_SHA256 = re.compile(r"[0-9a-f]{64}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S  # an idle keep-alive connection frees its thread after this
    server: _Server

    def do_GET(self) -> None:
        self._serve(with_body=True)

    def do_HEAD(self) -> None:
        self._serve(with_body=False)

    def _serve(self, *, with_body: bool) -> None:
        self.server.count_request()
        digest = _digest_in(self.path)
        path = self.server.owner.path_for(digest) if digest else None
        try:
            stream = _open(path) if path else None
        except OSError as exc:
            logger.warning("artifact unreadable path=%s error=%s", path, exc)
            self._reply_empty(HTTPStatus.INTERNAL_SERVER_ERROR)
            return
        if digest is None or stream is None:
            self._reply_empty(HTTPStatus.NOT_FOUND)
            return
        with stream:
            etag = f'"{digest}"'
            if etag in self.headers.get("If-None-Match", ""):
                self._reply_empty(HTTPStatus.NOT_MODIFIED, etag=etag)
                return
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(os.fstat(stream.fileno()).st_size))
            self.send_header("ETag", etag)
            self.send_header("Cache-Control", "public, max-age=31536000, immutable")
            self.end_headers()
            if with_body:
                self._send_body(stream, digest)

    def _send_body(self, stream: BinaryIO, digest: str) -> None:
        try:
            shutil.copyfileobj(stream, self.wfile, CHUNK_BYTES)
        except (BrokenPipeError, ConnectionResetError):
            logger.debug("artifact client went away sha256=%s", digest[:12])
            self.close_connection = True

    def _reply_empty(self, status: HTTPStatus, *, etag: str | None = None) -> None:
        self.send_response(status)
        if etag is not None:
            self.send_header("ETag", etag)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("artifact http %s", format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], owner: ArtifactServer) -> None:
        super().__init__(address, _Handler)
        self.owner = owner
        self.requests = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()

    def count_request(self) -> None:
        with self._lock:
            self.requests += 1

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Cut open connections (idle keep-alive ones included) so their threads finish."""
        with self._lock:
            doomed = list(self._open)
        for sock in doomed:
            with contextlib.suppress(OSError):  # closed by its handler meanwhile
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.warning("artifact server error client=%s", client_address, exc_info=True)


class ArtifactServer:
    """Serves artifacts by digest on ``host:port`` (0: any free port) until ``stop()``."""

    def __init__(
        self, root_or_mapping: Path | Mapping[str, Path], host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._root: Path | None = None
        self._files: dict[str, Path] = {}
        self._files_lock = threading.Lock()
        if isinstance(root_or_mapping, Path):
            if not root_or_mapping.is_dir():
                raise ValueError(f"artifact directory {root_or_mapping} does not exist")
            self._root = root_or_mapping
        else:
            for digest, path in root_or_mapping.items():
                self.publish(digest, path)
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, ``http://HOST:PORT`` (the bound port once started)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def request_count(self) -> int:
        """HTTP requests received since start, whatever their answer."""
        return self._server.requests if self._server else 0

    def url_for(self, sha256: str, *, base: str | None = None) -> str:
        """The URL a node fetches ``sha256`` from: under ``base`` (the address nodes reach
        this server at, e.g. behind a Service) or, by default, under :attr:`url`.
        """
        return f"{(base or self.url).rstrip('/')}{PATH_PREFIX}{_checked(sha256)}"

    def publish(self, sha256: str, path: Path) -> None:
        """Serve ``path`` as ``sha256`` (mapping mode only); the caller vouches for the digest."""
        if self._root is not None:
            raise ValueError(f"artifact server serves directory {self._root}; publish there")
        with self._files_lock:
            self._files[_checked(sha256)] = path

    def path_for(self, sha256: str) -> Path | None:
        """The file served for ``sha256`` (validated by the caller), if it is known."""
        if self._root is not None:
            return self._root / f"{sha256}.pt"
        with self._files_lock:
            return self._files.get(sha256)

    def start(self) -> ArtifactServer:
        if self._server is not None:
            raise RuntimeError(f"artifact server at {self.url} is already running")
        try:
            server = _Server((self._host, self._port), self)
        except OSError as exc:
            message = f"artifact server cannot listen on {self._host}:{self._port}: {exc.strerror}"
            raise OSError(exc.errno, message) from exc
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"artifact-server-{self._port}",
            daemon=True,
        )
        self._thread.start()
        logger.info("artifact server listening url=%s root=%s", self.url, self._root or "mapping")
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.drop_connections()
        server.server_close()
        if thread is not None:
            thread.join()
        self._server, self._thread = None, None
        logger.info("artifact server stopped url=%s", self.url)

    def __enter__(self) -> ArtifactServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _digest_in(request_path: str) -> str | None:
    path = urlsplit(request_path).path
    if not path.startswith(PATH_PREFIX):
        return None
    digest = path.removeprefix(PATH_PREFIX)
    return digest if _SHA256.fullmatch(digest) else None


def _open(path: Path) -> BinaryIO | None:
    """The open file, ``None`` if there is none; other ``OSError``s propagate."""
    with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return path.open("rb")
    return None


def _checked(sha256: str) -> str:
    if not _SHA256.fullmatch(sha256):
        raise ValueError(f"{sha256!r} is not a sha256 digest (64 lowercase hex digits)")
    return sha256
