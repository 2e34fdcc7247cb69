"""Serving benchmark: overhead, batching throughput, swap latency and swap memory.

Run with ``.venv/bin/python -m bench.serving [--threads N]``. The node and the naive baseline
run as subprocesses; clients and the bare in-process calls run here. All three use the same
explicit torch thread count (``--threads``, default 2: this machine's cores), so neither side
gets more cores than the other. Figures go to ``bench/results/serving-<timestamp>.json`` and a
table is printed. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from yolofleet.offline import ensure_offline

ensure_offline()

import grpc  # noqa: E402
import numpy as np  # noqa: E402

from bench.load import Call, closed_loop, jpeg, percentile, summary  # noqa: E402
from inference_node.device import apply_threads  # noqa: E402
from inference_node.loader import ModelLoader  # noqa: E402
from inference_node.model import DetectParams  # noqa: E402
from inference_node.node import ref_for_file  # noqa: E402
from yolofleet.demo_models import ensure_models  # noqa: E402
from yolofleet.v1 import inference_pb2 as pb  # noqa: E402
from yolofleet.v1 import inference_pb2_grpc as pb_grpc  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SERVING = re.compile(r"node serving model=\S+ grpc_port=(\d+)")


def bare_calls(model: Path, image_bytes: bytes, cache: Path, *, threads: int) -> dict[str, float]:
    """Ultralytics predict (single and batched) and our detector, in this process."""
    from ultralytics import YOLO  # type: ignore[attr-defined]

    from inference_node.imaging import ImageLimits, decode_image

    rgb = decode_image(image_bytes, ImageLimits())
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    yolo = YOLO(str(model))
    for _ in range(10):
        yolo.predict(bgr, verbose=False, imgsz=160)
    apply_threads(threads)  # after the first predict: its device setup resets torch's threads
    single = _timed(lambda: yolo.predict(bgr, verbose=False, imgsz=160), 200)
    batch = [bgr] * 16
    batched = _timed(lambda: yolo.predict(batch, verbose=False, imgsz=160), 15)
    detector, _ = ModelLoader(device="cpu", cache_dir=cache, warmup_batch=16).load(
        ref_for_file(model)
    )
    lean = _timed(lambda: detector.detect([rgb], [DetectParams()]), 200)
    lean_batched = _timed(lambda: detector.detect([rgb] * 16, [DetectParams()] * 16), 15)
    return {
        "predict_p50_ms": statistics.median(single),
        "predict_batch16_img_per_s": 16 / (statistics.median(batched) / 1000),
        "detector_p50_ms": statistics.median(lean),
        "detector_batch16_img_per_s": 16 / (statistics.median(lean_batched) / 1000),
    }


def _timed(call: object, rounds: int) -> list[float]:
    assert callable(call)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


class NodeProcess:
    def __init__(self, model_file: Path, cache: Path, *, threads: int) -> None:
        self.model_file = model_file
        self.process = subprocess.Popen(
            [sys.executable, "-m", "inference_node", "--model", str(model_file), "--watch",
             "--watch-interval", "0.05", "--port", "0", "--device", "cpu",
             "--threads", str(threads), "--min-swap-interval", "0", "--latency-factor", "0"],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "YOLOFLEET_CACHE": str(cache)},
        )  # fmt: skip
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if match := SERVING.search(line):
                self.address = f"127.0.0.1:{match.group(1)}"
                break
        else:
            raise RuntimeError("node exited before serving")
        # keep reading: a full stderr pipe would block the node's logging, and its event loop
        threading.Thread(target=self.process.stderr.read, daemon=True).start()
        self.stub = pb_grpc.InferenceStub(grpc.insecure_channel(self.address))  # type: ignore[no-untyped-call]

    def generation(self) -> int:
        status: pb.NodeStatus = self.stub.GetStatus(pb.GetStatusRequest(), timeout=10)
        return status.generation

    def swap_to(self, source: Path) -> tuple[float, float]:
        """Atomically replace the watched file; return (written_at, live_at)."""
        before = self.generation()
        temp = self.model_file.with_suffix(".tmp")
        shutil.copyfile(source, temp)
        written = time.perf_counter()
        os.replace(temp, self.model_file)
        while self.generation() == before:
            time.sleep(0.01)
        return written, time.perf_counter()

    def rss_bytes(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)


def naive_server(model: Path, work: Path, *, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    port_file = work / "naive.port"
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.naive_server", str(model), str(port_file), str(threads)]
    )
    deadline = time.monotonic() + 120
    while not port_file.exists() or not port_file.read_text():
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("naive server did not start")
        time.sleep(0.1)
    return process, f"127.0.0.1:{port_file.read_text()}"


def swap_phase(
    node: NodeProcess, image: bytes, sources: list[Path], swaps: int
) -> dict[str, float]:
    """4 clients under load while the model is swapped ``swaps`` times."""
    windows: list[tuple[float, float]] = []

    async def run() -> list[Call]:
        load = asyncio.ensure_future(
            closed_loop(node.address, image, clients=4, duration_s=2 + swaps * 1.5)
        )
        await asyncio.sleep(1.0)
        for index in range(swaps):
            windows.append(await asyncio.to_thread(node.swap_to, sources[index % 2]))
            await asyncio.sleep(0.5)
        return await load

    calls = asyncio.run(run())
    overlapping = [
        c for c in calls if any(c.started <= end and c.ended >= start for start, end in windows)
    ]
    steady = [c for c in calls if c not in overlapping]
    return {
        "swaps": len(windows),
        "swap_p50_s": statistics.median(end - start for start, end in windows),
        "overlap_requests": len(overlapping),
        "overlap_failed": sum(not c.ok for c in overlapping),
        "overlap_p99_ms": percentile([c.latency_ms for c in overlapping if c.ok], 99),
        "overlap_max_ms": max((c.latency_ms for c in overlapping if c.ok), default=float("nan")),
        "steady_p99_ms": percentile([c.latency_ms for c in steady if c.ok], 99),
    }


def memory_phase(node: NodeProcess, sources: list[Path], total: int) -> dict[str, float]:
    rss: dict[int, int] = {}
    for index in range(total):
        node.swap_to(sources[index % 2])
        if index + 1 in (20, total):
            rss[index + 1] = node.rss_bytes()
    return {
        "rss_after_20_mb": rss[20] / 2**20,
        f"rss_after_{total}_mb": rss[total] / 2**20,
        "growth_pct": (rss[total] / rss[20] - 1) * 100,
    }


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.serving", description=__doc__.splitlines()[0])
    p.add_argument(
        "--threads", type=int, default=2, metavar="N",
        help="torch threads for the node, the naive server and the bare calls alike (default 2)",
    )  # fmt: skip
    args = p.parse_args()
    if args.threads < 1:
        p.error(f"--threads must be at least 1, got {args.threads}")
    return args


def main() -> None:
    threads = parse_args().threads
    swaps_for_memory = int(os.environ.get("BENCH_MEMORY_SWAPS", "200"))
    models = ensure_models()
    image = jpeg(5)
    work = Path(tempfile.mkdtemp(prefix="yolofleet-bench-"))
    figures: dict[str, object] = {
        "image_bytes": len(image), "model": models.v1.name, "threads": threads,
    }  # fmt: skip
    figures["bare"] = bare = bare_calls(models.v1, image, work / "cache", threads=threads)
    model_file = work / "served.pt"
    shutil.copyfile(models.v1, model_file)
    node = NodeProcess(model_file, work / "node-cache", threads=threads)
    try:
        figures["node_1_client"] = one = summary(
            asyncio.run(closed_loop(node.address, image, clients=1, requests=300))
        )
        figures["node_4_clients"] = summary(
            asyncio.run(closed_loop(node.address, image, clients=4, duration_s=8))
        )
        figures["node_16_clients"] = sixteen = summary(
            asyncio.run(closed_loop(node.address, image, clients=16, duration_s=10))
        )
        figures["swap"] = swap = swap_phase(node, image, [models.v2, models.v1], swaps=10)
        figures["memory"] = memory_phase(node, [models.v2, models.v1], swaps_for_memory)
    finally:
        node.stop()
    naive, address = naive_server(models.v1, work, threads=threads)
    try:
        figures["naive_1_client"] = naive_one = summary(
            asyncio.run(closed_loop(address, image, clients=1, requests=300))
        )
        figures["naive_4_clients"] = summary(
            asyncio.run(closed_loop(address, image, clients=4, duration_s=8))
        )
        figures["naive_16_clients"] = naive16 = summary(
            asyncio.run(closed_loop(address, image, clients=16, duration_s=10))
        )
    finally:
        naive.terminate()
        naive.wait(30)
    figures["ratios"] = {
        "overhead_vs_predict_ms": one["p50_ms"] - bare["predict_p50_ms"],
        "overhead_vs_detector_ms": one["p50_ms"] - bare["detector_p50_ms"],
        "naive_overhead_vs_predict_ms": naive_one["p50_ms"] - bare["predict_p50_ms"],
        "throughput16_vs_naive16": sixteen["rps"] / naive16["rps"],
        "throughput16_vs_offline_predict_batch16": sixteen["rps"]
        / bare["predict_batch16_img_per_s"],
        "throughput16_vs_offline_detector_batch16": sixteen["rps"]
        / bare["detector_batch16_img_per_s"],
        "swap_p99_vs_steady_p99": swap["overlap_p99_ms"] / swap["steady_p99_ms"],
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"serving-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(figures, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
