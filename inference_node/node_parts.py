"""What ``InferenceNode`` builds from its config before assembly: a file's ``ModelRef``, the
local catalog, loader threads at a lower CPU priority, and the validation policy."""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from inference_node.config import NodeConfig
from inference_node.model import ModelRef
from inference_node.serving.catalog import StaticCatalog
from inference_node.swapping import validate
from yolofleet.digests import file_sha256

logger = logging.getLogger(__name__)

LOADER_NICENESS = 10


def ref_for_file(path: Path, *, name: str | None = None) -> ModelRef:
    """A standalone node's reference to a model file: version is the digest's first 12 digits."""
    digest = file_sha256(path)
    return ModelRef(
        name=name or path.stem, version=digest[:12], uri=path.resolve().as_uri(), sha256=digest
    )


def local_catalog(config: NodeConfig) -> StaticCatalog | None:
    """A standalone node's ``--allow-model NAME=PATH`` files, as a catalog."""
    if not config.local_models:
        return None
    return StaticCatalog(
        {name: ref_for_file(path, name=name) for name, path in config.local_models}
    )


def loader_executor(name: str) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(1, thread_name_prefix=name, initializer=lower_thread_priority)


def lower_thread_priority() -> None:
    """Run the calling thread at a lower CPU priority, so loads yield to serving under contention.

    Loading, validating and warming up a candidate happen beside live traffic; where both need
    the CPU (a CPU-only node, or unpickling on a GPU node) requests should win.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOADER_NICENESS)
    except (OSError, AttributeError) as exc:  # not Linux, or not permitted: run as is
        logger.debug("loader thread keeps its priority: %s", exc)


def validation_policy(config: NodeConfig) -> validate.ValidationPolicy:
    gates = config.gates
    calibration = (
        validate.load_calibration_set(gates.calibration_dir, config.images)
        if gates.calibration_dir is not None
        else ()
    )
    return validate.ValidationPolicy(
        pinned_classes=gates.pinned_classes,
        allow_class_change=gates.allow_class_change,
        require_same_input_size=gates.require_same_input_size,
        calibration=calibration,
        latency_factor=gates.latency_factor,
    )
