"""Admission: what the node takes in, counted from the moment a request arrives.

A request is counted from its arrival, before its image is decoded, until its answer is sent:
at most ``max_waiting`` requests may wait (arrived, decoding or queued) beside the batch that
runs, and the bytes every request holds (its wire bytes, its decode at the peak, then its
decoded pixels) stay within ``max_inflight_bytes``. Inference RPCs and streams are counted
too. The excess is refused at once with ``Overloaded`` (RESOURCE_EXHAUSTED), before any work is
spent on it. Counters are guarded by a lock: a ticket's decode is reserved on the decode pool.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from inference_node.errors import InvalidImage, Overloaded

MEMORY_FRACTION = 4
"""Requests may hold a quarter of the memory the node may use (its cgroup limit, else RAM)."""
MIN_INFLIGHT_BYTES = 64 * 1024 * 1024
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True, slots=True, kw_only=True)
class AdmissionLimits:
    """Bounds on the work the node takes in (``None`` bytes: derived from the memory limit)."""

    max_inflight_bytes: int | None = None
    max_rpcs: int = 128
    """Detect calls and DetectStream streams open at once."""
    max_streams: int = 16
    stream_window: int = 8
    """Frames of one stream in flight at once; the next frame is read when one is answered."""
    stream_idle_s: float = 60.0
    """A stream with no frame in flight that sends nothing for this long is ended."""

    def resolved(self, *, cgroup_root: Path = CGROUP_ROOT) -> AdmissionLimits:
        """These limits with ``max_inflight_bytes`` derived from the memory limit if unset."""
        if self.max_inflight_bytes is not None:
            return self
        derived = max(memory_limit_bytes(cgroup_root) // MEMORY_FRACTION, MIN_INFLIGHT_BYTES)
        return replace(self, max_inflight_bytes=derived)


def memory_limit_bytes(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The memory this process may use: its cgroup's limit (v2, then v1), else physical RAM."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for name in ("memory.max", "memory/memory.limit_in_bytes"):
        try:
            text = (cgroup_root / name).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < physical:
            return int(text)
    return int(physical)


class Admission:
    """Counts admitted requests, their bytes, and open RPCs and streams."""

    def __init__(self, limits: AdmissionLimits, *, max_waiting: int) -> None:
        resolved = limits.resolved()
        assert resolved.max_inflight_bytes is not None
        self.limits = resolved
        self.max_bytes = resolved.max_inflight_bytes
        self._max_waiting = max_waiting
        self._lock = threading.Lock()
        self.requests = 0
        """Requests arrived and not yet answered."""
        self.arriving = 0
        """Requests arrived and not yet handed to the batcher (still decoding)."""
        self.bytes = 0
        self.rpcs = 0
        self.streams = 0

    def arrive(
        self, *, wire_bytes: int, running: int, on_close: Callable[[], None] | None = None
    ) -> Ticket:
        """Count a request that just arrived, or refuse it: too many waiting, or too many bytes.

        ``running`` requests (in the batch on the device) do not count as waiting;
        ``on_close`` is called when the ticket is closed.
        """
        with self._lock:
            if self.requests - running >= self._max_waiting:
                raise Overloaded(f"request queue is full ({self._max_waiting} waiting)")
            self._take_bytes(wire_bytes)
            self.requests += 1
            self.arriving += 1
        return Ticket(self, wire_bytes=wire_bytes, on_close=on_close)

    @contextmanager
    def rpc(self, *, stream: bool = False) -> Iterator[None]:
        """Count one inference RPC (a stream is one) while it is open, or refuse it."""
        with self._lock:
            if self.rpcs >= self.limits.max_rpcs:
                raise Overloaded(f"too many inference calls open ({self.limits.max_rpcs})")
            if stream and self.streams >= self.limits.max_streams:
                raise Overloaded(f"too many streams open ({self.limits.max_streams})")
            self.rpcs += 1
            self.streams += stream
        try:
            yield
        finally:
            with self._lock:
                self.rpcs -= 1
                self.streams -= stream

    def _take_bytes(self, count: int) -> None:
        """Add ``count`` held bytes, or raise; the caller holds the lock."""
        if self.bytes + count > self.max_bytes:
            raise Overloaded(
                f"requests in flight hold {self.bytes} bytes; {count} more would pass "
                f"the limit of {self.max_bytes}"
            )
        self.bytes += count


class Ticket:
    """One admitted request's share of the counters; ``close`` gives it all back.

    It holds the request's wire bytes for its whole life, and a reservation that is first a
    decode's peak and then, once decoded, the pixels' bytes.
    """

    def __init__(
        self, admission: Admission, *, wire_bytes: int, on_close: Callable[[], None] | None
    ) -> None:
        self._admission = admission
        self._wire = wire_bytes
        self._reserved = 0
        self._on_close = on_close
        self._arriving = True
        self._closed = False

    @property
    def held_bytes(self) -> int:
        return self._wire + self._reserved

    def reserve(self, count: int) -> None:
        """Reserve ``count`` bytes (a decode's peak) or raise before the work is done.

        A request that needs more than the whole limit can never run here: ``InvalidImage``.
        """
        admission = self._admission
        if count + self._wire > admission.max_bytes:
            raise InvalidImage(
                f"decoding this image needs {count} bytes, over the node's in-flight limit "
                f"of {admission.max_bytes}"
            )
        with admission._lock:
            admission._take_bytes(count)
            self._reserved += count

    def settle(self, count: int) -> None:
        """Shrink the reservation to ``count`` bytes (the decoded pixels, once decoded)."""
        with self._admission._lock:
            self._admission.bytes -= self._reserved - count
            self._reserved = count

    def submitted(self) -> None:
        """The request reached the batcher's queue: it is no longer arriving."""
        with self._admission._lock:
            self._stop_arriving()

    def close(self) -> None:
        """The request is answered (or refused): give back everything it held."""
        if self._closed:
            return
        with self._admission._lock:
            self._stop_arriving()
            self._admission.bytes -= self.held_bytes
            self._admission.requests -= 1
            self._wire = self._reserved = 0
            self._closed = True
        if self._on_close is not None:
            self._on_close()

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _stop_arriving(self) -> None:
        if self._arriving:
            self._admission.arriving -= 1
            self._arriving = False
