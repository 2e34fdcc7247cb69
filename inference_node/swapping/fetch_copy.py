"""``Copy``: the thread side of one artifact copy (open the source, stream it into a file).

It runs on a thread of its own and never raises: it leaves ``result`` (sha256, size) or a
``Failure`` (a reason and whether it is permanent), then sets ``done``. ``abort()``, called
from the watching thread, shuts the HTTP socket down so a blocked read returns at once, and
stops any copy (a local file too) before its next write; a file read stuck in the kernel
cannot be interrupted, and the watcher does not wait for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import os
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from inference_node.model import ModelRef
from inference_node.swapping.fetch_limits import CopyPhase, FetchLimits, ProgressView

CHUNK_BYTES = 1 << 20
USER_AGENT = "yolofleet-inference-node"
MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})
TRANSIENT_STATUSES = frozenset({408, 425, 429})
"""Client-error statuses that mean "not now" rather than "never"."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """Why a copy failed, as the end of a sentence, and whether retrying can help."""

    reason: str
    permanent: bool
    before_body: bool = False
    """True when the source refused before sending any of the artifact (an HTTP status)."""


class _Stop(Exception):
    """The copy cannot go on; carries the ``Failure`` to report."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


@dataclass(slots=True, kw_only=True)
class _Progress:
    """Written by the copy thread only; read (as a snapshot) by the watcher."""

    started_at: float
    last_byte_at: float
    phase: CopyPhase = CopyPhase.CONNECTING
    received: int = 0

    def snapshot(self) -> ProgressView:
        return ProgressView(
            phase=self.phase,
            started_at=self.started_at,
            last_byte_at=self.last_byte_at,
            received=self.received,
        )


def source_verb(uri: str) -> str:
    return "download" if urlsplit(uri).scheme in ("http", "https") else "copy"


class Copy:
    """One copy of ``ref``'s artifact into ``out_fd`` (which it closes when it ends)."""

    def __init__(
        self, ref: ModelRef, *, out_fd: int, limits: FetchLimits, clock: Callable[[], float]
    ) -> None:
        self._ref = ref
        self._out_fd = out_fd
        self._limits = limits
        self._clock = clock
        now = clock()
        self.progress = _Progress(started_at=now, last_byte_at=now)
        self.done = threading.Event()
        self.result: tuple[str, int] | None = None
        self.failure: Failure | None = None
        self._lock = threading.Lock()
        self._aborted = False
        self._sockets: list[socket.socket] = []
        self._announced: int | None = None

    def run(self) -> None:
        """The copy thread's body."""
        try:
            with os.fdopen(self._out_fd, "wb") as out, self._open(self._ref.uri, 0) as stream:
                self.progress.phase = CopyPhase.RECEIVING
                self.progress.last_byte_at = self._clock()
                self.result = self._pump(stream, out)
                out.flush()
                os.fsync(out.fileno())
        except _Stop as stop:
            self.failure = stop.failure
        except Exception as exc:  # the thread's boundary: every failure is reported, not raised
            reason = _reason(exc, self._limits, phase=self.progress.phase)
            self.failure = Failure(reason=reason, permanent=_permanent(exc))
        finally:
            self.done.set()

    def abort(self) -> None:
        """Unblock the copy thread (from another thread); it ends with a failure nobody reads."""
        with self._lock:
            self._aborted = True
            for sock in self._sockets:
                _shut(sock)

    def _track(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            if self._aborted:
                _shut(sock)

    @contextlib.contextmanager
    def _open(self, uri: str, hops: int) -> Iterator[io.BufferedIOBase]:
        parts = urlsplit(uri)
        if parts.scheme in ("http", "https"):
            with self._open_http(uri, hops) as response:
                yield response
        else:
            path = Path(unquote(parts.path) if parts.scheme == "file" else uri)
            with _open_regular_file(path) as stream:
                yield stream

    @contextlib.contextmanager
    def _open_http(self, uri: str, hops: int) -> Iterator[io.BufferedIOBase]:
        parts = urlsplit(uri)
        secure = parts.scheme == "https"
        kind = http.client.HTTPSConnection if secure else http.client.HTTPConnection
        connection = kind(parts.hostname or "", parts.port, timeout=self._limits.connect_s)
        try:
            connection.connect()
            sock = connection.sock  # kept: the connection drops it when the reply will close
            self._track(sock)
            target = urlunsplit(("", "", parts.path or "/", parts.query, ""))
            headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
            connection.request("GET", target, headers=headers)
            response = connection.getresponse()  # still within connect_s, as the watcher judges
            sock.settimeout(self._limits.idle_s)
            location = response.getheader("Location")
            if response.status in REDIRECTS and location and hops < MAX_REDIRECTS:
                response.close()
                with self._open_http(_redirect_target(uri, location), hops + 1) as followed:
                    yield followed
                return
            if response.status in REDIRECTS:
                raise _Stop(_redirect_refused(response.status, has_location=bool(location)))
            self._check_response(response)
            yield response
        finally:
            connection.close()

    def _check_response(self, response: http.client.HTTPResponse) -> None:
        if response.status != 200:
            status = response.status
            permanent = 400 <= status < 500 and status not in TRANSIENT_STATUSES
            reason = f"failed: the server answered HTTP {status} {response.reason}"
            raise _Stop(Failure(reason=reason, permanent=permanent, before_body=True))
        length = _content_length(response.getheader("Content-Length"))
        if length is not None and length > self._limits.max_bytes:
            reason = (
                f"refused: Content-Length {length} exceeds the limit of "
                f"{self._limits.max_bytes} bytes"
            )
            raise _Stop(Failure(reason=reason, permanent=True, before_body=True))
        self._announced = length

    def _pump(self, stream: io.BufferedIOBase, out: io.BufferedIOBase) -> tuple[str, int]:
        """Stream ``stream`` into ``out``; returns (sha256 hex, size)."""
        digest = hashlib.sha256()
        progress = self.progress
        while chunk := stream.read1(CHUNK_BYTES):  # what has arrived, so counts are exact
            if self._aborted:  # a file source has no socket to shut: stop between reads
                raise _Stop(Failure(reason="aborted by the watcher", permanent=False))
            progress.received += len(chunk)
            progress.last_byte_at = self._clock()
            if progress.received > self._limits.max_bytes:
                reason = f"the artifact is larger than the limit of {self._limits.max_bytes} bytes"
                raise _Stop(Failure(reason=reason, permanent=True))
            digest.update(chunk)
            out.write(chunk)
        announced = self._announced
        if announced is not None and progress.received != announced:
            reason = f"the body ended early, {announced} bytes were announced"
            raise _Stop(Failure(reason=reason, permanent=False))
        return digest.hexdigest(), progress.received


@contextlib.contextmanager
def _open_regular_file(path: Path) -> Iterator[io.BufferedIOBase]:
    """Open ``path`` for reading without blocking on a FIFO; refuse anything but a file."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            reason = "refused: it is not a regular file (a FIFO, a device or a directory)"
            raise _Stop(Failure(reason=reason, permanent=True, before_body=True))
        os.set_blocking(fd, True)
        stream = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with stream:
        yield stream


def _redirect_target(uri: str, location: str) -> str:
    """Where a redirect points; only to HTTP(S), never to a local file."""
    target = urljoin(uri, location)
    if urlsplit(target).scheme not in ("http", "https"):
        reason = f"failed: the server redirected to {target!r}, which is not HTTP(S)"
        raise _Stop(Failure(reason=reason, permanent=True, before_body=True))
    return target


def _redirect_refused(status: int, *, has_location: bool) -> Failure:
    """A redirect not followed: a loop, or one pointing nowhere; asking again will not help."""
    if has_location:
        reason = f"failed: still redirected (HTTP {status}) after {MAX_REDIRECTS} redirects"
    else:
        reason = f"failed: the server answered HTTP {status} without a Location to follow"
    return Failure(reason=reason, permanent=True, before_body=True)


def _shut(sock: socket.socket) -> None:
    """Shut ``sock`` down at the OS level (not the TLS layer): a blocked read returns at once."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _content_length(header: str | None) -> int | None:
    if header is None:
        return None
    try:
        length = int(header)
    except ValueError:
        return None
    return length if length >= 0 else None


def _permanent(exc: BaseException) -> bool:
    """A file that is missing, forbidden or a directory stays so; network trouble may pass."""
    return isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError)


def _reason(exc: BaseException, limits: FetchLimits, *, phase: CopyPhase) -> str:
    """A short sentence for why a copy failed, without object addresses (a timeout's the same
    as the watcher's for that phase, naming the limit that applied)."""
    match exc:
        case TimeoutError() | socket.timeout() if phase is CopyPhase.CONNECTING:
            return f"no response within {limits.connect_s:g}s (connect timed out)"
        case TimeoutError() | socket.timeout():
            return f"no data for {limits.idle_s:g}s (timed out)"
        case http.client.IncompleteRead():
            return f"the connection closed mid-body ({len(exc.partial)} bytes in the last read)"
        case ConnectionResetError() | http.client.RemoteDisconnected() | BrokenPipeError():
            return "the server closed the connection"
        case ConnectionRefusedError():
            return "connection refused"
        case socket.gaierror():
            return f"the host name did not resolve ({exc.strerror})"
        case OSError() if exc.strerror:
            return exc.strerror
        case _:
            return str(exc) or type(exc).__name__
