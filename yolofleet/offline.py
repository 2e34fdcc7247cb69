"""Keep ultralytics off the network and its files inside the project's cache.

Call :func:`ensure_offline` before the first ``import ultralytics`` anywhere in the process.
``YOLO_OFFLINE`` is read by ultralytics at import time, so setting it later has no effect.

It also undoes ultralytics' one change to the thread environment: importing ultralytics sets
``OMP_NUM_THREADS=1`` when the variable is unset or empty. Left in place, every child process
(nodes started by tests and benches, or by an operator's supervisor running under this one)
would start torch single-threaded and waste the host's cores.

:func:`quiet_openmp` shortens OpenMP's spin-wait; it must run before torch is first imported.
"""

from __future__ import annotations

import os
import sys

from yolofleet.paths import cache_dir

OPENMP_SPIN_COUNT = "10000"
"""GNU OpenMP busy-waits this many rounds (~0.1 ms) at a barrier before it sleeps.

Its default, 300 000 rounds (~3 ms), keeps every worker of torch's team spinning after each
batch, on the cores the gRPC and event-loop threads need to answer it. 10 000 rounds still
cover the gaps between one forward pass's operators: batch-1 and batch-16 inference times were
unchanged on a 2-core host, while ``OMP_WAIT_POLICY=PASSIVE`` (no spinning) made a batch-1
pass 2.4x slower.
"""


def quiet_openmp() -> None:
    """Default ``GOMP_SPINCOUNT`` (torch's bundled libgomp) unless the operator chose a policy.

    libgomp reads its environment once, when torch loads it: call this first thing in an
    entry point, before anything imports torch. ``KMP_BLOCKTIME`` is Intel OpenMP's knob and
    does nothing for the libgomp torch's Linux wheels bundle.
    """
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = OPENMP_SPIN_COUNT


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
