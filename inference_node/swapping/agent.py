"""``SwapAgent``: brings the slot to the desired model, one change at a time.

What to do next and what a refusal means are decided by ``policy`` (pure); this module does
what they call for. A change: fetch, verify and build the candidate on the loader thread, warm
it up and run its trial (the gates) on the device thread, each inference its own job between
served batches (see ``trial``), swap, then retire the old model once its last batch has
finished and the new one has settled (closed and its memory released on the loader thread,
see ``retire``). Any failure keeps the old model serving and is reported. A newer
request cancels the load in progress at once: its cancel event stops the fetch, the build or
the trial at the next step, the candidate is closed, and the newer model starts. Two loads
never run at once. Time is read only through the injected ``clock`` and ``sleep``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace

from inference_node.errors import LoadError, Superseded, SwapError, ValidationFailed
from inference_node.model import Detector, ModelRef
from inference_node.swapping import validate
from inference_node.swapping.loader import Builder, LoadReport
from inference_node.swapping.policy import (
    RETRY_FIRST_S,
    RETRY_MAX_S,
    Backoff,
    Move,
    SlotPhase,
    SwapState,
    next_action,
    on_refusal,
    phase_of,
    same_model,
)
from inference_node.swapping.retire import RETIRE_DELAY_S, Retirer
from inference_node.swapping.slot import Active, ModelSlot
from inference_node.swapping.trial import Jobs, run_trial, warm_up
from inference_node.swapping.waiters import Waiters
from inference_node.telemetry.metrics import NodeMetrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStatus:
    phase: SlotPhase
    loading: ModelRef | None
    last_error: str
    retry_at: float | None = None
    """Clock time at which a transiently refused model is tried again, if it will be."""


SwapListener = Callable[[Active], None]


class SwapAgent:
    """Owns every change of the slot's model."""

    def __init__(
        self,
        slot: ModelSlot,
        loader: Builder,
        *,
        loader_executor: Executor,
        device_executor: Executor,
        policy: validate.ValidationPolicy,
        min_swap_interval_s: float,
        metrics: NodeMetrics,
        listeners: tuple[SwapListener, ...] = (),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        retry_first_s: float = RETRY_FIRST_S,
        retry_max_s: float = RETRY_MAX_S,
        retire_delay_s: float = RETIRE_DELAY_S,
    ) -> None:
        self._slot = slot
        self._loader = loader
        self._loader_executor = loader_executor
        self._device_executor = device_executor
        self._retirer = Retirer(slot, executor=loader_executor, sleep=sleep, delay_s=retire_delay_s)
        self._policy = policy
        self._min_interval_s = min_swap_interval_s
        self._metrics = metrics
        self._listeners = list(listeners)
        self._clock = clock
        self._sleep = sleep
        self._backoff = Backoff(first_s=retry_first_s, max_s=retry_max_s)
        self._state = SwapState()
        self._cancel: threading.Event | None = None
        """Set to stop the load in progress (there is one while ``_state.loading`` is set)."""
        self._last_error = ""
        self._waiters = Waiters()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def status(self) -> AgentStatus:
        state = self._view()
        return AgentStatus(
            phase=phase_of(state, draining=False),
            loading=state.loading,
            last_error=self._last_error,
            retry_at=state.retry_at,
        )

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="swap-agent")

    def add_listener(self, listener: SwapListener) -> None:
        """Also call ``listener`` with every model that goes live from now on, including one
        that went live on a retry after its request was already answered with the refusal.
        """
        self._listeners.append(listener)

    async def stop(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._retirer.finish()
        self._waiters.fail_all(Superseded("node stopped before the swap happened"))

    def request(self, ref: ModelRef) -> asyncio.Future[Active]:
        """Ask for ``ref`` to go live; the future gets the new ``Active`` or the refusal."""
        self._waiters.supersede_all_but(ref)
        future = self._waiters.add(ref)
        self._state = replace(self._state, desired=ref, failed=None, retry_at=None, attempts=0)
        active = self._slot.active
        if active is not None and same_model(active.ref, ref):
            self._waiters.went_live(active)
        action = next_action(self._view(), now=self._clock(), min_interval_s=self._min_interval_s)
        if action.move is Move.CANCEL and self._cancel is not None:
            logger.info("model=%s load cancelled: %s", action.ref, action.reason)
            self._cancel.set()
        self._wake.set()
        return future

    def _view(self) -> SwapState:
        """The state with the slot's live model: the slot is the one record of what is live."""
        active = self._slot.active
        return replace(self._state, active=active.ref if active is not None else None)

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # before deciding: a request from now on wakes the wait below
            action = next_action(
                self._view(), now=self._clock(), min_interval_s=self._min_interval_s
            )
            match action.move:
                case Move.LOAD:
                    assert action.ref is not None
                    await self._apply(action.ref)
                case Move.HOLD:
                    logger.info("model=%s %s", action.ref, action.reason)
                    await self._wait(until=action.at)
                case Move.RETRY:
                    await self._wait(until=action.at)
                case Move.NOTHING | Move.CANCEL:  # CANCEL: only while loading, never here
                    await self._wait(until=None)

    async def _wait(self, *, until: float | None) -> None:
        """Until a request wakes the agent, or the clock reaches ``until``."""
        waits: list[asyncio.Future[object]] = [asyncio.ensure_future(self._wake.wait())]
        if until is not None:
            waits.append(asyncio.ensure_future(self._sleep(max(0.0, until - self._clock()))))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _apply(self, ref: ModelRef) -> None:
        started = self._clock()
        cancel = self._cancel = threading.Event()
        self._state = replace(self._state, loading=ref)
        logger.info("model=%s loading", ref)
        try:
            await self._retirer.finish()  # the last swap's old model goes before this one
            if cancel.is_set():
                raise self._superseded(ref)
            detector, report = await self._load(ref, cancel)
            try:
                report = await self._try_out(ref, detector, report, cancel)
            except BaseException:
                await self._retirer.close(detector)
                raise
            self._go_live(ref, detector, report, started)
        except SwapError as exc:
            self._refuse(ref, exc)
        except Exception as exc:  # loop boundary: anything unexpected also keeps the old model
            logger.error("model=%s swap crashed", ref, exc_info=True)
            self._refuse(ref, LoadError(f"model {ref} could not be swapped in: {exc}"))
        finally:
            self._state = replace(self._state, loading=None)
            self._cancel = None

    async def _load(self, ref: ModelRef, cancel: threading.Event) -> tuple[Detector, LoadReport]:
        load = functools.partial(self._loader.build, ref, cancel=cancel)
        try:
            detector, report = await asyncio.get_running_loop().run_in_executor(
                self._loader_executor, load
            )
        except SwapError as exc:
            if cancel.is_set():  # the loader stopped because it was told to
                raise self._superseded(ref) from exc
            raise
        if cancel.is_set():  # a loader that does not watch ``cancel`` finished anyway
            await self._retirer.close(detector)
            raise self._superseded(ref)
        return detector, report

    async def _try_out(
        self, ref: ModelRef, detector: Detector, report: LoadReport, cancel: threading.Event
    ) -> LoadReport:
        """Warm-up, then the gates; the serving model stays leased for the latency comparison.
        Returns ``report`` with the warm-up's duration."""
        device = Jobs(self._device_executor, ref=ref, cancel=cancel)
        warming = self._clock()
        await warm_up(ref, detector, batches=self._loader.warmup_batches, device=device)
        report = replace(report, warmup_s=self._clock() - warming)
        trial = functools.partial(run_trial, ref, detector, device=device, policy=self._policy)
        if self._slot.active is None:
            trial_report = await trial(incumbent=None)
        else:
            with self._slot.lease() as incumbent:
                trial_report = await trial(incumbent=incumbent.detector)
        for gate in trial_report.gates:
            logger.info("model=%s gate %s passed: %s", ref, gate.gate, gate.detail)
        return report

    def _superseded(self, ref: ModelRef) -> Superseded:
        return Superseded(
            f"model {ref} was superseded by {self._state.desired} before it went live"
        )

    def _go_live(
        self, ref: ModelRef, detector: Detector, report: LoadReport, started: float
    ) -> None:
        now = self._clock()
        old = self._slot.swap(ref, detector, load=report, started_at=started, finished_at=now)
        active = self._slot.active
        assert active is not None
        self._state = replace(
            self._state,
            previous=old.ref if old else None,
            last_swap_at=now,
            failed=None,
            retry_at=None,
            attempts=0,
        )
        self._last_error = ""
        self._metrics.went_live(
            ref,
            old=old.ref if old else None,
            load_s=report.fetch_s + report.build_s + report.warmup_s,
        )
        for listener in self._listeners:
            listener(active)
        self._waiters.went_live(active)
        if old is not None:
            self._retirer.retire(old)

    def _refuse(self, ref: ModelRef, exc: SwapError) -> None:
        if isinstance(exc, Superseded):
            logger.info("model=%s superseded", ref)
            self._waiters.refused(ref, exc)
            return
        state = self._state
        attempts = state.attempts + 1 if same_model(state.failed, ref) else 1
        refusal = on_refusal(exc, attempts=attempts, now=self._clock(), backoff=self._backoff)
        message = str(exc)
        if refusal.delay_s is not None:
            message += f"; trying again in {refusal.delay_s:g}s"
        self._state = replace(state, failed=ref, retry_at=refusal.retry_at, attempts=attempts)
        self._last_error = message
        self._metrics.swap_failed(
            exc.gate if isinstance(exc, ValidationFailed) else type(exc).__name__
        )
        logger.warning(
            "model=%s refused kind=%s, old model keeps serving: %s", ref, refusal.kind, message
        )
        self._waiters.refused(ref, exc)
