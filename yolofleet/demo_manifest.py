"""The demo models' manifest files: their entry types, reading them, and atomic file writes.

Both the model cache (:mod:`yolofleet.demo_models`) and the trainer
(:mod:`yolofleet.demo_training`) use this module, so neither has to import the other's internals.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolofleet.synthetic import Box


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelInfo:
    """One model in ``manifest.json``; ``imgsz``, ``classes`` and ``task`` come from the file."""

    name: str
    file: str
    sha256: str
    classes: tuple[str, ...]
    imgsz: int
    task: str
    arch: str
    parent: str | None
    parent_sha256: str | None
    epochs: int
    map50: float
    map50_95: float
    train_seconds: float
    params_hash: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CalibrationImage:
    """A golden image, its ground truth and the fewest detections a healthy model yields on it."""

    file: str
    boxes: tuple[Box, ...]
    min_detections: int


def read_manifest(path: Path) -> dict[str, ModelInfo]:
    """The model entries of a ``manifest.json`` written by :func:`build_models`."""
    entries = read_entries(path)
    return {
        name: ModelInfo(**{**entry, "classes": tuple(entry["classes"])})
        for name, entry in entries.items()
        if name != "calibration"
    }


def read_calibration(path: Path) -> tuple[CalibrationImage, ...]:
    """The images listed in a calibration ``manifest.json``."""
    document = json.loads(path.read_text())
    classes = list(document["classes"])
    return tuple(
        CalibrationImage(
            file=item["file"],
            min_detections=item["min_detections"],
            boxes=tuple(
                Box(class_id=classes.index(box["class_name"]), **box) for box in item["boxes"]
            ),
        )
        for item in document["images"]
    )


def update_manifest(root: Path, key: str, entry: Mapping[str, Any]) -> None:
    """Set ``key`` of ``root/manifest.json`` to ``entry``, rewriting the file atomically."""
    entries = read_entries(root / "manifest.json")
    entries[key] = dict(entry)
    write_json(root / "manifest.json", entries)


def read_entries(path: Path) -> dict[str, Any]:
    """The raw entries of a manifest; empty when it is missing or unreadable."""
    try:
        entries = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return entries if isinstance(entries, dict) else {}


def write_json(path: Path, document: Any) -> None:
    """Write ``document`` as sorted, indented JSON, atomically."""
    write_atomically(path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())


def write_atomically(path: Path, content: bytes) -> None:
    """Write ``content`` to a temporary file next to ``path``, then rename it into place."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(handle, "wb") as file:
        file.write(content)
        os.fchmod(file.fileno(), 0o644)
    os.replace(temporary, path)
