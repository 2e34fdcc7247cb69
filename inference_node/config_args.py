"""The node's command line: flags (with environment defaults) parsed into a ``NodeConfig``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from inference_node.config import FleetConfig, GateConfig, NodeConfig
from inference_node.serving.admission import AdmissionLimits
from inference_node.serving.imaging import ImageLimits
from inference_node.serving.requests import BatchLimits
from inference_node.swapping.artifact_cache import DEFAULT_MAX_BYTES as DEFAULT_ARTIFACT_CACHE_BYTES


def parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="inference-node", description="Serve YOLO Detect over gRPC.")
    p.add_argument("--model", type=Path, help="model file (.pt) to serve")
    p.add_argument("--name", help="model name reported to clients (default: file stem)")
    p.add_argument(
        "--watch", action="store_true", help="hot-reload when the file's content changes"
    )
    p.add_argument("--watch-interval", type=float, default=1.0, help="seconds between polls")
    p.add_argument("--host", default=env("YOLOFLEET_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(env("YOLOFLEET_PORT", "50051")))
    p.add_argument("--metrics-port", type=int, default=_opt_int(env("YOLOFLEET_METRICS_PORT")))
    p.add_argument("--device", default=env("YOLOFLEET_DEVICE", "auto"), help="auto, cpu, cuda:N")
    p.add_argument(
        "--threads", type=int, metavar="N", default=_opt_int(env("YOLOFLEET_THREADS")),
        help="torch intra-op threads (default: OMP_NUM_THREADS if set, else the usable "
        "cores less one, at least one: a core is left to the gRPC and decode threads)",
    )  # fmt: skip
    p.add_argument("--max-batch", type=int, default=int(env("YOLOFLEET_MAX_BATCH", "16")))
    p.add_argument("--max-wait-ms", type=float, default=float(env("YOLOFLEET_MAX_WAIT_MS", "2")))
    p.add_argument("--max-queue", type=int, default=int(env("YOLOFLEET_MAX_QUEUE", "256")))
    _input_flags(p)
    p.add_argument("--min-swap-interval", type=float, default=5.0, help="seconds")
    p.add_argument("--drain-timeout", type=float, default=10.0, help="seconds")
    p.add_argument(
        "--watchdog-timeout", type=float, metavar="SECONDS",
        help="health goes NOT_SERVING while one device job runs longer (default: 4 full "
        "batches at the measured job time, at least 5 s)",
    )  # fmt: skip
    p.add_argument("--calibration-dir", type=Path, help="golden images + manifest.json")
    p.add_argument("--classes", help="pin the class list, comma-separated")
    p.add_argument("--allow-class-change", action="store_true")
    p.add_argument("--latency-factor", type=float, default=1.5, help="0 turns the gate off")
    p.add_argument(
        "--allow-model", action="append", default=[], metavar="NAME[=PATH]",
        help="a model clients may name, loaded on demand (repeatable); "
        "standalone nodes give its file as NAME=PATH",
    )  # fmt: skip
    p.add_argument(
        "--model-memory-budget", type=int, metavar="BYTES",
        default=int(env("YOLOFLEET_MODEL_MEMORY_BUDGET", str(2 * 1024**3))),
        help="weight bytes the on-demand models may hold together (assigned model not counted)",
    )  # fmt: skip
    artifacts = p.add_argument_group("artifact cache")
    artifacts.add_argument(
        "--artifact-cache-bytes", type=int, metavar="BYTES",
        default=int(env("YOLOFLEET_ARTIFACT_CACHE_BYTES", str(DEFAULT_ARTIFACT_CACHE_BYTES))),
        help="bytes of verified model files kept on disk; least recently used ones not in "
        "use are removed beyond it (default: %(default)s)",
    )  # fmt: skip
    fleet = p.add_argument_group("fleet mode (the group's target in Consul picks the model)")
    fleet.add_argument("--group", default=env("YOLOFLEET_GROUP"))
    fleet.add_argument("--node-id", default=env("YOLOFLEET_NODE_ID"))
    fleet.add_argument("--consul", default=env("CONSUL_HTTP_ADDR"), help="HOST:PORT or URL")
    fleet.add_argument("--key-prefix", default=env("YOLOFLEET_KEY_PREFIX", "yolofleet/"))
    fleet.add_argument("--session-ttl", type=float, default=10.0, help="seconds")
    fleet.add_argument("--advertise", help="HOST:PORT others reach this node at")
    return p


def _input_flags(p: argparse.ArgumentParser) -> None:
    """What a request may ask of the node: image sizes, bytes in flight, calls and streams."""
    images, admission = ImageLimits(), AdmissionLimits()
    p.add_argument(
        "--max-pixels", type=int, default=images.max_pixels,
        help="largest original image accepted, in pixels (larger ones are refused)",
    )  # fmt: skip
    p.add_argument(
        "--max-decoded-pixels", type=int, default=images.max_decoded_pixels,
        help="larger originals are reduced on decode to at most this many pixels "
        "(boxes still come back in original-image pixels)",
    )  # fmt: skip
    p.add_argument(
        "--max-inflight-bytes", type=int, metavar="BYTES", default=None,
        help="bytes all requests may hold at once, from arrival to answer (wire bytes, "
        "decoding, pixels); default: a quarter of the cgroup memory limit, else of the RAM",
    )  # fmt: skip
    p.add_argument(
        "--max-concurrent-rpcs", type=int, default=admission.max_rpcs,
        help="Detect calls and DetectStream streams open at once; the excess gets "
        "RESOURCE_EXHAUSTED at once",
    )  # fmt: skip
    p.add_argument("--max-streams", type=int, default=admission.max_streams,
                   help="DetectStream streams open at once")  # fmt: skip
    p.add_argument("--stream-window", type=int, default=admission.stream_window,
                   help="frames of one stream in flight at once")  # fmt: skip
    p.add_argument(
        "--stream-idle-timeout", type=float, metavar="SECONDS",
        default=admission.stream_idle_s,
        help="a stream with no frame in flight that sends nothing this long is ended",
    )  # fmt: skip


def from_args(argv: Sequence[str] | None = None) -> NodeConfig:
    args = parser().parse_args(argv)
    allowed, local_models = _allowed_models(args.allow_model)
    return NodeConfig(
        model_path=args.model,
        model_name=args.name,
        watch=args.watch,
        watch_interval_s=args.watch_interval,
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        device=args.device,
        threads=args.threads,
        batch=BatchLimits(
            max_size=args.max_batch, max_wait_s=args.max_wait_ms / 1000, max_queue=args.max_queue
        ),
        images=ImageLimits(max_pixels=args.max_pixels, max_decoded_pixels=args.max_decoded_pixels),
        admission=AdmissionLimits(
            max_inflight_bytes=args.max_inflight_bytes,
            max_rpcs=args.max_concurrent_rpcs,
            max_streams=args.max_streams,
            stream_window=args.stream_window,
            stream_idle_s=args.stream_idle_timeout,
        ),
        gates=GateConfig(
            pinned_classes=tuple(args.classes.split(",")) if args.classes else None,
            allow_class_change=args.allow_class_change,
            calibration_dir=args.calibration_dir,
            latency_factor=args.latency_factor or None,
        ),
        min_swap_interval_s=args.min_swap_interval,
        drain_timeout_s=args.drain_timeout,
        watchdog_timeout_s=args.watchdog_timeout,
        fleet=_fleet(args),
        allowed_models=allowed,
        model_memory_budget_bytes=args.model_memory_budget,
        local_models=local_models,
        artifact_cache_bytes=args.artifact_cache_bytes,
    ).check()


def _allowed_models(values: Sequence[str]) -> tuple[frozenset[str], tuple[tuple[str, Path], ...]]:
    """``--allow-model`` values (``NAME`` or ``NAME=PATH``) as names and local files."""
    names: set[str] = set()
    files: list[tuple[str, Path]] = []
    for value in values:
        name, has_path, path = value.partition("=")
        if not name:
            raise ValueError(f"--allow-model {value!r} needs a model name (NAME or NAME=PATH)")
        names.add(name)
        if has_path:
            files.append((name, Path(path)))
    return frozenset(names), tuple(files)


def _fleet(args: argparse.Namespace) -> FleetConfig | None:
    given = [args.group, args.node_id]
    if not any(given):
        return None
    if not all(given) or not args.consul:
        raise ValueError("fleet mode needs --group, --node-id and --consul (or CONSUL_HTTP_ADDR)")
    return FleetConfig(
        group=args.group,
        node_id=args.node_id,
        consul=args.consul,
        key_prefix=args.key_prefix,
        session_ttl_s=args.session_ttl,
        advertise=args.advertise,
    )


def _opt_int(value: str | None) -> int | None:
    return int(value) if value else None
