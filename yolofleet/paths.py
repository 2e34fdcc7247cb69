"""Where the project keeps its caches (models, data sets, ultralytics settings)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """The project's cache root: ``$YOLOFLEET_CACHE`` or ``<project>/.cache``."""
    root = Path(os.environ.get("YOLOFLEET_CACHE", PROJECT_ROOT / ".cache"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def models_dir() -> Path:
    """Where the project's trained demo/test models and their calibration images live."""
    path = cache_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path
