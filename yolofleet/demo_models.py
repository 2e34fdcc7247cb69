"""The project's own demo/test models, trained offline on the synthetic shapes data set.

``ensure_models()`` returns at once when every output in ``models_dir()`` matches its recipe:
each entry of ``manifest.json`` keeps a hash of the training parameters, so changing a recipe
retrains it and every model built from it. Otherwise it trains what is stale under a file lock;
each checkpoint is trained in a temporary folder and renamed into place. The same runs as
``python -m yolofleet.demo_models``.

This module is the cache: staleness, the build lock, the calibration set and the entry points.
The recipes live in :mod:`yolofleet.demo_recipes`, the training in
:mod:`yolofleet.demo_training`, and the manifest format in :mod:`yolofleet.demo_manifest`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from yolofleet.demo_manifest import (
    CalibrationImage,
    ModelInfo,
    read_calibration,
    read_entries,
    read_manifest,
    update_manifest,
    write_json,
)
from yolofleet.demo_recipes import CALIBRATION, IMGSZ, RECIPES, calibration_hash, params_hash
from yolofleet.demo_training import train
from yolofleet.digests import file_sha256
from yolofleet.paths import cache_dir, models_dir
from yolofleet.synthetic import DEFAULT_CLASSES, render_image

__all__ = [
    "CalibrationImage",
    "DemoModels",
    "ModelInfo",
    "build_models",
    "ensure_models",
    "main",
    "read_calibration",
    "read_manifest",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoModels:
    """Where the demo models, the calibration set and the manifest are."""

    v1: Path
    v2: Path
    alt: Path
    slow: Path
    drift: Path
    broken: Path
    calibration_dir: Path
    calibration_manifest: Path
    manifest: Path


def ensure_models(root: Path | None = None) -> DemoModels:
    """Bring every demo model under ``root`` (default ``models_dir()``) up to date; return paths."""
    root = root or models_dir()
    return _layout(root) if not _stale(root) else build_models(root)


def build_models(root: Path | None = None) -> DemoModels:
    """Train what is stale under ``root`` in this process, holding the build lock."""
    root = root or models_dir()
    with _locked(root):
        _remove_leftovers(root)
        stale = _stale(root)
        if "calibration" in stale:
            _write_calibration(root)
            update_manifest(root, "calibration", {"params_hash": calibration_hash()})
        for recipe in RECIPES:
            if recipe.name in stale:
                info = train(recipe, root=root)
                update_manifest(root, recipe.name, dataclasses.asdict(info))
        if not stale:
            logger.info("demo models up to date in %s", root)
    return _layout(root)


def _layout(root: Path) -> DemoModels:
    return DemoModels(
        v1=root / "shapes-v1.pt",
        v2=root / "shapes-v2.pt",
        alt=root / "shapes-alt.pt",
        slow=root / "shapes-slow.pt",
        drift=root / "shapes-drift.pt",
        broken=root / "shapes-broken.pt",
        calibration_dir=root / "calibration",
        calibration_manifest=root / "calibration" / "manifest.json",
        manifest=root / "manifest.json",
    )


def _stale(root: Path) -> list[str]:
    """Names of the outputs (``calibration`` and model names) that are missing or out of date.

    A model is also stale when its parent is, or when it was built from other parent weights.
    """
    entries = read_entries(root / "manifest.json")
    stale = []
    calibration = entries.get("calibration", {})
    if (
        calibration.get("params_hash") != calibration_hash()
        or not (root / "calibration" / "manifest.json").is_file()
    ):
        stale.append("calibration")
    for recipe in RECIPES:
        entry = entries.get(recipe.name, {})
        parent = entries.get(recipe.parent, {}) if recipe.parent else {}
        path = root / str(entry.get("file", "-"))
        if (
            recipe.parent in stale
            or entry.get("params_hash") != params_hash(recipe)
            or entry.get("parent_sha256") != parent.get("sha256")
            or not path.is_file()
            or file_sha256(path) != entry.get("sha256")
        ):
            stale.append(recipe.name)
    return stale


def _write_calibration(root: Path) -> None:
    """Render the golden images (a seed no training set uses) and their manifest."""
    work = Path(tempfile.mkdtemp(prefix=".calibration-", dir=root))
    work.chmod(0o755)
    seed = CALIBRATION.seed
    images = []
    for index in range(CALIBRATION.count):
        sample = render_image(
            (seed, index),
            size=IMGSZ,
            max_shapes=CALIBRATION.max_shapes,
            min_extent=CALIBRATION.min_extent,
        )
        name = f"golden-{index:02d}.png"
        sample.image.save(work / name)
        boxes = [
            {"class_name": b.class_name, "x1": b.x1, "y1": b.y1, "x2": b.x2, "y2": b.y2}
            for b in sample.boxes
        ]
        floor = max(1, len(boxes) - CALIBRATION.slack)
        images.append({"file": name, "min_detections": floor, "boxes": boxes})
    document = {"seed": seed, "imgsz": IMGSZ, "classes": list(DEFAULT_CLASSES), "images": images}
    write_json(work / "manifest.json", document)
    target = root / "calibration"
    if target.exists():
        trash = Path(tempfile.mkdtemp(prefix=".calibration-old-", dir=root))
        os.replace(target, trash / "calibration")
        os.replace(work, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(work, target)
    logger.info("calibration images=%d seed=%d dir=%s", len(images), seed, target)


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Serialise builders across processes (pytest workers, a CLI run in another shell)."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_leftovers(root: Path) -> None:
    """Delete temporary files of interrupted runs (safe: the caller holds the lock)."""
    datasets = cache_dir() / "datasets"
    for folder, prefix in (
        (root, ".train-"),
        (root, ".calibration-"),
        (root, ".manifest.json-"),
        (datasets, ".shapes-tmp-"),
    ):
        for leftover in folder.glob(f"{prefix}*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    """Build (or confirm) every demo model and log a summary."""
    parser = argparse.ArgumentParser(prog="python -m yolofleet.demo_models")
    parser.add_argument("--root", type=Path, default=None, help="default: the models cache")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    started = time.monotonic()
    models = build_models(args.root)
    for name, info in read_manifest(models.manifest).items():
        logger.info(
            "model=%s classes=%s imgsz=%d map50=%.3f seconds=%.1f",
            name,
            ",".join(info.classes),
            info.imgsz,
            info.map50,
            info.train_seconds,
        )
    logger.info("done in %.1fs manifest=%s", time.monotonic() - started, models.manifest)


if __name__ == "__main__":
    main()
