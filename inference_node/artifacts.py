"""Copy a model artifact from where its ``ModelRef`` points into a temp file, hashing as it goes.

Sources are ``file://`` URIs and plain paths, and ``http://`` / ``https://`` URLs (stdlib
``urllib``). Every HTTP request has a connect and read timeout, the whole copy has a deadline,
and the artifact a size limit (:class:`FetchLimits`). The copy lands in a temp file in the
directory the caller names (next to its cache, so the final rename is atomic) together with its
sha256 and size. Judging that digest and the content is the caller's job.

A copy that fails for any reason (connection refused or dropped, a body shorter than its
Content-Length, a timeout, an HTTP error status, a file that cannot be read) leaves no temp file
behind and raises ``ArtifactError`` naming the model, the source and the bytes received.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit, urlunsplit

from inference_node.errors import ArtifactError
from inference_node.model import ModelRef

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
USER_AGENT = "yolofleet-inference-node"


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchLimits:
    """Bounds on one artifact copy: per-connect/read timeout, overall deadline, size."""

    timeout_s: float = 30.0
    deadline_s: float = 900.0
    max_bytes: int = 2 << 30

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.deadline_s <= 0:
            raise ValueError(
                f"fetch timeouts must be positive, got timeout_s={self.timeout_s} "
                f"deadline_s={self.deadline_s}"
            )
        if self.max_bytes <= 0:
            raise ValueError(f"fetch max_bytes must be positive, got {self.max_bytes}")


@dataclass(frozen=True, slots=True, kw_only=True)
class StagedArtifact:
    """A complete copy of an artifact in a temp file, not yet verified against any digest."""

    path: Path
    sha256: str
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class _Source:
    """An open artifact stream, the length it announced, and how to name it in messages."""

    stream: io.BufferedIOBase
    length: int | None
    shown: str
    verb: str


class _Refused(Exception):
    """The copy broke one of the limits; the message says which."""


def stage_artifact(ref: ModelRef, *, directory: Path, limits: FetchLimits) -> StagedArtifact:
    """Copy ``ref``'s artifact into a new temp file in ``directory``; raises ``ArtifactError``."""
    started = time.monotonic()
    handle, name = tempfile.mkstemp(dir=directory, prefix=".fetch-", suffix=".part")
    temp = Path(name)
    try:
        with os.fdopen(handle, "wb") as out, _open(ref, limits) as source:
            digest, size = _copy(ref, source, out, limits=limits, started=started)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    logger.info(
        "artifact copied model=%s source=%s bytes=%d seconds=%.2f",
        ref, shown_uri(ref.uri), size, time.monotonic() - started,
    )  # fmt: skip
    return StagedArtifact(path=temp, sha256=digest, size=size)


@contextlib.contextmanager
def _open(ref: ModelRef, limits: FetchLimits) -> Iterator[_Source]:
    parts = urlsplit(ref.uri)
    if parts.scheme in ("http", "https"):
        with _open_http(ref, limits) as source:
            yield source
    elif parts.scheme in ("", "file"):
        path = Path(unquote(parts.path) if parts.scheme == "file" else ref.uri)
        with _open_file(ref, path) as source:
            yield source
    else:
        raise ArtifactError(
            f"model {ref}: artifact scheme {parts.scheme!r} is not supported "
            "(use file://, http:// or https://)"
        )


@contextlib.contextmanager
def _open_file(ref: ModelRef, path: Path) -> Iterator[_Source]:
    try:
        stream = path.open("rb")
        length = os.fstat(stream.fileno()).st_size
    except OSError as exc:
        raise ArtifactError(f"model {ref}: cannot read artifact {path}: {exc.strerror}") from exc
    with stream:
        yield _Source(stream=stream, length=length, shown=str(path), verb="copy")


@contextlib.contextmanager
def _open_http(ref: ModelRef, limits: FetchLimits) -> Iterator[_Source]:
    shown = shown_uri(ref.uri)
    request = urllib.request.Request(
        ref.uri, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    )
    try:
        response = urllib.request.urlopen(request, timeout=limits.timeout_s)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise ArtifactError(
            f"model {ref}: download of {shown} failed: the server answered HTTP {exc.code} "
            f"{exc.reason}"
        ) from exc
    except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
        raise ArtifactError(
            f"model {ref}: download of {shown} failed after 0 bytes: {_reason(exc, limits)}"
        ) from exc
    with response:
        length = _content_length(response.headers.get("Content-Length"))
        if length is not None and length > limits.max_bytes:
            raise ArtifactError(
                f"model {ref}: download of {shown} refused: Content-Length {length} exceeds "
                f"the limit of {limits.max_bytes} bytes"
            )
        yield _Source(stream=response, length=length, shown=shown, verb="download")


def _copy(
    ref: ModelRef, source: _Source, out: BinaryIO, *, limits: FetchLimits, started: float
) -> tuple[str, int]:
    """Stream ``source`` into ``out``; returns (sha256 hex, size)."""
    digest = hashlib.sha256()
    size = 0
    try:
        while chunk := source.stream.read1(CHUNK_BYTES):  # what has arrived, so counts are exact
            size += len(chunk)
            _check_limits(size, started, limits)
            digest.update(chunk)
            out.write(chunk)
        if source.length is not None and size != source.length:
            raise _Refused(f"the body ended early, {source.length} bytes were announced")
    except (_Refused, OSError, http.client.HTTPException) as exc:
        raise ArtifactError(
            f"model {ref}: {source.verb} of {source.shown} failed after {size} bytes: "
            f"{_reason(exc, limits)}"
        ) from exc
    return digest.hexdigest(), size


def _check_limits(size: int, started: float, limits: FetchLimits) -> None:
    if size > limits.max_bytes:
        raise _Refused(f"the artifact is larger than the limit of {limits.max_bytes} bytes")
    if time.monotonic() - started > limits.deadline_s:
        raise _Refused(f"it took longer than the deadline of {limits.deadline_s:g}s")


def _reason(exc: BaseException, limits: FetchLimits) -> str:
    """A short sentence for why a copy failed, without object addresses."""
    match exc:
        case _Refused():
            return str(exc)
        case TimeoutError():
            return f"no data for {limits.timeout_s:g}s (timed out)"
        case http.client.IncompleteRead():
            return f"the connection closed mid-body ({len(exc.partial)} bytes in the last read)"
        case ConnectionResetError() | http.client.RemoteDisconnected():
            return "the server closed the connection"
        case ConnectionRefusedError():
            return "connection refused"
        case urllib.error.URLError() if isinstance(exc.reason, BaseException):
            return _reason(exc.reason, limits)
        case urllib.error.URLError():
            return str(exc.reason)
        case OSError() if exc.strerror:
            return exc.strerror
        case _:
            return str(exc) or type(exc).__name__


def _content_length(header: str | None) -> int | None:
    if header is None:
        return None
    try:
        length = int(header)
    except ValueError:
        return None
    return length if length >= 0 else None


def shown_uri(uri: str) -> str:
    """``uri`` fit for logs and messages: no user info, and the query (often a token) elided."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return uri
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:  # an unparseable port: urlopen reports it
        netloc = host
    return urlunsplit((parts.scheme, netloc, parts.path, "…" if parts.query else "", ""))
