"""Replayed traffic for the analysis benchmark: real per-image figures of the demo models.

``python -m bench.analysis_replay [--images 200]`` runs every demo model (``shapes-v1``,
``shapes-v2``, ``shapes-drift``) offline on the CPU over the same synthetic images (seeds 0..N,
as the end-to-end test's load uses) and records, per image: detections, their confidence sum,
detections per class, and the model call's latency. The figures go to
``bench/results/analysis-replay-<timestamp>.json``; ``bench.analysis --replay FILE`` replays
them: each simulated request draws an image at random and takes that model's figures for it.

``replay(...)`` turns the recorded figures into running ``Totals`` like ``analysis_traffic``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.analysis_traffic import CLASSES, Totals
from yolofleet.offline import ensure_offline

MODELS = ("shapes-v1", "shapes-v2", "shapes-drift")
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True, slots=True, kw_only=True)
class Recorded:
    """One model's figures per image (axis 0)."""

    detections: npt.NDArray[np.int64]
    confidence_sum: npt.NDArray[np.float64]
    classes: npt.NDArray[np.int64]
    """(images, classes) in ``CLASSES`` order"""
    latency_s: npt.NDArray[np.float64]

    @classmethod
    def of(cls, raw: dict[str, list[float]]) -> Recorded:
        return cls(
            detections=np.array(raw["detections"], dtype=np.int64),
            confidence_sum=np.array(raw["confidence_sum"], dtype=np.float64),
            classes=np.array(raw["classes"], dtype=np.int64),
            latency_s=np.array(raw["latency_s"], dtype=np.float64),
        )


def replay(recorded: Recorded, *, rollouts: int, chunk: int = 100, **kwargs: object) -> Totals:
    """``replay_chunk`` ``chunk`` rollouts at a time (the per-request arrays stay small)."""
    parts = [
        replay_chunk(recorded, rollouts=min(chunk, rollouts - start), **kwargs)  # type: ignore[arg-type]
        for start in range(0, rollouts, chunk)
    ]
    return Totals(
        **{
            name: np.concatenate([getattr(part, name) for part in parts])
            for name in Totals.__dataclass_fields__
        }
    )


def replay_chunk(
    recorded: Recorded,
    *,
    latency: npt.NDArray[np.float64],
    error_rate: float,
    nodes: int,
    rate: float,
    tick_s: float,
    ticks: int,
    rollouts: int,
    rng: np.random.Generator,
) -> Totals:
    """Requests at ``rate`` per node per second, each on a random recorded image; latencies are
    drawn from the bucket probabilities ``latency`` (the recorded ones are one process's CPU
    timings on a shared machine, not a node's serving latency)."""
    requests = rng.poisson(rate * nodes * tick_s, size=(rollouts, ticks))
    errors = rng.binomial(requests, error_rate)
    segments = np.repeat(np.arange(rollouts * ticks), requests.ravel())
    image = rng.integers(0, len(recorded.detections), size=len(segments))
    answered = rng.random(len(segments)) >= error_rate  # approximately the errors drawn above
    cells = rollouts * ticks

    def per_tick(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        summed = np.bincount(segments, weights=values * answered, minlength=cells)
        return summed.reshape(rollouts, ticks).astype(np.float64)

    buckets = rng.multinomial(requests, latency)
    classes = np.stack(
        [per_tick(recorded.classes[image, k].astype(np.float64)) for k in range(len(CLASSES))],
        axis=-1,
    )
    return Totals(
        requests=requests.cumsum(axis=1),
        errors=errors.cumsum(axis=1),
        latency=buckets.cumsum(axis=1),
        detections=per_tick(recorded.detections[image].astype(np.float64))
        .astype(np.int64)
        .cumsum(axis=1),
        confidence_sum=per_tick(recorded.confidence_sum[image]).cumsum(axis=1),
        classes=classes.astype(np.int64).cumsum(axis=1),
    )


def record(model: Path, images: list[npt.NDArray[np.uint8]], cache: Path) -> dict[str, object]:
    from inference_node.model import DetectParams
    from inference_node.node_parts import ref_for_file
    from inference_node.swapping.loader import ModelLoader

    detector, _ = ModelLoader(device="cpu", cache_dir=cache, warmup_batch=1).load(
        ref_for_file(model)
    )
    figures: dict[str, list[object]] = {k: [] for k in Recorded.__dataclass_fields__}
    for image in images:
        started = time.perf_counter()
        (found,) = detector.detect([image], [DetectParams()])
        figures["latency_s"].append(time.perf_counter() - started)
        figures["detections"].append(len(found))
        figures["confidence_sum"].append(sum(d.confidence for d in found))
        figures["classes"].append([sum(d.class_name == c for d in found) for c in CLASSES])
    detector.close()
    return figures  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    ensure_offline()
    from yolofleet.demo_models import ensure_models
    from yolofleet.synthetic import render_image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    built = ensure_models()
    paths = {"shapes-v1": built.v1, "shapes-v2": built.v2, "shapes-drift": built.drift}
    images = [np.asarray(render_image(seed).image.convert("RGB")) for seed in range(args.images)]
    with tempfile.TemporaryDirectory() as cache:
        figures = {name: record(paths[name], images, Path(cache)) for name in MODELS}
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"analysis-replay-{stamp}.json"
    path.write_text(json.dumps({"images": args.images, "models": figures}) + "\n")
    for name, raw in figures.items():
        print(f"{name}: {summary(Recorded.of(raw))}")  # type: ignore[arg-type]
    print(f"wrote {path}")
    return 0


def summary(recorded: Recorded) -> str:
    detections = int(recorded.detections.sum())
    shares = recorded.classes.sum(axis=0) / max(1, detections)
    mix = ", ".join(f"{c} {s:.1%}" for c, s in zip(CLASSES, shares, strict=True))
    return (
        f"{recorded.detections.mean():.3f} detections/image, mean confidence "
        f"{recorded.confidence_sum.sum() / max(1, detections):.3f}, {mix}, "
        f"p99 {np.quantile(recorded.latency_s, 0.99) * 1000:.1f}ms"
    )


if __name__ == "__main__":
    raise SystemExit(main())
