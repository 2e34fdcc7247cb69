"""``NodeConfig``: everything a node is told at start (``config_args`` builds it from flags)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from inference_node.serving.admission import AdmissionLimits
from inference_node.serving.imaging import ImageLimits
from inference_node.serving.requests import BatchLimits
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
