"""Serving benchmark: overhead, batching throughput, swap latency and swap memory, in one run.

Run with ``.venv/bin/python -m bench.serving [--plan full|short|swap] [--swaps N] [--note TEXT]``
(``--short`` is ``--plan short``; ``--plan swap`` runs only the swap phase). The node runs as a
subprocess with its DEFAULT serving flags (thread count and OpenMP policy are its own choice;
only the flags that let the bench swap back to back are given). The peers run at their best:

- bare in-process calls (ultralytics ``predict`` and our detector) at 1 and 2 torch threads;
- the naive one-request-at-a-time gRPC node at 1 and 2 torch threads; the better one is
  the peer in the ratios, and both are recorded. At each client count the node and both naive
  nodes run back to back, so compared figures share the machine's load of that moment.

Measured: the node and the naive node at 1, 4 and 16 closed-loop clients; 4 clients while the
model is swapped ``swaps`` times (p99 of the requests that overlap a swap over steady p99, the
windows taken from the replies' generations and the node's retire log, see ``swap_windows``);
RSS after each mark of the memory phase (``swaps`` swaps under no load). ``--short`` is for a
shared machine (fewer requests, 20 swaps under load, RSS after 20 swaps only). The figures,
the settings, the load average before and after, and each target with its verdict go to
``bench/results/serving-<timestamp>.json``. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from yolofleet.offline import ensure_offline

ensure_offline()

import numpy as np  # noqa: E402

from bench.load import closed_loop, jpeg, summary  # noqa: E402
from bench.peers import NaiveProcess, NodeProcess  # noqa: E402
from bench.swap_windows import swap_phase  # noqa: E402
from inference_node.model import DetectParams  # noqa: E402
from inference_node.node_parts import ref_for_file  # noqa: E402
from inference_node.swapping.loader import ModelLoader  # noqa: E402
from inference_node.telemetry.device import apply_threads  # noqa: E402
from yolofleet.demo_models import ensure_models  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
PEER_THREADS = (1, 2)
OPENMP_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    name: str
    sequential_requests: int
    four_clients_s: float
    sixteen_clients_s: float
    swaps: int
    memory_marks: tuple[int, ...]
    bare_rounds: int


FULL = Plan(name="full", sequential_requests=300, four_clients_s=8, sixteen_clients_s=10,
            swaps=20, memory_marks=(20, 100, 200), bare_rounds=200)  # fmt: skip
SHORT = Plan(name="short", sequential_requests=100, four_clients_s=3, sixteen_clients_s=4,
             swaps=20, memory_marks=(20,), bare_rounds=60)  # fmt: skip
SWAP = Plan(name="swap", sequential_requests=0, four_clients_s=0, sixteen_clients_s=0,
            swaps=24, memory_marks=(), bare_rounds=0)  # fmt: skip
"""Only the swap phase (4 clients, the node's default threads): for working on swaps."""
PLANS = {plan.name: plan for plan in (FULL, SHORT, SWAP)}


def bare_calls(model: Path, image_bytes: bytes, cache: Path, *, threads: int, rounds: int
               ) -> dict[str, float]:  # fmt: skip
    """Ultralytics predict (single and batched) and our detector, in this process."""
    from ultralytics import YOLO  # type: ignore[attr-defined]

    from inference_node.serving.imaging import ImageLimits, decode_image

    rgb = decode_image(image_bytes, ImageLimits())
    decode = _timed(lambda: decode_image(image_bytes, ImageLimits()), rounds)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    yolo = YOLO(str(model))
    for _ in range(10):
        yolo.predict(bgr, verbose=False, imgsz=160)
    apply_threads(threads)  # after the first predict: its device setup resets torch's threads
    single = _timed(lambda: yolo.predict(bgr, verbose=False, imgsz=160), rounds)
    batched = _timed(lambda: yolo.predict([bgr] * 16, verbose=False, imgsz=160), rounds // 10)
    detector, _ = ModelLoader(device="cpu", cache_dir=cache, warmup_batch=16).load(
        ref_for_file(model)
    )
    lean = _timed(lambda: detector.detect([rgb], [DetectParams()]), rounds)
    lean_batched = _timed(lambda: detector.detect([rgb] * 16, [DetectParams()] * 16), rounds // 10)
    return {
        "decode_p50_ms": statistics.median(decode),
        "predict_p50_ms": statistics.median(single),
        "predict_batch16_img_per_s": 16 / (statistics.median(batched) / 1000),
        "detector_p50_ms": statistics.median(lean),
        "detector_batch16_img_per_s": 16 / (statistics.median(lean_batched) / 1000),
    }


def _timed(call: Callable[[], object], rounds: int) -> list[float]:
    times = []
    for _ in range(max(3, rounds)):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def client_phases(
    servers: dict[str, str], image: bytes, plan: Plan
) -> dict[str, dict[str, dict[str, float]]]:
    """1, 4 and 16 closed-loop clients; at each count every server in turn, so the figures that
    are compared are measured seconds apart (on a shared machine the load drifts in minutes).
    """
    phases: tuple[tuple[str, dict[str, float]], ...] = (
        ("1_client", {"clients": 1, "requests": plan.sequential_requests}),
        ("4_clients", {"clients": 4, "duration_s": plan.four_clients_s}),
        ("16_clients", {"clients": 16, "duration_s": plan.sixteen_clients_s}),
    )
    found: dict[str, dict[str, dict[str, float]]] = {name: {} for name in servers}
    for phase, load in phases:
        for name, address in servers.items():
            calls = asyncio.run(closed_loop(address, image, **load))  # type: ignore[arg-type]
            found[name][phase] = summary(calls)
    return found


def memory_phase(
    node: NodeProcess, sources: list[Path], marks: tuple[int, ...]
) -> dict[str, float]:
    rss: dict[str, float] = {"rss_before_mb": node.rss_bytes() / 2**20}
    for index in range(max(marks)):
        node.swap_to(sources[index % 2])
        if index + 1 in marks:
            rss[f"rss_after_{index + 1}_swaps_mb"] = node.rss_bytes() / 2**20
    first, last = rss[f"rss_after_{marks[0]}_swaps_mb"], rss[f"rss_after_{marks[-1]}_swaps_mb"]
    rss[f"growth_{marks[0]}_to_{marks[-1]}_pct"] = (last / first - 1) * 100
    return rss


def ratios(figures: dict[str, object], node_threads: int) -> dict[str, float]:
    bare: dict[str, dict[str, float]] = figures["bare"]  # type: ignore[assignment]
    node: dict[str, dict[str, float]] = figures["node"]  # type: ignore[assignment]
    naive: dict[str, dict[str, dict[str, float]]] = figures["naive"]  # type: ignore[assignment]
    swap: dict[str, float] = figures["swap"]  # type: ignore[assignment]
    same = bare[f"threads_{node_threads}"]
    best_naive = max(naive.values(), key=lambda peer: peer["16_clients"]["rps"])
    best_offline = max(b["detector_batch16_img_per_s"] for b in bare.values())
    rps16, p50 = node["16_clients"]["rps"], node["1_client"]["p50_ms"]
    return {
        "overhead_vs_detector_same_threads_ms": p50 - same["detector_p50_ms"],
        "overhead_vs_predict_same_threads_ms": p50 - same["predict_p50_ms"],
        "overhead_beyond_decode_ms": p50 - same["detector_p50_ms"] - same["decode_p50_ms"],
        "overhead_vs_fastest_detector_ms": p50 - min(b["detector_p50_ms"] for b in bare.values()),
        "best_naive_overhead_vs_predict_ms": best_naive["1_client"]["p50_ms"]
        - min(b["predict_p50_ms"] for b in bare.values()),
        "throughput16_vs_best_naive16": rps16 / best_naive["16_clients"]["rps"],
        "throughput16_vs_offline_detector_batch16_same_threads":
            rps16 / same["detector_batch16_img_per_s"],
        "throughput16_vs_best_offline_detector_batch16": rps16 / best_offline,
        "swap_p99_vs_steady_p99": swap["overlap_p99_ms"] / swap["steady_p99_ms"],
    }  # fmt: skip


def targets(r: dict[str, float]) -> dict[str, dict[str, object]]:
    """Issue 9's targets for default flags, each with the figure it is judged by."""
    rows = {
        "sequential overhead <= 1.5 ms": ("overhead_vs_detector_same_threads_ms", 1.5, "<="),
        "16 clients >= 2x best naive": ("throughput16_vs_best_naive16", 2.0, ">="),
        "16 clients >= 70% offline batch-16": (
            "throughput16_vs_offline_detector_batch16_same_threads", 0.7, ">="),
        "swap p99 <= 1.2x steady p99": ("swap_p99_vs_steady_p99", 1.2, "<="),
    }  # fmt: skip
    return {
        name: {"figure": key, "value": r[key], "bound": bound,
               "met": r[key] <= bound if op == "<=" else r[key] >= bound}
        for name, (key, bound, op) in rows.items()
    }  # fmt: skip


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.serving", description=__doc__.splitlines()[0])
    p.add_argument("--short", action="store_true", help="the short plan, for a shared machine")
    p.add_argument("--plan", choices=sorted(PLANS), help="full (default), short, or swap: "
                   "only the swap phase")  # fmt: skip
    p.add_argument("--swaps", type=int, help="swaps under load (default: the plan's)")
    p.add_argument("--note", default="", help="free text stored with the figures (contention)")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    plan = PLANS[args.plan or ("short" if args.short else "full")]
    if args.swaps is not None:
        plan = replace(plan, swaps=args.swaps)
    if plan.name == "swap":
        swap_only(plan, args.note)
        return
    models = ensure_models()
    image = jpeg(5)
    work = Path(tempfile.mkdtemp(prefix="yolofleet-bench-"))
    figures: dict[str, object] = {"context": _context(plan, args.note), "image_bytes": len(image),
                                  "model": models.v1.name, "plan": asdict(plan)}  # fmt: skip
    figures["bare"] = {
        f"threads_{t}": bare_calls(models.v1, image, work / "cache", threads=t,
                                   rounds=plan.bare_rounds)
        for t in PEER_THREADS
    }  # fmt: skip
    model_file = work / "served.pt"
    shutil.copyfile(models.v1, model_file)
    node = NodeProcess(model_file, work / "node-cache")
    try:
        figures["node_settings"] = {"flags": list(node.flags), "threads": node.threads}
        peers = [NaiveProcess(models.v1, work, threads=t) for t in PEER_THREADS]
        try:
            servers = {"node": node.address} | {f"threads_{p.threads}": p.address for p in peers}
            measured = client_phases(servers, image, plan)
        finally:
            for peer in peers:
                peer.stop()
        figures["node"] = measured.pop("node")
        figures["naive"] = measured
        figures["swap"] = swap_phase(node, image, [models.v2, models.v1], plan.swaps)
        figures["memory"] = memory_phase(node, [models.v2, models.v1], plan.memory_marks)
    finally:
        node.stop()
    figures["ratios"] = found = ratios(figures, node.threads)
    figures["targets"] = targets(found)
    shutil.rmtree(work, ignore_errors=True)
    write(figures, plan)


def swap_only(plan: Plan, note: str) -> None:
    """The swap plan: the node alone, 4 clients, ``plan.swaps`` swaps."""
    models = ensure_models()
    work = Path(tempfile.mkdtemp(prefix="yolofleet-bench-"))
    model_file = work / "served.pt"
    shutil.copyfile(models.v1, model_file)
    figures: dict[str, object] = {"context": _context(plan, note), "model": models.v1.name,
                                  "plan": asdict(plan)}  # fmt: skip
    node = NodeProcess(model_file, work / "node-cache")
    try:
        figures["node_settings"] = {"flags": list(node.flags), "threads": node.threads}
        figures["swap"] = swap = swap_phase(node, jpeg(5), [models.v2, models.v1], plan.swaps)
    finally:
        node.stop()
        shutil.rmtree(work, ignore_errors=True)
    ratio = swap["overlap_p99_ms"] / swap["steady_p99_ms"]  # type: ignore[operator]
    figures["ratios"] = {"swap_p99_vs_steady_p99": ratio}
    write(figures, plan)


def write(figures: dict[str, object], plan: Plan) -> None:
    figures["context"]["load_average_after"] = os.getloadavg()  # type: ignore[index]
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"serving-{time.strftime('%Y%m%dT%H%M%S')}-{plan.name}.json"
    out.write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    print(f"written to {out}")


def _context(plan: Plan, note: str) -> dict[str, object]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    return {
        "plan": plan.name,
        "note": note,
        "commit": commit,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "env": {k: os.environ.get(k) for k in OPENMP_ENV},
        "overhead": "node 1-client p50 minus the bare detector p50 at the node's thread count "
        "(the node's figure includes JPEG decode and gRPC)",
    }


if __name__ == "__main__":
    main()
