"""``NodeConfig``: everything a node is told at start, built from flags and environment once."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inference_node.imaging import ImageLimits
from inference_node.serving.admission import AdmissionLimits
from inference_node.serving.batcher import BatchLimits
from inference_node.swapping.artifact_cache import DEFAULT_MAX_BYTES as DEFAULT_ARTIFACT_CACHE_BYTES
from yolofleet.paths import cache_dir


@dataclass(frozen=True, slots=True, kw_only=True)
class GateConfig:
    """Validation settings as configured (the calibration set is read at start-up)."""

    pinned_classes: tuple[str, ...] | None = None
    allow_class_change: bool = False
    require_same_input_size: bool = False
    calibration_dir: Path | None = None
    latency_factor: float | None = 1.5


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetConfig:
    """Fleet mode: the group this node belongs to and where Consul is."""

    group: str
    node_id: str
    consul: str
    key_prefix: str = "yolofleet/"
    session_ttl_s: float = 10.0
    advertise: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """One node's settings, checked once in ``check()``."""

    model_path: Path | None = None
    model_name: str | None = None
    watch: bool = False
    watch_interval_s: float = 1.0
    host: str = "127.0.0.1"
    port: int = 50051
    metrics_port: int | None = None
    device: str = "auto"
    threads: int | None = None
    """Torch intra-op threads; ``None``: ``OMP_NUM_THREADS``, else usable cores less one (>= 1)."""
    batch: BatchLimits = field(default_factory=BatchLimits)
    images: ImageLimits = field(default_factory=ImageLimits)
    admission: AdmissionLimits = field(default_factory=AdmissionLimits)
    gates: GateConfig = field(default_factory=GateConfig)
    min_swap_interval_s: float = 5.0
    drain_timeout_s: float = 10.0
    watchdog_timeout_s: float | None = None
    """Longest a device job may run before health goes NOT_SERVING; ``None``: derived."""
    max_det_limit: int = 1000
    artifact_cache: Path = field(default_factory=lambda: cache_dir() / "artifacts")
    artifact_cache_bytes: int = DEFAULT_ARTIFACT_CACHE_BYTES
    """Bound on the verified artifacts kept on disk (least recently used unpinned ones go)."""
    fleet: FleetConfig | None = None
    allowed_models: frozenset[str] = frozenset()
    model_memory_budget_bytes: int = 2 * 1024**3
    local_models: tuple[tuple[str, Path], ...] = ()
    """Standalone nodes' ``--allow-model NAME=PATH`` files (fleet nodes use the model registry)."""

    def check(self) -> NodeConfig:
        """Raise ValueError with a sentence per problem; return self when all is well."""
        problems = []
        if self.watch and self.model_path is None:
            problems.append("--watch needs --model")
        if self.fleet is not None and self.model_path is not None:
            problems.append("--model and --group are exclusive: the group's target picks the model")
        if not 0 <= self.port <= 65535:
            problems.append(f"port {self.port} is out of range")
        if self.threads is not None and self.threads < 1:
            problems.append(
                f"--threads must be at least 1, got {self.threads} "
                "(leave it out for the default: OMP_NUM_THREADS, else the usable cores less one)"
            )
        if self.watchdog_timeout_s is not None and self.watchdog_timeout_s <= 0:
            problems.append(f"--watchdog-timeout must be positive, got {self.watchdog_timeout_s:g}")
        if self.batch.max_size < 1 or self.batch.max_queue < 1 or self.batch.max_wait_s < 0:
            problems.append("batch limits must be positive (max wait may be 0)")
        problems.extend(self._input_problems())
        if self.gates.latency_factor is not None and self.gates.latency_factor <= 0:
            problems.append("latency factor must be positive")
        if self.model_path is not None and not self.model_path.is_file():
            problems.append(f"model file {self.model_path} does not exist")
        if self.artifact_cache_bytes <= 0:
            problems.append(
                f"--artifact-cache-bytes must be positive, got {self.artifact_cache_bytes}"
            )
        problems.extend(self._on_demand_problems())
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _input_problems(self) -> list[str]:
        """Image and admission limits: each must be positive."""
        images, admission = self.images, self.admission
        values = {
            "--max-pixels": images.max_pixels,
            "--max-decoded-pixels": images.max_decoded_pixels,
            "--max-concurrent-rpcs": admission.max_rpcs,
            "--max-streams": admission.max_streams,
            "--stream-window": admission.stream_window,
            "--stream-idle-timeout": admission.stream_idle_s,
        }
        if admission.max_inflight_bytes is not None:
            values["--max-inflight-bytes"] = admission.max_inflight_bytes
        return [f"{flag} must be positive, got {value:g}" for flag, value in values.items()
                if value <= 0]  # fmt: skip

    def _on_demand_problems(self) -> list[str]:
        problems = []
        if self.model_memory_budget_bytes <= 0:
            problems.append(
                f"model memory budget must be positive, got {self.model_memory_budget_bytes}"
            )
        if self.fleet is not None and self.local_models:
            problems.append(
                "--allow-model NAME=PATH is for standalone nodes: in fleet mode give "
                "--allow-model NAME and register the model with the control plane"
            )
        if self.fleet is None:
            without_file = self.allowed_models - {name for name, _ in self.local_models}
            if without_file:
                problems.append(
                    f"--allow-model {', '.join(sorted(without_file))} needs a file on a "
                    "standalone node: give it as NAME=PATH"
                )
        for name, path in self.local_models:
            if not path.is_file():
                problems.append(f"model file {path} for --allow-model {name} does not exist")
        return problems


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
