"""``SwapAgent``: brings the slot to the desired model, one change at a time.

For each change: wait out the minimum swap interval (never for a return to the previous
model), load and warm up the candidate on the loader thread, run the validation gates, probe
its latency against the serving model on the device thread, swap, then close the old model
once its last batch has finished. Any failure keeps the old model serving and is reported.
A newer request supersedes an older one at every step; two loads never run at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np

from inference_node import validate
from inference_node.device import release_device_memory
from inference_node.errors import (
    ArtifactError,
    LoadError,
    Superseded,
    SwapError,
    ValidationFailed,
)
from inference_node.loader import LoadReport
from inference_node.metrics import NodeMetrics
from inference_node.model import Detector, DetectParams, ModelRef
from inference_node.slot import Active, ModelSlot

logger = logging.getLogger(__name__)

RETRY_FIRST_S = 5.0
RETRY_MAX_S = 300.0
TRANSIENT_GATES = frozenset({"latency"})
"""Gates whose verdict depends on the moment (a busy device), not on the model file."""


class AgentPhase(StrEnum):
    EMPTY = "empty"
    LOADING = "loading"
    SERVING = "serving"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStatus:
    phase: AgentPhase
    loading: ModelRef | None
    last_error: str
    retry_at: float | None = None
    """``time.monotonic()`` at which a transiently refused model is tried again, if it will be."""


SwapListener = Callable[[Active], None]


class Loader(Protocol):
    """Fetches, verifies, builds and warms up a model (``loader.ModelLoader`` in production)."""

    def load(self, ref: ModelRef) -> tuple[Detector, LoadReport]: ...


class SwapAgent:
    """Owns every change of the slot's model."""

    def __init__(
        self,
        slot: ModelSlot,
        loader: Loader,
        *,
        loader_executor: Executor,
        device_executor: Executor,
        policy: validate.ValidationPolicy,
        min_swap_interval_s: float,
        metrics: NodeMetrics,
        listeners: tuple[SwapListener, ...] = (),
        clock: Callable[[], float] = time.monotonic,
        retry_first_s: float = RETRY_FIRST_S,
        retry_max_s: float = RETRY_MAX_S,
    ) -> None:
        self._slot = slot
        self._loader = loader
        self._loader_executor = loader_executor
        self._device_executor = device_executor
        self._policy = policy
        self._min_interval_s = min_swap_interval_s
        self._metrics = metrics
        self._listeners = list(listeners)
        self._clock = clock
        self._desired: ModelRef | None = None
        self._failed: ModelRef | None = None
        self._previous: ModelRef | None = None
        self._last_swap_at = float("-inf")
        self._waiters: list[tuple[ModelRef, asyncio.Future[Active]]] = []
        self._wake = asyncio.Event()
        self._phase = AgentPhase.EMPTY
        self._loading: ModelRef | None = None
        self._last_error = ""
        self._retiring: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._retry_first_s, self._retry_max_s = retry_first_s, retry_max_s
        self._retries = 0
        self._retry_at: float | None = None
        self._retry_timer: asyncio.TimerHandle | None = None

    @property
    def status(self) -> AgentStatus:
        return AgentStatus(
            phase=self._phase,
            loading=self._loading,
            last_error=self._last_error,
            retry_at=self._retry_at,
        )

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="swap-agent")

    def add_listener(self, listener: SwapListener) -> None:
        """Also call ``listener`` with every model that goes live from now on, including one
        that went live on a retry after its request was already answered with the refusal.
        """
        self._listeners.append(listener)

    async def stop(self) -> None:
        self._cancel_retry()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._retiring is not None:
            await self._retiring
        for _, future in self._waiters:
            if not future.done():
                future.set_exception(Superseded("node stopped before the swap happened"))

    def request(self, ref: ModelRef) -> asyncio.Future[Active]:
        """Ask for ``ref`` to go live; the future gets the new ``Active`` or the refusal."""
        future: asyncio.Future[Active] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_consume_outcome)
        self._supersede_all_but(ref)
        self._waiters.append((ref, future))
        self._desired = ref
        self._failed = None
        self._retries = 0
        self._cancel_retry()
        active = self._slot.active
        if active is not None and _same_model(active.ref, ref):
            self._settle(ref, result=active)
        self._wake.set()
        return future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while (ref := self._next_change()) is not None:
                if await self._held_by_interval(ref):
                    continue
                await self._apply(ref)

    def _next_change(self) -> ModelRef | None:
        ref = self._desired
        active = self._slot.active
        if ref is None:
            return None
        if ref == self._failed and (self._retry_at is None or time.monotonic() < self._retry_at):
            return None
        if active is not None and _same_model(active.ref, ref):
            return None
        return ref

    async def _held_by_interval(self, ref: ModelRef) -> bool:
        """Wait out the minimum swap interval; True when a newer request arrived meanwhile."""
        if self._previous is not None and _same_model(self._previous, ref):
            return False
        remaining = self._last_swap_at + self._min_interval_s - self._clock()
        if remaining <= 0:
            return False
        logger.info("model=%s held %.1fs by the minimum swap interval", ref, remaining)
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), remaining)
        except TimeoutError:
            return False
        return self._desired != ref

    async def _apply(self, ref: ModelRef) -> None:
        if self._retiring is not None:
            await self._retiring
        started = time.monotonic()
        self._phase, self._loading = AgentPhase.LOADING, ref
        logger.info("model=%s loading", ref)
        try:
            detector, report = await self._load(ref)
            try:
                await self._validate(ref, detector)
                self._check_current(ref)
            except BaseException:
                await self._close(detector)
                raise
            self._go_live(ref, detector, report, started)
        except SwapError as exc:
            self._refuse(ref, exc)
        except Exception as exc:  # loop boundary: anything unexpected also keeps the old model
            logger.error("model=%s swap crashed", ref, exc_info=True)
            self._refuse(ref, LoadError(f"model {ref} could not be swapped in: {exc}"))
        finally:
            self._loading = None

    async def _load(self, ref: ModelRef) -> tuple[Detector, LoadReport]:
        loop = asyncio.get_running_loop()
        detector, report = await loop.run_in_executor(self._loader_executor, self._loader.load, ref)
        if self._desired != ref:
            await self._close(detector)
            raise Superseded(f"model {ref} was superseded by {self._desired} while loading")
        return detector, report

    async def _validate(self, ref: ModelRef, detector: Detector) -> None:
        loop = asyncio.get_running_loop()
        incumbent = self._slot.active
        spec = incumbent.detector.spec if incumbent else None
        validate.check_classes(ref, detector.spec, incumbent=spec, policy=self._policy)
        validate.check_compat(ref, detector.spec, incumbent=spec, policy=self._policy)
        await loop.run_in_executor(
            self._loader_executor, validate.check_calibration, ref, detector, self._policy
        )
        if incumbent is not None and self._policy.latency_factor is not None:
            candidate_ms, incumbent_ms = await self._probe_latency(detector)
            result = validate.check_latency(
                ref, candidate_ms=candidate_ms, incumbent_ms=incumbent_ms, policy=self._policy
            )
            logger.info("model=%s latency gate passed: %s", ref, result.detail)

    async def _probe_latency(self, candidate: Detector) -> tuple[list[float], list[float]]:
        """Time candidate and serving model on the device thread, interleaved between batches."""
        loop = asyncio.get_running_loop()
        probe = _probe_image(self._policy, candidate.spec.input_size)
        candidate_ms: list[float] = []
        incumbent_ms: list[float] = []
        with self._slot.lease() as incumbent:
            for _ in range(self._policy.latency_rounds):
                pair = await loop.run_in_executor(
                    self._device_executor, _time_pair, incumbent.detector, candidate, probe
                )
                incumbent_ms.append(pair[0])
                candidate_ms.append(pair[1])
        return candidate_ms, incumbent_ms

    def _check_current(self, ref: ModelRef) -> None:
        if self._desired != ref:
            raise Superseded(f"model {ref} was superseded by {self._desired} before going live")

    def _go_live(
        self, ref: ModelRef, detector: Detector, report: LoadReport, started: float
    ) -> None:
        old = self._slot.swap(ref, detector, load=report, started_at=started)
        active = self._slot.active
        assert active is not None
        self._previous = old.ref if old else None
        self._last_swap_at = self._clock()
        self._phase, self._last_error = AgentPhase.SERVING, ""
        self._failed, self._retries = None, 0
        self._cancel_retry()
        self._metrics.went_live(
            ref,
            old=old.ref if old else None,
            load_s=report.fetch_s + report.build_s + report.warmup_s,
        )
        for listener in self._listeners:
            listener(active)
        self._settle(ref, result=active)
        if old is not None:
            self._retiring = asyncio.get_running_loop().create_task(self._retire(old))

    def _refuse(self, ref: ModelRef, exc: SwapError) -> None:
        if isinstance(exc, Superseded):
            logger.info("model=%s superseded", ref)
            self._phase = AgentPhase.SERVING if self._slot.active else AgentPhase.EMPTY
        else:
            self._failed = ref
            message = str(exc)
            if _transient(exc):
                delay = min(self._retry_max_s, self._retry_first_s * 2**self._retries)
                self._retries += 1
                self._schedule_retry(delay)
                message += f"; trying again in {delay:g}s"
            self._phase, self._last_error = AgentPhase.FAILED, message
            stage = exc.gate if isinstance(exc, ValidationFailed) else type(exc).__name__
            self._metrics.swap_failed(stage)
            logger.warning("model=%s refused, old model keeps serving: %s", ref, message)
        self._settle(ref, error=exc)

    def _schedule_retry(self, delay_s: float) -> None:
        self._cancel_retry()
        self._retry_at = time.monotonic() + delay_s
        self._retry_timer = asyncio.get_running_loop().call_later(delay_s, self._wake.set)

    def _cancel_retry(self) -> None:
        if self._retry_timer is not None:
            self._retry_timer.cancel()
        self._retry_timer, self._retry_at = None, None

    async def _retire(self, old: Active) -> None:
        await self._slot.drained(old)
        await self._close(old.detector)
        logger.info("slot generation=%d %s closed", old.generation, old.ref)

    async def _close(self, detector: Detector) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._loader_executor, _close_and_release, detector)

    def _supersede_all_but(self, ref: ModelRef) -> None:
        for wanted, future in self._waiters:
            if wanted != ref and not future.done():
                future.set_exception(Superseded(f"model {wanted} was superseded by {ref}"))
        self._waiters = [(w, f) for w, f in self._waiters if not f.done()]

    def _settle(
        self, ref: ModelRef, *, result: Active | None = None, error: Exception | None = None
    ) -> None:
        for wanted, future in self._waiters:
            if wanted == ref and not future.done():
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)  # type: ignore[arg-type]
        self._waiters = [(w, f) for w, f in self._waiters if not f.done()]


def _consume_outcome(future: asyncio.Future[Active]) -> None:
    """Callers may ignore the outcome; mark a refusal as seen so asyncio does not log it."""
    if not future.cancelled():
        future.exception()


def _same_model(a: ModelRef, b: ModelRef) -> bool:
    return a.name == b.name and a.sha256 == b.sha256


def _probe_image(policy: validate.ValidationPolicy, size: int) -> np.ndarray:
    if policy.calibration:
        return policy.calibration[0].image
    return np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)


def _time_pair(incumbent: Detector, candidate: Detector, image: np.ndarray) -> tuple[float, float]:
    params = [DetectParams()]
    started = time.perf_counter()
    incumbent.detect([image], params)
    middle = time.perf_counter()
    candidate.detect([image], params)
    return (middle - started) * 1000, (time.perf_counter() - middle) * 1000


def _close_and_release(detector: Detector) -> None:
    device = detector.device
    detector.close()
    release_device_memory(device)


def _transient(exc: SwapError) -> bool:
    """Whether trying the same model again later may work: a fetch that failed (the artifact
    server restarting, a network blip) or a latency probe on a busy device. A digest mismatch,
    a broken file or a failed class/compat/calibration gate fails the same way every time.
    """
    if isinstance(exc, ArtifactError):
        return True
    return isinstance(exc, ValidationFailed) and exc.gate in TRANSIENT_GATES
