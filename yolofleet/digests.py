"""Content digests of files: the sha256 every artifact, cache entry and record is keyed by."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK_BYTES = 1 << 20


def file_digest(path: Path) -> tuple[str, int]:
    """(hex sha256, size in bytes) of the file at ``path``, read in 1 MiB chunks.

    Raises ``OSError`` when the file cannot be read; callers turn that into their own error.
    """
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def file_sha256(path: Path) -> str:
    """The hex sha256 of the file at ``path``."""
    return file_digest(path)[0]
