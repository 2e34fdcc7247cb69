"""Training one demo model with ultralytics on the synthetic shapes data set.

:func:`train` builds the recipe's data set (once, into the shared cache), starts from its parent's
weights (widened first when the parent has another architecture), fits in a temporary folder and
renames the best checkpoint into place. ultralytics is imported only inside functions, after
:func:`yolofleet.offline.ensure_offline`.

Torch threads stay at ultralytics' CPU default (``cpu_count - 1``, so 1 on a 2-core machine):
two OpenMP threads sharing two cores with any other busy process slowed epochs 5-25x here.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from yolofleet.demo_manifest import ModelInfo, write_atomically
from yolofleet.demo_recipes import (
    TRAIN_ARGS,
    Recipe,
    data_document,
    digest,
    params_hash,
    recipe_named,
)
from yolofleet.digests import file_sha256
from yolofleet.paths import cache_dir
from yolofleet.synthetic import DatasetSpec, write_dataset

logger = logging.getLogger(__name__)


def train(recipe: Recipe, *, root: Path) -> ModelInfo:
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
        if recipe_named(recipe.parent).arch != recipe.arch:
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
        sha256=file_sha256(path),
        classes=tuple(names[index] for index in sorted(names)),
        imgsz=int(loaded.model.args["imgsz"]),
        task=str(loaded.task),
        arch=recipe.arch,
        parent=recipe.parent,
        parent_sha256=file_sha256(path.with_name(f"{recipe.parent}.pt")) if recipe.parent else None,
        epochs=recipe.epochs,
        map50=round(float(metrics.box.map50), 4),
        map50_95=round(float(metrics.box.map), 4),
        train_seconds=round(seconds, 1),
        params_hash=params_hash(recipe),
    )


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
        write_atomically(target, source.read_bytes())


def _dataset(spec: DatasetSpec) -> Path:
    """The ``data.yaml`` of ``spec``, generated once into the shared data set cache."""
    root = cache_dir() / "datasets" / f"shapes-{digest(data_document(spec))}"
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
