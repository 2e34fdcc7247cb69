"""``ArtifactCache``: verified artifacts on disk, by digest, bounded in bytes, shared safely.

Layout of the directory: ``<sha256>.pt`` (a verified artifact), ``<sha256>.verified`` (its
marker: the digest bound to the file's identity: device, inode, size, mtime and ctime), and
``.fetch-*.part`` (copies in progress).

- **In use** means pinned: a ``Pin`` holds a shared ``flock`` on the artifact from the start
  of a load until the model built from it is closed. Eviction takes an exclusive lock without
  waiting and skips what it cannot lock, so neither this process nor another node sharing the
  directory loses an artifact it is loading or serving.
- **Bounded**: after each admission and each release, least recently used unpinned artifacts
  are removed until the total is within ``max_bytes`` (the marker's mtime is the last use).
  Copies in progress come on top (one per loader, each within the fetch size limit).
- **Orphans**: a copy in progress holds an exclusive lock on its partial file, so at start
  every partial file nobody holds (its writer died) is removed, and markers without artifacts.
- **Hits are re-verified**: when the file's identity differs from its marker's (or there is no
  marker), it is hashed again; a file whose digest is wrong is removed and the hit is a miss.

Everything here runs on loader threads, never on the event loop: hashing reads whole files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from inference_node.swapping.artifact_files import (
    file_identity,
    hash_fd,
    locked_exclusively,
    same_file,
    touch,
)
from inference_node.swapping.fetch_limits import Cancellation

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 8 << 30
"""Four artifacts at the fetch size limit (2 GiB); a few dozen YOLO checkpoints."""
PARTIAL_PREFIX, PARTIAL_SUFFIX = ".fetch-", ".part"


class Pin:
    """A cached artifact held open: it is not evicted until ``release()``."""

    def __init__(self, cache: ArtifactCache, *, sha256: str, fd: int, size: int) -> None:
        self.cache = cache
        self.sha256 = sha256
        self.size = size
        self.path = cache.artifact_path(sha256)
        self._fd: int | None = fd

    def release(self) -> None:
        """Let the artifact be evicted again (idempotent); trims the cache to its bound."""
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        self.cache.trim()


@dataclass(slots=True, kw_only=True)
class Staging:
    """A partial file being written, locked so no other node takes it for an orphan."""

    path: Path
    fd: int
    admitted: bool = False


class ArtifactCache:
    """Verified artifacts by digest in one directory (see the module docstring)."""

    def __init__(self, directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError(f"artifact cache bound must be positive, got {max_bytes}")
        self.directory = directory
        self.max_bytes = max_bytes
        self._trimming = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)

    def artifact_path(self, sha256: str) -> Path:
        return self.directory / f"{sha256}.pt"

    def remove_orphans(self) -> int:
        """Remove partial files no live copy holds, and markers without artifacts; the count."""
        removed = 0
        for path in self.directory.glob(f"{PARTIAL_PREFIX}*{PARTIAL_SUFFIX}"):
            with locked_exclusively(path) as fd:
                if fd is not None:
                    path.unlink(missing_ok=True)
                    removed += 1
        for marker in self.directory.glob("*.verified"):
            if not self.artifact_path(marker.stem).exists():
                marker.unlink(missing_ok=True)
                removed += 1
        if removed:
            logger.info("artifact cache removed orphans=%d dir=%s", removed, self.directory)
        return removed

    def lookup(self, sha256: str, *, cancel: Cancellation | None = None) -> Pin | None:
        """The verified artifact ``sha256``, pinned; None on a miss (a corrupt copy is removed).

        Raises ``LoadCancelled`` when ``cancel`` is set while re-hashing.
        """
        path = self.artifact_path(sha256)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        pin = Pin(self, sha256=sha256, fd=fd, size=os.fstat(fd).st_size)
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits only for an eviction in progress
        try:
            if not same_file(fd, path):  # evicted or replaced between open and lock
                pin.release()
                return self.lookup(sha256, cancel=cancel)
            if self._verified(sha256, fd, cancel=cancel):
                return pin
        except BaseException:
            pin.release()
            raise
        corrupt = os.fstat(fd)
        pin.release()
        removed = self._remove(sha256, only=(corrupt.st_dev, corrupt.st_ino))
        logger.warning(
            "artifact cache sha256=%s corrupt: %s, fetching again",
            sha256[:12], "removed" if removed else "left to the node holding it",
        )  # fmt: skip
        return None

    @contextlib.contextmanager
    def staging(self) -> Iterator[Staging]:
        """A new locked partial file; removed on the way out unless ``admit`` took it."""
        staging = self._new_partial()
        fd = staging.fd
        try:
            yield staging
        finally:
            if not staging.admitted:
                staging.path.unlink(missing_ok=True)
                os.close(fd)

    def _new_partial(self) -> Staging:
        """A new partial file, locked; made again if another node's orphan sweep removed it
        between its creation and the lock."""
        while True:
            fd, name = tempfile.mkstemp(
                dir=self.directory, prefix=PARTIAL_PREFIX, suffix=PARTIAL_SUFFIX
            )
            fcntl.flock(fd, fcntl.LOCK_EX)
            if same_file(fd, Path(name)):
                return Staging(path=Path(name), fd=fd)
            os.close(fd)

    def admit(self, staging: Staging, *, sha256: str) -> Pin:
        """Move a verified partial file into place as ``sha256``, pinned; then trim.

        The file moves while its exclusive lock is held, and the lock becomes the pin's shared
        one only then: converting a ``flock`` drops it for a moment, which at the partial path
        would let another node's orphan sweep remove the file. This process's trims wait.
        """
        with self._trimming:
            os.replace(staging.path, self.artifact_path(sha256))
            staging.admitted = True
            fcntl.flock(staging.fd, fcntl.LOCK_SH)
        stat = os.fstat(staging.fd)
        pin = Pin(self, sha256=sha256, fd=staging.fd, size=stat.st_size)
        try:
            self._write_marker(sha256, file_identity(stat))
            self.trim()
        except BaseException:
            pin.release()  # else the fd and its lock stay: never closed, never evictable
            raise
        return pin

    def trim(self) -> None:
        """Evict least recently used unpinned artifacts until the total is within the bound."""
        with self._trimming:
            entries = sorted(self._entries(), key=lambda entry: entry[2])
            total = sum(size for _, size, _ in entries)
            for sha256, size, _ in entries:
                if total <= self.max_bytes:
                    break
                if self._evict(sha256):
                    total -= size
            if total > self.max_bytes:
                logger.warning(
                    "artifact cache holds bytes=%d over its bound=%d: the rest is in use",
                    total, self.max_bytes,
                )  # fmt: skip

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def _entries(self) -> list[tuple[str, int, int]]:
        """(sha256, size, last use in ns) of every cached artifact."""
        entries = []
        for path in self.directory.glob("*.pt"):
            with contextlib.suppress(FileNotFoundError):  # evicted meanwhile by another node
                size = path.stat().st_size
                marker = self._marker(path.stem)
                used = (marker if marker.exists() else path).stat().st_mtime_ns
                entries.append((path.stem, size, used))
        return entries

    def _evict(self, sha256: str) -> bool:
        if not self._remove(sha256):
            return False
        logger.info("artifact cache evicted sha256=%s", sha256[:12])
        return True

    def _remove(self, sha256: str, *, only: tuple[int, int] | None = None) -> bool:
        """Remove the artifact and its marker if nobody holds it (and, given ``only``, if it is
        still that (device, inode): not a good copy another node put in place meanwhile)."""
        path = self.artifact_path(sha256)
        with locked_exclusively(path) as fd:
            if fd is None or not same_file(fd, path):
                return False
            held = os.fstat(fd)
            if only is not None and (held.st_dev, held.st_ino) != only:
                return False
            path.unlink(missing_ok=True)
            self._marker(sha256).unlink(missing_ok=True)
        return True

    def _verified(self, sha256: str, fd: int, *, cancel: Cancellation | None) -> bool:
        identity = file_identity(os.fstat(fd))
        marker = self._marker(sha256)
        if self._read_marker(marker) == identity:
            touch(marker)
            return True
        logger.info("artifact cache sha256=%s re-verifying: file changed or unmarked", sha256[:12])
        if hash_fd(fd, cancel) != sha256:
            return False
        self._write_marker(sha256, identity)
        return True

    def _marker(self, sha256: str) -> Path:
        return self.directory / f"{sha256}.verified"

    @staticmethod
    def _read_marker(marker: Path) -> dict[str, int] | None:
        try:
            loaded = json.loads(marker.read_text())
        except (OSError, ValueError):  # missing, or torn by a concurrent write: re-hash
            return None
        return loaded if isinstance(loaded, dict) else None

    def _write_marker(self, sha256: str, identity: dict[str, int]) -> None:
        marker = self._marker(sha256)
        marker.write_text(json.dumps(identity, sort_keys=True))
        touch(marker)
