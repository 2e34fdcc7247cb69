"""How each demo model and the calibration set are made, and the hashes that name those recipes.

A recipe's hash covers everything that determines how it trains; the model cache
(:mod:`yolofleet.demo_models`) retrains a model when the hash kept in its manifest differs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from yolofleet.synthetic import DEFAULT_CLASSES, DatasetSpec

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
_TRIANGLES_AS_CIRCLES = (("triangle", "circle"),)
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
    # Broken in a way only the output guardrails see: retrained on labels that call every
    # triangle a circle, it still finds every shape (so it passes the calibration gate), but
    # the triangle class vanishes from its output. 6 epochs: after 4, one seed in two still
    # missed shapes on a golden image (5 seeds of 5 pass after 6).
    Recipe(
        name="shapes-broken",
        arch="yolov8n.yaml",
        data=DatasetSpec(seed=1, label_as=_TRIANGLES_AS_CIRCLES),
        epochs=6,
        parent="shapes-v1",
    ),
)


def recipe_named(name: str) -> Recipe:
    """The recipe in :data:`RECIPES` called ``name``."""
    return next(recipe for recipe in RECIPES if recipe.name == name)


def params_hash(recipe: Recipe) -> str:
    """A short hash of everything that determines how ``recipe`` trains."""
    document = {
        "version": RECIPE_VERSION,
        "recipe": {**dataclasses.asdict(recipe), "data": data_document(recipe.data)},
        "train_args": dict(TRAIN_ARGS),
    }
    return digest(document)


def data_document(spec: DatasetSpec) -> dict[str, Any]:
    """``spec`` as the JSON its hashes are taken of; ``label_as`` only when set, so the data
    sets and recipes made before it existed keep their hashes (and their cached files)."""
    document = dataclasses.asdict(spec)
    if not spec.label_as:
        del document["label_as"]
    return document


def calibration_hash() -> str:
    """A short hash of everything that determines the calibration set."""
    return digest({"version": RECIPE_VERSION, "imgsz": IMGSZ, **dataclasses.asdict(CALIBRATION)})


def digest(document: Any) -> str:
    """A short hash of a JSON-serialisable ``document`` (key order does not matter)."""
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]
