"""The dev server's persistence: a JSON snapshot of the store, written atomically and debounced.

The file holds the global index, the KV entries (values base64), the tombstones and the sessions.
Writes go to a temporary file in the same directory, are fsynced and then renamed over the old
snapshot, so a crash leaves either the old or the new state, never half of one. Changes are
written at most ``debounce`` seconds after they happen and once more on close, so a clean stop
loses nothing and a crash loses at most the last ``debounce`` seconds. TTL timers and lock-delays
are not saved: restored sessions get a full TTL again, as after a Consul leader election.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from yolofleet.consul.kvstore import StoreImage
from yolofleet.consul.model import SERF_HEALTH, KVPair, SessionBehavior, SessionInfo

logger = logging.getLogger(__name__)

SNAPSHOT_NAME = "consul-state.json"
FORMAT_VERSION = 1


def image_to_json(image: StoreImage) -> dict[str, Any]:
    """The snapshot document for ``image``."""
    return {
        "version": FORMAT_VERSION,
        "index": image.index,
        "kv_index": image.kv_index,
        "session_index": image.session_index,
        "entries": [
            {
                "key": e.key,
                "value": base64.b64encode(e.value).decode("ascii"),
                "flags": e.flags,
                "create_index": e.create_index,
                "modify_index": e.modify_index,
                "lock_index": e.lock_index,
                "session": e.session,
            }
            for e in image.entries
        ],
        "tombstones": [[key, index] for key, index in image.tombstones],
        "sessions": [
            {
                "id": s.id,
                "name": s.name,
                "node": s.node,
                "behavior": s.behavior.value,
                "ttl": s.ttl,
                "lock_delay": s.lock_delay,
                "node_checks": list(s.node_checks),
                "service_checks": list(s.service_checks),
                "checks": list(s.checks),
                "create_index": s.create_index,
                "modify_index": s.modify_index,
            }
            for s in image.sessions
        ],
    }


def image_from_json(doc: dict[str, Any]) -> StoreImage:
    """Parse a snapshot document; raise ``ValueError`` if it is not one we wrote."""
    if doc.get("version") != FORMAT_VERSION:
        raise ValueError(f"unsupported snapshot version {doc.get('version')!r}")
    try:
        entries = tuple(
            KVPair(
                key=e["key"],
                value=base64.b64decode(e["value"]),
                flags=e["flags"],
                create_index=e["create_index"],
                modify_index=e["modify_index"],
                lock_index=e["lock_index"],
                session=e["session"],
            )
            for e in doc["entries"]
        )
        sessions = tuple(
            SessionInfo(
                id=s["id"],
                name=s["name"],
                node=s["node"],
                behavior=SessionBehavior(s["behavior"]),
                ttl=s["ttl"],
                lock_delay=s["lock_delay"],
                # Snapshots written before sessions kept their checks had only the default.
                node_checks=tuple(s.get("node_checks", [SERF_HEALTH])),
                service_checks=tuple(s.get("service_checks", [])),
                checks=tuple(s.get("checks", [])),
                create_index=s["create_index"],
                modify_index=s["modify_index"],
            )
            for s in doc["sessions"]
        )
        tombstones = tuple((str(key), int(index)) for key, index in doc["tombstones"])
        return StoreImage(
            index=int(doc["index"]),
            kv_index=int(doc["kv_index"]),
            session_index=int(doc["session_index"]),
            entries=entries,
            tombstones=tombstones,
            sessions=sessions,
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed snapshot: {exc!r}") from exc


def load_image(path: Path) -> StoreImage | None:
    """The image saved at ``path``, or ``None`` when there is no snapshot yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return image_from_json(json.loads(text))
    except ValueError as exc:
        raise ValueError(f"cannot restore dev Consul state from {path}: {exc}") from exc


def write_image(path: Path, image: StoreImage) -> None:
    """Replace the snapshot at ``path`` with ``image`` atomically."""
    data = json.dumps(image_to_json(image), separators=(",", ":")).encode("utf-8")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class SnapshotWriter:
    """Writes the store's image to ``path`` shortly after each change, on its own thread."""

    def __init__(self, path: Path, *, debounce: float = 0.05) -> None:
        self._path = path
        self._debounce = debounce
        self._cond = threading.Condition()
        self._dirty = False
        self._stopping = False
        self._dump: Callable[[], StoreImage] | None = None
        self._thread: threading.Thread | None = None

    def mark_dirty(self) -> None:
        """Note that the store changed; cheap enough to call under the store's lock."""
        with self._cond:
            self._dirty = True
            self._cond.notify()

    def start(self, dump: Callable[[], StoreImage]) -> None:
        """Begin writing images taken with ``dump``."""
        self._dump = dump
        self._thread = threading.Thread(target=self._run, name="dev-consul-snapshot", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread and write the final image."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
        self._write()

    def _run(self) -> None:
        while self._next_write():
            try:
                self._write()
            except Exception:
                logger.exception("dev consul snapshot write failed path=%s", self._path)

    def _next_write(self) -> bool:
        """Wait for a change plus the debounce; ``False`` once closing."""
        with self._cond:
            self._cond.wait_for(lambda: self._dirty or self._stopping)
            self._cond.wait_for(lambda: self._stopping, timeout=self._debounce)
            self._dirty = False
            return not self._stopping

    def _write(self) -> None:
        if self._dump is not None:
            write_image(self._path, self._dump())
