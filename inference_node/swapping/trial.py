"""A candidate's trial beside live traffic: its warm-up, the validation gates and the figures
they judge.

Every inference of a candidate runs on the device thread, where served batches run, and each
is its own job, submitted only once the previous one has returned: the warm-up rounds, the
calibration images, the latency rounds. That thread takes jobs in the order they arrive and
the batcher submits its next batch while a candidate's job runs, so a served batch waits
behind at most one candidate inference (a single image), never behind a whole warm-up or
probe; and the loader thread does no inference at all, so nothing but the device thread and
the servers' threads compete for the cores while a candidate is tried. Before each job the
trial checks its cancel event: a newer desired model stops it at the next inference.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

import numpy as np

from inference_node.errors import Superseded
from inference_node.model import Detector, DetectParams, Image, ModelRef
from inference_node.swapping import validate
from inference_node.swapping.loader import warm_up_batch

T = TypeVar("T")


class Jobs:
    """Runs a candidate's inferences on one executor, one job at a time, until cancelled."""

    def __init__(self, executor: Executor, *, ref: ModelRef, cancel: threading.Event) -> None:
        self._executor = executor
        self._ref = ref
        self._cancel = cancel

    def check(self) -> None:
        """Raise ``Superseded`` once a newer model is desired."""
        if self._cancel.is_set():
            raise Superseded(f"model {self._ref} was superseded before going live")

    async def run(self, job: Callable[[], T]) -> T:
        self.check()
        return await asyncio.get_running_loop().run_in_executor(self._executor, job)


async def warm_up(
    ref: ModelRef, candidate: Detector, *, batches: tuple[int, ...], device: Jobs
) -> None:
    """One device job per warm-up batch; ``LoadError`` if the candidate cannot run one."""
    for size in batches:
        await device.run(functools.partial(warm_up_batch, ref, candidate, size))


async def run_trial(
    ref: ModelRef,
    candidate: Detector,
    *,
    incumbent: Detector | None,
    device: Jobs,
    policy: validate.ValidationPolicy,
) -> validate.ValidationReport:
    """Run the gates in order; raises ``ValidationFailed`` (or ``Superseded``) on the first miss.

    Every inference is a ``device`` job: the calibration images, then the latency rounds.
    """
    spec = incumbent.spec if incumbent is not None else None
    gates = [
        validate.check_classes(ref, candidate.spec, incumbent=spec, policy=policy),
        validate.check_compat(ref, candidate.spec, incumbent=spec, policy=policy),
    ]
    found = [
        await device.run(_counter(candidate, case.image, policy.calibration_conf))
        for case in policy.calibration
    ]
    gates.append(validate.check_calibration(ref, found, policy))
    if incumbent is not None and policy.latency_factor is not None:
        candidate_ms, incumbent_ms = await _probe_latency(candidate, incumbent, device, policy)
        gates.append(
            validate.check_latency(
                ref, candidate_ms=candidate_ms, incumbent_ms=incumbent_ms, policy=policy
            )
        )
    device.check()
    return validate.ValidationReport(ref=ref, gates=tuple(gates))


async def _probe_latency(
    candidate: Detector, incumbent: Detector, jobs: Jobs, policy: validate.ValidationPolicy
) -> tuple[list[float], list[float]]:
    """Single-image rounds of both models, alternating, each round its own device job."""
    image = _probe_image(policy, candidate.spec.input_size)
    candidate_ms: list[float] = []
    incumbent_ms: list[float] = []
    for _ in range(policy.latency_rounds):
        incumbent_ms.append(await jobs.run(_timer(incumbent, image)))
        candidate_ms.append(await jobs.run(_timer(candidate, image)))
    return candidate_ms, incumbent_ms


def _counter(detector: Detector, image: Image, conf: float) -> Callable[[], int]:
    def count() -> int:
        return len(detector.detect([image], [DetectParams(conf=conf)])[0])

    return count


def _timer(detector: Detector, image: Image) -> Callable[[], float]:
    """A job that times one inference where it runs (a duration, not a decision time)."""

    def timed() -> float:
        started = time.perf_counter()
        detector.detect([image], [DetectParams()])
        return (time.perf_counter() - started) * 1000

    return timed


def _probe_image(policy: validate.ValidationPolicy, size: int) -> Image:
    if policy.calibration:
        return policy.calibration[0].image
    return np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
