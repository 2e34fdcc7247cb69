"""Keep ultralytics off the network and its files inside the project's cache.

Call :func:`ensure_offline` before the first ``import ultralytics`` anywhere in the process.
``YOLO_OFFLINE`` is read by ultralytics at import time, so setting it later has no effect.
"""

from __future__ import annotations

import os
import sys

from yolofleet.paths import cache_dir


def ensure_offline() -> None:
    """Set ultralytics' offline switch and settings directory, then turn its sync off."""
    if "ultralytics" in sys.modules and os.environ.get("YOLO_OFFLINE") != "true":
        raise RuntimeError("ultralytics was imported before yolofleet.offline.ensure_offline()")
    os.environ["YOLO_OFFLINE"] = "true"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    settings_dir = cache_dir() / "ultralytics"
    settings_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(settings_dir))
    os.environ.setdefault("YOLO_VERBOSE", "false")
    from ultralytics import settings

    wanted = {
        "sync": False,
        "datasets_dir": str(cache_dir() / "datasets"),
        "weights_dir": str(cache_dir() / "weights"),
        "runs_dir": str(cache_dir() / "runs"),
        "clearml": False,
        "comet": False,
        "dvc": False,
        "mlflow": False,
        "raytune": False,
        "tensorboard": False,
        "wandb": False,
        "vscode_msg": False,
        "openvino_msg": False,
    }
    if any(settings.get(key) != value for key, value in wanted.items()):
        settings.update(wanted)
