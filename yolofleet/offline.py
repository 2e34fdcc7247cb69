"""Keep ultralytics off the network and its files inside the project's cache.

Call :func:`ensure_offline` before the first ``import ultralytics`` anywhere in the process.
``YOLO_OFFLINE`` is read by ultralytics at import time, so setting it later has no effect.

It also undoes ultralytics' one change to the thread environment: importing ultralytics sets
``OMP_NUM_THREADS=1`` when the variable is unset or empty. Left in place, every child process
(nodes started by tests and benches, or by an operator's supervisor running under this one)
would start torch single-threaded and waste the host's cores.
"""

from __future__ import annotations

import os
import sys

from yolofleet.paths import cache_dir


def ensure_offline() -> None:
    """Set ultralytics' offline switch and settings directory, then turn its sync off.

    ``OMP_NUM_THREADS`` is left as the caller had it: restored to its value, or unset again if
    it was unset, after ultralytics set it to 1 on import. Only the environment is restored.
    A torch that ultralytics itself imported here has already read the 1 and keeps it, so a
    process that needs a thread count calls ``torch.set_num_threads`` (the node's
    ``--threads``); a torch imported before this call is not affected.
    """
    if "ultralytics" in sys.modules and os.environ.get("YOLO_OFFLINE") != "true":
        raise RuntimeError("ultralytics was imported before yolofleet.offline.ensure_offline()")
    os.environ["YOLO_OFFLINE"] = "true"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    settings_dir = cache_dir() / "ultralytics"
    settings_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(settings_dir))
    os.environ.setdefault("YOLO_VERBOSE", "false")
    omp_threads = os.environ.get("OMP_NUM_THREADS")
    try:
        from ultralytics import settings
    finally:
        _restore("OMP_NUM_THREADS", omp_threads)

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
        settings.update(wanted)  # type: ignore[no-untyped-call]


def _restore(name: str, value: str | None) -> None:
    """Put environment variable ``name`` back to ``value`` (``None``: unset)."""
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
