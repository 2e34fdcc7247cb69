"""``ModelCache``: models loaded on demand beside the assigned one, within a memory budget.

A request may name a model other than the one the slot serves. If the model is on the node's
allow-list, the cache looks it up in the catalog and loads it on the loader thread, once however
many requests ask at the same time. Loaded models are kept in least-recently-used order. After
a load the model's weight bytes are *measured*; the least recently used models are evicted
(unleased ones first) until it fits the budget. An evicted model still counts against the
budget until it is closed, and it is closed only after its last batch has ended, so the bytes
held never exceed the budget. A failed load is not cached: the next request tries again.

The assigned model lives in the slot, not here, so it is never evicted and never counted.
Like the slot, the cache lives on the node's event loop thread and needs no lock to lease.
Loads run on an executor of the cache's own, so a hung slot load never holds them up, and
``stop()`` cancels the ones in flight and waits for them at most ``STOP_GRACE_S``; a load that
returns after that (a loader that ignored the cancel) has its model closed as it returns.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from contextlib import asynccontextmanager
from functools import partial

from inference_node.errors import (
    Draining,
    ModelLoadFailed,
    ModelNotAllowed,
    ModelTooLarge,
    NodeError,
    SwapError,
)
from inference_node.model import Detector, ModelRef
from inference_node.serving.cache_entry import (
    CachedModel,
    CacheEntry,
    CacheHold,
    close_and_release,
    close_if_loaded,
    human_size,
)
from inference_node.serving.catalog import ModelCatalog
from inference_node.swapping.loader import Loader
from inference_node.telemetry.metrics import NodeMetrics

logger = logging.getLogger(__name__)

STOP_GRACE_S = 5.0
"""How long ``stop()`` waits for cancelled loads to return before it stops waiting."""


class ModelCache:
    """Loads allowed models on first use and keeps the recently used ones within the budget."""

    def __init__(
        self,
        loader: Loader,
        *,
        loader_executor: Executor,
        catalog: ModelCatalog,
        allowed: frozenset[str],
        budget_bytes: int,
        metrics: NodeMetrics,
        stop_grace_s: float = STOP_GRACE_S,
    ) -> None:
        self._loader = loader
        self._loader_executor = loader_executor
        self._catalog = catalog
        self._allowed = allowed
        self._budget = budget_bytes
        self._metrics = metrics
        self._stop_grace_s = stop_grace_s
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()  # least recently used first
        self._loading: dict[str, asyncio.Task[None]] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._too_large: dict[ModelRef, int] = {}
        self._admission = asyncio.Lock()
        self._held = 0
        self._closed = False
        self._cancel = threading.Event()

    @property
    def held_bytes(self) -> int:
        """Weight bytes of the cached models, and of evicted ones not closed yet."""
        return self._held

    @property
    def budget_bytes(self) -> int:
        return self._budget

    @property
    def loaded(self) -> tuple[str, ...]:
        """Names of the cached models, least recently used first."""
        return tuple(self._entries)

    def check_allowed(self, name: str) -> None:
        """Raise ``ModelNotAllowed`` unless clients may ask this node for ``name``."""
        if name in self._allowed:
            return
        allowed = ", ".join(sorted(self._allowed)) or "none besides its assigned model"
        raise ModelNotAllowed(
            f"model {name!r} is not allowed on this node (allowed: {allowed}); "
            "an operator can add it with --allow-model"
        )

    async def ensure_loaded(self, name: str) -> CachedModel:
        """Load ``name`` unless it is cached (one load for all who ask); counts a hit or miss."""
        self.check_allowed(name)
        self._metrics.cache_lookup(name, hit=name in self._entries)
        entry = await self._resident(name)
        return entry.model

    async def hold(self, name: str) -> CacheHold:
        """Load ``name`` unless it is cached (counting a hit or miss) and keep it open until the
        hold is released: evicted meanwhile, it is closed only after that. A request holds its
        model from routing to answer, so the worker never loads (nor looks up) anything.
        """
        self.check_allowed(name)
        self._metrics.cache_lookup(name, hit=name in self._entries)
        return CacheHold(await self._resident(name), release=self._release)

    @asynccontextmanager
    async def lease(self, name: str) -> AsyncIterator[CachedModel]:
        """Use ``name`` for one batch, loading it if needed; it stays open until the lease ends."""
        self.check_allowed(name)
        entry = await self._resident(name)
        entry.leases += 1
        try:
            yield entry.model
        finally:
            self._release(entry)

    def _release(self, entry: CacheEntry) -> None:
        entry.leases -= 1
        if entry.leases == 0 and entry.evicted:
            entry.drained.set()

    async def stop(self) -> None:
        """Refuse new loads, cancel running ones (waiting at most the grace), close all."""
        self._closed = True
        self._cancel.set()
        grace_s = self._stop_grace_s
        if self._loading:
            _, late = await asyncio.wait(set(self._loading.values()), timeout=grace_s)
            for task in late:
                logger.warning("on-demand %s still running after %.1fs", task.get_name(), grace_s)
                task.cancel()
        for entry in list(self._entries.values()):
            self._remove(entry)
        if self._retiring:
            await asyncio.wait(set(self._retiring), timeout=grace_s)

    async def _resident(self, name: str) -> CacheEntry:
        while True:
            if self._closed:
                raise Draining("node is shutting down")
            entry = self._entries.get(name)
            if entry is not None:
                self._entries.move_to_end(name)
                return entry
            task = self._loading.get(name)
            if task is None or task.done():
                task = asyncio.get_running_loop().create_task(self._load(name), name=f"load {name}")
                self._loading[name] = task
                task.add_done_callback(partial(self._load_done, name))
            await asyncio.shield(task)
            # loaded: loop to lease it (or load again if it was evicted before we woke up)

    def _load_done(self, name: str, task: asyncio.Task[None]) -> None:
        if self._loading.get(name) is task:
            del self._loading[name]
        if not task.cancelled():
            task.exception()  # the waiters got it; mark it seen so asyncio does not log it

    async def _load(self, name: str) -> None:
        ref = await self._lookup(name)
        measured = self._too_large.get(ref)
        if measured is not None:
            raise self._too_large_error(name, measured)
        logger.info("model=%s loading on demand ref=%s", name, ref)
        started = time.perf_counter()
        detector, size = await self._run_loader(name, ref)
        load_s = time.perf_counter() - started
        self._metrics.cache_loaded(name, load_s=load_s)
        model = CachedModel(name=name, ref=ref, detector=detector, weight_bytes=size, load_s=load_s)
        try:
            await self._admit(model)
        except BaseException:
            await self._close(detector)
            raise

    async def _lookup(self, name: str) -> ModelRef:
        try:
            return await self._catalog.lookup(name)
        except NodeError:
            raise
        except Exception as exc:  # the catalog's backend failed (e.g. Consul is unreachable)
            logger.warning("model=%s catalog lookup failed", name, exc_info=True)
            raise ModelLoadFailed(f"model {name!r} could not be looked up: {exc}") from exc

    async def _run_loader(self, name: str, ref: ModelRef) -> tuple[Detector, int]:
        work = self._loader_executor.submit(self._load_and_measure, ref)
        try:
            return await asyncio.wrap_future(work)
        except asyncio.CancelledError:  # stop gave up waiting: whatever comes back is closed
            work.add_done_callback(close_if_loaded)
            raise
        except SwapError as exc:
            logger.warning("model=%s on-demand load failed: %s", name, exc)
            raise ModelLoadFailed(f"model {name!r} could not be loaded: {exc}") from exc
        except Exception as exc:  # load boundary: anything else is also a failed load
            logger.error("model=%s on-demand load crashed", name, exc_info=True)
            raise ModelLoadFailed(f"model {name!r} could not be loaded: {exc}") from exc

    def _load_and_measure(self, ref: ModelRef) -> tuple[Detector, int]:
        """Runs on the loader thread: load, then measure what the weights really hold."""
        detector, _report = self._loader.load(ref, cancel=self._cancel)
        return detector, detector.weight_bytes()

    async def _admit(self, model: CachedModel) -> None:
        """Make room for ``model`` (evicting least recently used models) and cache it."""
        size = model.weight_bytes
        if size > self._budget:
            self._too_large[model.ref] = size
            raise self._too_large_error(model.name, size)
        async with self._admission:
            if self._closed:
                raise Draining(f"node stopped before model {model.name!r} could be cached")
            for victim in self._victims(size):
                self._evict(victim, newcomer=model.name)
            while self._held + size > self._budget:
                await asyncio.wait(set(self._retiring))  # evicted models close after their batch
            self._entries[model.name] = CacheEntry(model=model)
            self._held += size
            self._metrics.cache_holds(self._held)
        logger.info(
            "model=%s cached bytes=%d held=%d budget=%d load_s=%.2f",
            model.name, size, self._held, self._budget, model.load_s,
        )  # fmt: skip

    def _victims(self, size: int) -> list[CacheEntry]:
        """Least recently used entries to evict so ``size`` fits; leased ones only if needed."""
        resident = sum(entry.model.weight_bytes for entry in self._entries.values())
        excess = resident + size - self._budget
        entries = list(self._entries.values())
        ordered = [e for e in entries if not e.leases] + [e for e in entries if e.leases]
        victims = []
        for entry in ordered:
            if excess <= 0:
                break
            victims.append(entry)
            excess -= entry.model.weight_bytes
        return victims

    def _evict(self, entry: CacheEntry, *, newcomer: str) -> None:
        self._metrics.cache_evicted(entry.model.name)
        logger.info(
            "model=%s evicted for model=%s bytes=%d leases=%d",
            entry.model.name, newcomer, entry.model.weight_bytes, entry.leases,
        )  # fmt: skip
        self._remove(entry)

    def _remove(self, entry: CacheEntry) -> None:
        """Take ``entry`` out of the cache; it is closed once its last lease has ended."""
        del self._entries[entry.model.name]
        entry.evicted = True
        if entry.leases == 0:
            entry.drained.set()
        task = asyncio.get_running_loop().create_task(self._retire(entry))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(self, entry: CacheEntry) -> None:
        try:
            await entry.drained.wait()
            await self._close(entry.model.detector)
        except Exception:  # loop boundary: a failed close must not keep the bytes counted forever
            logger.error("model=%s could not be closed", entry.model.name, exc_info=True)
        finally:
            self._held -= entry.model.weight_bytes
            self._metrics.cache_holds(self._held)

    async def _close(self, detector: Detector) -> None:
        """Close on the loader thread; shielded, so a cancelled caller still gets it closed."""
        loop = asyncio.get_running_loop()
        await asyncio.shield(
            loop.run_in_executor(self._loader_executor, close_and_release, detector)
        )

    def _too_large_error(self, name: str, size: int) -> ModelTooLarge:
        return ModelTooLarge(
            f"model {name!r} needs {human_size(size)} for its weights but this node's model "
            f"memory budget is {human_size(self._budget)}; raise --model-memory-budget or "
            "send the request to a node that serves this model"
        )
