"""Copy a model artifact from where its ``ModelRef`` points into a file, hashing as it goes.

Sources are ``file://`` URIs and plain paths, and ``http://`` / ``https://`` URLs (stdlib
``http.client``, up to five redirects). ``check_source`` refuses a malformed sha256 or an
unsupported scheme before any I/O.

The copy runs on a thread of its own; the calling thread watches it by the clock against
:class:`FetchLimits` (time to connect and get the response headers, time without a byte, the
whole copy's deadline) and the caller's ``cancel`` event. When one of them trips, the watcher
shuts the socket down and raises at once: a server that trickles one byte every two seconds, a
hung DNS lookup or a stalled NFS read can keep the copy thread busy, never the caller. Files
must be regular files (a FIFO is refused, opened without blocking).

Failures raise ``ArtifactError`` (transient: timeouts, refused or dropped connections, HTTP 5xx
and 429), ``ArtifactRefused`` (permanent: HTTP 4xx such as 404, 403, 410, a missing or
non-regular file, over the size limit) or ``LoadCancelled``, each naming the model, the source
and the bytes received. Judging the digest and the content is the caller's job.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from inference_node.errors import ArtifactError, ArtifactRefused, LoadCancelled
from inference_node.model import ModelRef
from inference_node.swapping.fetch_copy import Copy, Failure, source_verb
from inference_node.swapping.fetch_limits import Cancellation, FetchLimits, broken_limit

logger = logging.getLogger(__name__)

WATCH_TICK_S = 0.1
"""How often the watcher looks at a copy: the bound on how late a deadline or cancel acts."""
SCHEMES = frozenset({"", "file", "http", "https"})
_SHA256 = re.compile(r"[0-9a-f]{64}")

__all__ = ["FetchLimits", "Fetched", "check_source", "fetch_into", "shown_uri"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Fetched:
    """What a complete copy held: its sha256 and size, not yet judged against any digest."""

    sha256: str
    size: int


def check_source(ref: ModelRef) -> None:
    """Refuse, before any I/O, a ref whose digest is malformed or whose scheme is unsupported."""
    if not _SHA256.fullmatch(ref.sha256):
        raise ArtifactRefused(
            f"model {ref}: expected sha256 {ref.sha256!r} is not 64 lowercase hex digits"
        )
    scheme = urlsplit(ref.uri).scheme
    if scheme not in SCHEMES:
        raise ArtifactRefused(
            f"model {ref}: artifact scheme {scheme!r} is not supported "
            "(use file://, http:// or https://)"
        )


def fetch_into(
    ref: ModelRef,
    fd: int,
    *,
    limits: FetchLimits,
    cancel: Cancellation | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Fetched:
    """Copy ``ref``'s artifact into the open file ``fd`` (left open for the caller).

    Raises ``ArtifactError``, ``ArtifactRefused`` or ``LoadCancelled``; on any of them the
    file's content is undefined (the caller removes it) and the copy thread may still be
    winding down, writing nothing the caller reads.
    """
    check_source(ref)
    started = clock()
    copy = Copy(ref, out_fd=os.dup(fd), limits=limits, clock=clock)
    worker = threading.Thread(
        target=copy.run, name=f"fetch-{ref.sha256[:8]}", daemon=True
    )  # daemon: a copy stuck in the kernel must not keep the process alive
    worker.start()
    _watch(ref, copy, limits=limits, cancel=cancel, clock=clock)
    if copy.failure is not None:
        raise _error(ref, copy.failure, received=copy.progress.received)
    assert copy.result is not None
    digest, size = copy.result
    logger.info(
        "artifact copied model=%s source=%s bytes=%d seconds=%.2f",
        ref, shown_uri(ref.uri), size, clock() - started,
    )  # fmt: skip
    return Fetched(sha256=digest, size=size)


def _watch(
    ref: ModelRef,
    copy: Copy,
    *,
    limits: FetchLimits,
    cancel: Cancellation | None,
    clock: Callable[[], float],
) -> None:
    """Wait for ``copy`` to finish; abort it and raise when a limit trips or ``cancel`` is set."""
    while not copy.done.wait(WATCH_TICK_S):
        if cancel is not None and cancel.is_set():
            copy.abort()
            raise LoadCancelled(
                f"model {ref}: {source_verb(ref.uri)} of {shown_uri(ref.uri)} cancelled after "
                f"{copy.progress.received} bytes"
            )
        broken = broken_limit(copy.progress.snapshot(), now=clock(), limits=limits)
        if broken is not None:
            copy.abort()
            raise ArtifactError(
                f"model {ref}: {source_verb(ref.uri)} of {shown_uri(ref.uri)} failed after "
                f"{copy.progress.received} bytes: {broken}"
            )


def _error(ref: ModelRef, failure: Failure, *, received: int) -> ArtifactError:
    verb, shown = source_verb(ref.uri), shown_uri(ref.uri)
    kind = ArtifactRefused if failure.permanent else ArtifactError
    if failure.before_body:
        return kind(f"model {ref}: {verb} of {shown} {failure.reason}")
    return kind(f"model {ref}: {verb} of {shown} failed after {received} bytes: {failure.reason}")


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
    except ValueError:  # an unparseable port: the connection attempt reports it
        netloc = host
    return urlunsplit((parts.scheme, netloc, parts.path, "…" if parts.query else "", ""))
