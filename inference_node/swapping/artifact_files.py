"""File-level helpers under ``ArtifactCache``: a file's identity, non-blocking exclusive locks,
LRU touches on markers, and hashing an open file (cancellable)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from inference_node.errors import LoadCancelled
from inference_node.swapping.fetch_limits import Cancellation

HASH_CHUNK_BYTES = 1 << 20


def touch(marker: Path) -> None:
    """Record a use in the marker's mtime (the clock's own resolution, not the file system's
    coarser one, so uses in quick succession keep their order)."""
    now = time.time_ns()
    with contextlib.suppress(OSError):  # removed meanwhile: only the LRU order suffers
        os.utime(marker, ns=(now, now))


def file_identity(stat: os.stat_result) -> dict[str, int]:
    return {
        "device": stat.st_dev,
        "inode": stat.st_ino,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
    }


def same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


@contextlib.contextmanager
def locked_exclusively(path: Path) -> Iterator[int | None]:
    """An fd on ``path`` locked exclusively without waiting, or None when someone holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        yield fd
    finally:
        os.close(fd)


def hash_fd(fd: int, cancel: Cancellation | None) -> str:
    digest = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, HASH_CHUNK_BYTES, offset):
        if cancel is not None and cancel.is_set():
            raise LoadCancelled("cancelled while re-verifying a cached artifact")
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()
