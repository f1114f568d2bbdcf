"""`BenchConfig`: what a bench run measures (the CLI's options, as data), checked as it is built."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edgerun.bench.loadgen import check_scenario
from edgerun.data.preprocess import PreprocessSpec
from edgerun.errors import ConfigError


@dataclass(frozen=True)
class BenchConfig:
    """Everything that decides what a bench run measures (the CLI's options, as data)."""

    scenario: str = "single-stream"
    batch: int | None = None
    """Rows per call: single-stream and offline batch; server's max batch size (default: the device policy's,
    measured once per model and device, `edgerun.runtime.batching.policy`)."""
    samples_per_query: int = 8
    """multi-stream: samples in each query."""
    min_queries: int = 200
    min_duration_s: float = 0.0
    warmup: int = 10
    deadline_ms: float | None = None
    seed: int = 0
    shapes: Mapping[str, Sequence[int]] | None = None
    target_qps: float | None = None
    latency_bound_ms: float | None = None
    """server: the bound p99 must hold (default: the deadline)."""
    find_max_qps: bool = False
    max_queue_delay_ms: float | None = None
    """server: the batcher's delay (default: a tenth of the bound, at most 2 ms)."""
    data: str | None = None
    preprocess: PreprocessSpec | None = None
    include_preprocess: bool = False
    offline_samples: int = 1024
    thermal_root: str = "/"

    def __post_init__(self) -> None:
        check_scenario(self.scenario)
        for name in ("min_queries", "samples_per_query", "offline_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch is not None and self.batch < 1:
            raise ConfigError(f"batch must be >= 1, got {self.batch}")
        if self.target_qps is not None and not self.target_qps > 0:
            raise ConfigError(f"target QPS must be > 0, got {self.target_qps}")
        if self.latency_bound_ms is not None and not self.latency_bound_ms > 0:
            raise ConfigError(f"latency bound must be > 0 ms, got {self.latency_bound_ms}")
        if self.scenario == "server" and self.target_qps is None and not self.find_max_qps:
            raise ConfigError("the server scenario needs --target-qps or --find-max-qps")
        if self.scenario != "server" and (self.target_qps is not None or self.find_max_qps):
            raise ConfigError(f"--target-qps and --find-max-qps belong to the server scenario, not {self.scenario}")
        if self.include_preprocess and self.data is None:
            raise ConfigError("--include-preprocess needs real inputs (--data FOLDER)")
