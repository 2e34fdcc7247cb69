"""The swap phase of ``bench.serving``: 4 clients under load while the model is swapped.

A swap's window is defined by what the node says, not by polling it: it opens when the
watched model file is replaced (the swap request), and closes at whichever comes last of the
first reply carrying the new slot generation (every Detect reply names the generation that
answered) and the node's log line saying the replaced model was closed (its retire: the old
model's memory freed). A request overlaps a swap when it was in flight at any moment of a
window; every other request is steady. Between swaps the load runs ``STEADY_GAP_S`` with no
swap in progress, so both sets come from the same minutes of the same run.
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass
from pathlib import Path

from bench.load import Call, closed_loop, percentile
from bench.peers import NodeProcess

LEAD_IN_S = 1.0
STEADY_GAP_S = 0.5
CLIENTS = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Swap:
    """One swap as the bench saw it: the generation it made, when it was asked for (the file
    replaced) and when the model it replaced was closed (``perf_counter`` times)."""

    generation: int
    requested_at: float
    retired_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    swap: Swap
    first_reply_at: float
    """When the first reply from the new generation arrived."""

    @property
    def start(self) -> float:
        return self.swap.requested_at

    @property
    def end(self) -> float:
        return max(self.first_reply_at, self.swap.retired_at)

    def overlaps(self, call: Call) -> bool:
        return call.started <= self.end and call.ended >= self.start

    def until_live(self, call: Call) -> bool:
        """In flight between the swap request and the first reply on the new generation (the
        window without the retire; for comparing runs whose retires differ)."""
        return call.started <= self.first_reply_at and call.ended >= self.start


def windows_of(swaps: list[Swap], calls: list[Call]) -> list[Window]:
    """Each swap's window; a swap no reply came from before the run ended closes at its retire."""
    first: dict[int, float] = {}
    for call in calls:
        if call.ok and call.ended < first.get(call.generation, float("inf")):
            first[call.generation] = call.ended
    return [
        Window(swap=swap, first_reply_at=first.get(swap.generation, swap.retired_at))
        for swap in swaps
    ]


def swap_phase(
    node: NodeProcess, image: bytes, sources: list[Path], swaps: int
) -> dict[str, object]:
    """``CLIENTS`` closed-loop clients while the model is swapped ``swaps`` times, one at a time."""
    done: list[Swap] = []

    async def run() -> list[Call]:
        stop = asyncio.Event()
        load = asyncio.ensure_future(closed_loop(node.address, image, clients=CLIENTS, until=stop))
        try:
            await asyncio.sleep(LEAD_IN_S)
            for index in range(swaps):
                generation, requested, retired = await asyncio.to_thread(
                    node.swap_to, sources[index % len(sources)]
                )
                done.append(Swap(generation=generation, requested_at=requested, retired_at=retired))
                await asyncio.sleep(STEADY_GAP_S)
        finally:
            stop.set()
        return await load

    calls = asyncio.run(run())
    return swap_figures(windows_of(done, calls), calls)


def swap_figures(windows: list[Window], calls: list[Call]) -> dict[str, object]:
    overlapping = [c for c in calls if any(w.overlaps(c) for w in windows)]
    steady = [c for c in calls if not any(w.overlaps(c) for w in windows)]
    overlap_ok = [c.latency_ms for c in overlapping if c.ok]
    steady_ok = [c.latency_ms for c in steady if c.ok]
    live_s = [w.first_reply_at - w.start for w in windows]
    window_s = [w.end - w.start for w in windows]
    return {
        "swaps": len(windows),
        "window": "file replaced -> max(first reply on the new generation, old model closed)",
        "swap_to_first_reply_p50_s": statistics.median(live_s) if live_s else float("nan"),
        "swap_to_first_reply_max_s": max(live_s, default=float("nan")),
        "window_p50_s": statistics.median(window_s) if window_s else float("nan"),
        "overlap_requests": len(overlapping),
        "overlap_failed": sum(not c.ok for c in overlapping),
        "overlap_p50_ms": statistics.median(overlap_ok) if overlap_ok else float("nan"),
        "overlap_p99_ms": percentile(overlap_ok, 99),
        "overlap_max_ms": max(overlap_ok, default=float("nan")),
        "steady_requests": len(steady),
        "steady_failed": sum(not c.ok for c in steady),
        "steady_p50_ms": statistics.median(steady_ok) if steady_ok else float("nan"),
        "steady_p99_ms": percentile(steady_ok, 99),
        "steady_max_ms": max(steady_ok, default=float("nan")),
        "worst_overlap": worst(overlapping, windows),
        "until_live_overlap_p99_ms": percentile(
            [c.latency_ms for c in calls if c.ok and any(w.until_live(c) for w in windows)], 99
        ),
    }


def worst(calls: list[Call], windows: list[Window]) -> dict[str, float]:
    """The slowest overlapping request, placed in its swap's window."""
    ok = [c for c in calls if c.ok]
    if not ok:
        return {}
    slowest = max(ok, key=lambda c: c.latency_ms)
    window = next(w for w in windows if w.overlaps(slowest))
    return {
        "latency_ms": slowest.latency_ms,
        "generation": slowest.generation,
        "swap_generation": window.swap.generation,
        "started_after_swap_request_ms": (slowest.started - window.start) * 1000,
        "first_new_reply_after_swap_request_ms": (window.first_reply_at - window.start) * 1000,
        "retired_after_swap_request_ms": (window.swap.retired_at - window.start) * 1000,
    }
