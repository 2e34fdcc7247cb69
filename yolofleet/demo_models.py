"""The project's own demo/test models, trained offline on the synthetic shapes data set.

``ensure_models()`` returns at once when every output in ``models_dir()`` matches its recipe:
each entry of ``manifest.json`` keeps a hash of the training parameters, so changing a recipe
retrains it and every model built from it. Otherwise it trains what is stale under a file lock;
each checkpoint is trained in a temporary folder and renamed into place. The same runs as
``python -m yolofleet.demo_models``.

Torch threads stay at ultralytics' CPU default (``cpu_count - 1``, so 1 on a 2-core machine):
two OpenMP threads sharing two cores with any other busy process slowed epochs 5-25x here.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import importlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolofleet.paths import cache_dir, models_dir
from yolofleet.synthetic import DEFAULT_CLASSES, Box, DatasetSpec, render_image, write_dataset

logger = logging.getLogger(__name__)

RECIPE_VERSION = 1
IMGSZ = 160

# Shared by every recipe. nbs=batch makes each batch an optimizer step: ultralytics' default
# nbs=64 accumulates 8 batches, which leaves a from-scratch model near mAP50 0.06 after 10 epochs.
TRAIN_ARGS: Mapping[str, Any] = {
    "imgsz": IMGSZ,
    "batch": 8,
    "nbs": 8,
    "optimizer": "AdamW",
    "mosaic": 0.0,
    "close_mosaic": 0,
    "scale": 0.25,
    "val": False,
    "plots": False,
    "amp": False,
    "device": "cpu",
    "workers": 0,
    "deterministic": True,
    "verbose": False,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipe:
    """How one demo model is trained.

    ``parent`` names the model whose weights it starts from; retraining a parent retrains its
    children. A parent of another architecture is widened first (every channel repeated,
    Net2Net style), so the wider network starts out computing what the parent computed.
    """

    name: str
    arch: str
    data: DatasetSpec
    epochs: int
    lr0: float = 0.002
    warmup_epochs: float = 0.0
    parent: str | None = None
    seed: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CalibrationSpec:
    """The golden set: a seed no training set uses, larger shapes, every class 4-5 times."""

    seed: int = 7927
    count: int = 8
    max_shapes: int = 3
    min_extent: float = 0.2
    slack: int = 1
    """A golden image may miss this many of its shapes: the gate catches broken models."""


CALIBRATION = CalibrationSpec()
_SWAPPED = (("circle", "square"), ("square", "circle"))
RECIPES: tuple[Recipe, ...] = (
    Recipe(
        name="shapes-v1",
        arch="yolov8n.yaml",
        data=DatasetSpec(seed=1),
        epochs=15,
        warmup_epochs=0.5,
    ),
    Recipe(
        name="shapes-v2",
        arch="yolov8n.yaml",
        data=DatasetSpec(seed=1),
        epochs=6,
        lr0=0.001,
        parent="shapes-v1",
    ),
    Recipe(
        name="shapes-alt",
        arch="yolov8n.yaml",
        data=DatasetSpec(seed=2, classes=(*DEFAULT_CLASSES, "star")),
        epochs=6,
        parent="shapes-v1",
    ),
    Recipe(
        name="shapes-slow",
        arch="yolov8s.yaml",
        data=DatasetSpec(seed=1),
        epochs=1,
        lr0=0.00001,  # keep what widening preserved: Adam's first steps move every weight by ~lr
        parent="shapes-v1",
    ),
    Recipe(
        name="shapes-drift",
        arch="yolov8n.yaml",
        data=DatasetSpec(seed=1, draw_as=_SWAPPED),
        epochs=4,
        parent="shapes-v1",
    ),
)


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


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoModels:
    """Where the demo models, the calibration set and the manifest are."""

    v1: Path
    v2: Path
    alt: Path
    slow: Path
    drift: Path
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
            _update_manifest(root, "calibration", {"params_hash": _calibration_hash()})
        for recipe in RECIPES:
            if recipe.name in stale:
                info = _train(recipe, root=root)
                _update_manifest(root, recipe.name, dataclasses.asdict(info))
        if not stale:
            logger.info("demo models up to date in %s", root)
    return _layout(root)


def read_manifest(path: Path) -> dict[str, ModelInfo]:
    """The model entries of a ``manifest.json`` written by :func:`build_models`."""
    entries = _read_entries(path)
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


def _layout(root: Path) -> DemoModels:
    return DemoModels(
        v1=root / "shapes-v1.pt",
        v2=root / "shapes-v2.pt",
        alt=root / "shapes-alt.pt",
        slow=root / "shapes-slow.pt",
        drift=root / "shapes-drift.pt",
        calibration_dir=root / "calibration",
        calibration_manifest=root / "calibration" / "manifest.json",
        manifest=root / "manifest.json",
    )


def params_hash(recipe: Recipe) -> str:
    """A short hash of everything that determines how ``recipe`` trains."""
    document = {
        "version": RECIPE_VERSION,
        "recipe": dataclasses.asdict(recipe),
        "train_args": dict(TRAIN_ARGS),
    }
    return _digest(document)


def _calibration_hash() -> str:
    return _digest({"version": RECIPE_VERSION, "imgsz": IMGSZ, **dataclasses.asdict(CALIBRATION)})


def _stale(root: Path) -> list[str]:
    """Names of the outputs (``calibration`` and model names) that are missing or out of date.

    A model is also stale when its parent is, or when it was built from other parent weights.
    """
    entries = _read_entries(root / "manifest.json")
    stale = []
    calibration = entries.get("calibration", {})
    if (
        calibration.get("params_hash") != _calibration_hash()
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
            or _sha256(path) != entry.get("sha256")
        ):
            stale.append(recipe.name)
    return stale


def _train(recipe: Recipe, *, root: Path) -> ModelInfo:
    """Train ``recipe`` in a temporary folder, then rename its best checkpoint into ``root``."""
    import torch

    threads = torch.get_num_threads()  # ultralytics changes it process-wide; restored below
    data_yaml = _dataset(recipe.data)
    work = Path(tempfile.mkdtemp(prefix=".train-", dir=root))
    try:
        started = time.monotonic()
        best, metrics = _fit(recipe, root=root, data_yaml=data_yaml, work=work)
        seconds = time.monotonic() - started
        target = root / f"{recipe.name}.pt"
        os.replace(best, target)
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(work, ignore_errors=True)
    info = _describe(recipe, target, seconds=seconds, metrics=metrics)
    logger.info(
        "model=%s trained arch=%s parent=%s epochs=%d map50=%.3f map50_95=%.3f seconds=%.1f",
        recipe.name,
        recipe.arch,
        recipe.parent,
        recipe.epochs,
        info.map50,
        info.map50_95,
        seconds,
    )
    return info


def _fit(recipe: Recipe, *, root: Path, data_yaml: Path, work: Path) -> tuple[Path, Any]:
    """Run ultralytics' trainer; return the best checkpoint and its final validation metrics."""
    yolo = _yolo_class()
    start: Path | bool = False
    if recipe.parent:
        start = root / f"{recipe.parent}.pt"
        if _recipe(recipe.parent).arch != recipe.arch:
            start = _widen(start, arch=recipe.arch, nc=len(recipe.data.classes), work=work)
    model = yolo(recipe.arch)
    metrics = model.train(
        data=str(data_yaml),
        pretrained=str(start) if start else False,
        epochs=recipe.epochs,
        lr0=recipe.lr0,
        warmup_epochs=recipe.warmup_epochs,
        seed=recipe.seed,
        project=str(work),
        name=recipe.name,
        exist_ok=True,
        **TRAIN_ARGS,
    )
    return Path(model.trainer.best), metrics


def _widen(parent: Path, *, arch: str, nc: int, work: Path) -> Path:
    """Net2Net widening: repeat every channel so the wider network computes what ``parent`` did.

    YOLOv8 n and s share their depth and differ by 2x in width (the box branch of the head by
    1x), so each tensor repeats along the dimensions that grew; a conv weight is divided by how
    often its input channels repeat. Repeating each channel in place keeps ``chunk``/``cat``
    layouts consistent.
    """
    import torch

    tasks: Any = importlib.import_module("ultralytics.nn.tasks")  # untyped; after _yolo_class()
    narrow, _ = tasks.load_checkpoint(parent)
    wide = tasks.DetectionModel(arch, nc=nc, verbose=False)
    shapes = {key: value.shape for key, value in wide.state_dict().items()}
    state = {}
    for key, value in narrow.state_dict().items():
        for dim, (new, old) in enumerate(zip(shapes[key], value.shape, strict=True)):
            if new != old:
                value = value.repeat_interleave(new // old, dim=dim) / (new // old if dim else 1)
        state[key] = value
    wide.load_state_dict(state)
    target = work / f"widened-{parent.stem}.pt"
    torch.save({"model": wide}, target)
    return target


def _describe(recipe: Recipe, path: Path, *, seconds: float, metrics: Any) -> ModelInfo:
    """Read imgsz, class names and task back from the checkpoint, as a server would."""
    loaded = _yolo_class()(str(path))
    names = loaded.names
    return ModelInfo(
        name=recipe.name,
        file=path.name,
        sha256=_sha256(path),
        classes=tuple(names[index] for index in sorted(names)),
        imgsz=int(loaded.model.args["imgsz"]),
        task=str(loaded.task),
        arch=recipe.arch,
        parent=recipe.parent,
        parent_sha256=_sha256(path.with_name(f"{recipe.parent}.pt")) if recipe.parent else None,
        epochs=recipe.epochs,
        map50=round(float(metrics.box.map50), 4),
        map50_95=round(float(metrics.box.map), 4),
        train_seconds=round(seconds, 1),
        params_hash=params_hash(recipe),
    )


def _recipe(name: str) -> Recipe:
    return next(recipe for recipe in RECIPES if recipe.name == name)


def _yolo_class() -> Any:
    """``ultralytics.YOLO``, imported only after the offline switch (and the font stub)."""
    from yolofleet.offline import ensure_offline

    ensure_offline()
    from ultralytics.models.yolo.model import YOLO

    _stub_font()
    return YOLO


def _stub_font() -> None:
    """Give ultralytics a local Arial.ttf: its data set check otherwise asks the network for one."""
    import matplotlib
    from ultralytics.utils import USER_CONFIG_DIR

    target = Path(USER_CONFIG_DIR) / "Arial.ttf"
    if not target.exists():
        source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        _write_atomically(target, source.read_bytes())


def _dataset(spec: DatasetSpec) -> Path:
    """The ``data.yaml`` of ``spec``, generated once into the shared data set cache."""
    root = cache_dir() / "datasets" / f"shapes-{_digest(dataclasses.asdict(spec))}"
    if not (root / "data.yaml").is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".shapes-tmp-", dir=root.parent))
        try:
            write_dataset(work, spec)  # relocatable: data.yaml names no absolute path
            work.chmod(0o755)
            shutil.rmtree(root, ignore_errors=True)
            os.replace(work, root)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return root / "data.yaml"


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
    _write_json(work / "manifest.json", document)
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


def _update_manifest(root: Path, key: str, entry: Mapping[str, Any]) -> None:
    entries = _read_entries(root / "manifest.json")
    entries[key] = dict(entry)
    _write_json(root / "manifest.json", entries)


def _read_entries(path: Path) -> dict[str, Any]:
    try:
        entries = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _write_json(path: Path, document: Any) -> None:
    _write_atomically(path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())


def _write_atomically(path: Path, content: bytes) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(handle, "wb") as file:
        file.write(content)
        os.fchmod(file.fileno(), 0o644)
    os.replace(temporary, path)


def _digest(document: Any) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
