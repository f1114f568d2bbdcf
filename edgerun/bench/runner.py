"""`edgerun bench`: run a scenario on a session and report it the way device engineers read reports.

`benchmark` builds the inputs (`bench_inputs`), runs one of LoadGen's scenarios (`loadgen`)
while watching temperatures (`sysinfo`), and returns a `BenchResult`: latency distribution
(nearest-rank percentiles), throughput, the scenario's score, the real-time verdict, system
facts and trtexec-style warnings (`bench_diagnose`). Rendering and files live elsewhere.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgerun import __version__
from edgerun.bench.diagnose import diagnose
from edgerun.bench.inputs import InputSource, data_source, random_source
from edgerun.bench.loadgen import (
    LOADGEN_MIN_DURATION_S,
    Progress,
    ScenarioRun,
    check_scenario,
    closed_loop,
    find_max_qps,
)
from edgerun.bench.loadgen import offline as run_offline
from edgerun.bench.loadgen import server as run_server
from edgerun.bench.schema import SCHEMA
from edgerun.data.preprocess import PreprocessSpec
from edgerun.data.synthetic import random_feeds
from edgerun.errors import ConfigError, InputError
from edgerun.runtime.backends.base import PhaseTimedBackend
from edgerun.runtime.device import DeviceProfile
from edgerun.runtime.session import Session
from edgerun.stats import LatencyStats

__all__ = ["BenchConfig", "BenchResult", "Timing", "batched_shapes", "benchmark", "random_feeds", "time_calls"]

LATENCY_SAMPLES_KEPT = 10_000
"""Per-query latencies written to result files (for plots), evenly thinned beyond this."""


def batched_shapes(shapes: Mapping[str, Sequence[int]], batch: int) -> dict[str, list[int]]:
    """Card shapes (given at batch 1) with axis 0 set to ``batch``."""
    return {name: [batch, *dims[1:]] for name, dims in shapes.items()}


@dataclass(frozen=True)
class Timing:
    """Raw per-call latencies (seconds) and the wall time of the measured loop."""

    latencies_s: np.ndarray
    wall_s: float


def time_calls(
    session: Session,
    feeds: Mapping[str, np.ndarray],
    *,
    warmup: int = 10,
    iterations: int = 200,
    duration_s: float = 0.0,
    progress: Callable[[int], None] | None = None,
) -> Timing:
    """Call ``session.run(feeds)`` warmup times, then until ``iterations`` and ``duration_s`` are met."""
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    run = session.run
    report = None if progress is None else (lambda done, _: progress(done))
    measured = closed_loop(
        lambda _: run(feeds),
        samples_per_query=1,
        min_queries=iterations,
        min_duration_s=duration_s,
        warmup=warmup,
        progress=report,
    )
    return Timing(measured.latencies_s, measured.wall_s)


@dataclass(frozen=True)
class BenchConfig:
    """Everything that decides what a bench run measures (the CLI's options, as data)."""

    scenario: str = "single-stream"
    batch: int | None = None
    """Rows per call: single-stream and offline batch; server's max batch size (default 8)."""
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


@dataclass(frozen=True)
class BenchResult:
    """One benchmark run: what ran where, how it was loaded, how fast, and the verdicts."""

    model: str
    model_sha256: str
    backend: str
    plan: dict[str, Any]
    device: dict[str, Any]
    system: dict[str, Any]
    scenario: str
    settings: dict[str, Any]
    batch: int
    inputs: dict[str, Any]
    queries: int
    samples: int
    wall_s: float
    interrupted: bool
    latency_ms: LatencyStats
    latency_samples_ms: list[float]
    deadline_ms: float
    server: dict[str, Any] | None
    gpu_phases_ms: dict[str, float] | None
    warnings: list[str]
    notes: list[str]
    versions: dict[str, str | None]
    timestamp: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def throughput_per_s(self) -> float:
        """Samples per second over the measured run."""
        return self.samples / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def qps(self) -> float:
        return self.queries / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def deadline_rule(self) -> str:
        if self.scenario == "offline":
            return f"throughput >= {1e3 / self.deadline_ms:.1f} samples/s (one sample per {self.deadline_ms:g} ms)"
        return f"p99 <= {self.deadline_ms:g} ms"

    @property
    def meets_deadline(self) -> bool:
        """Offline: the frame rate the deadline implies; otherwise p99 of queries within the deadline."""
        if self.scenario == "offline":
            return self.throughput_per_s >= 1e3 / self.deadline_ms
        return self.latency_ms.p99 <= self.deadline_ms

    @property
    def score(self) -> dict[str, Any]:
        """The scenario's headline figure, as LoadGen scores it."""
        if self.scenario == "single-stream":
            return {"metric": "p90 latency ms", "value": self.latency_ms.p90, "higher_is_better": False}
        if self.scenario == "multi-stream":
            return {"metric": "p99 latency ms", "value": self.latency_ms.p99, "higher_is_better": False}
        if self.scenario == "offline":
            return {"metric": "samples/s", "value": self.throughput_per_s, "higher_is_better": True}
        server = self.server or {}
        if "max_qps" in server:
            return {"metric": "max QPS within the latency bound", "value": server["max_qps"], "higher_is_better": True}
        return {"metric": "QPS at target", "value": server.get("achieved_qps", 0.0), "higher_is_better": True}

    def to_dict(self) -> dict[str, Any]:
        latency = self.latency_ms.to_dict()
        latency["median"] = self.latency_ms.p50
        latency["cv"] = self.latency_ms.cv
        return {
            "schema": SCHEMA,
            "kind": "run",
            "model": self.model,
            "model_sha256": self.model_sha256,
            "backend": self.backend,
            "precision": self.plan["precision"],
            "threads": self.plan["threads"],
            "device": self.device,
            "system": self.system,
            "plan": self.plan,
            "fallbacks": self.plan["fallbacks"],
            "scenario": self.scenario,
            "settings": self.settings,
            "batch": self.batch,
            "inputs": self.inputs,
            "queries": self.queries,
            "samples": self.samples,
            "wall_s": self.wall_s,
            "interrupted": self.interrupted,
            "latency_ms": latency,
            "latency_samples_ms": self.latency_samples_ms,
            "throughput_per_s": self.throughput_per_s,
            "qps": self.qps,
            "score": self.score,
            "deadline_ms": self.deadline_ms,
            "meets_deadline": self.meets_deadline,
            "deadline_rule": self.deadline_rule,
            "server": self.server,
            "gpu_phases_ms": self.gpu_phases_ms,
            "warnings": self.warnings,
            "notes": self.notes,
            "versions": self.versions,
            "timestamp": self.timestamp,
        }


def benchmark(
    session: Session,
    profile: DeviceProfile,
    config: BenchConfig | None = None,
    *,
    progress: Progress | None = None,
    **overrides: Any,
) -> BenchResult:
    """Run ``config``'s scenario on ``session`` (fields of `BenchConfig` may be given as keywords)."""
    from edgerun.bench.sysinfo import ThermalMonitor, system_info
    from edgerun.runtime.defaults import DeviceDefaults

    config = dataclasses.replace(config or BenchConfig(), **overrides)
    deadline = config.deadline_ms if config.deadline_ms is not None else DeviceDefaults.for_profile(profile).deadline_ms
    runner = _ScenarioRunner(session, config, deadline)
    system = system_info(profile.kind, root=config.thermal_root)
    timed: object = session.opened_backend if session.capabilities.phase_timing else None
    if isinstance(timed, PhaseTimedBackend):
        timed.measure_phases(True)
    try:
        with ThermalMonitor(root=config.thermal_root) as monitor:
            measured = runner.run(progress)
        phases = _gpu_phases(session)
    finally:
        if isinstance(timed, PhaseTimedBackend):
            timed.measure_phases(False)
    if measured.queries == 0:
        raise InputError(f"{runner.label}: the run was stopped before a single query completed")
    latency = LatencyStats.from_seconds(measured.latencies_s)
    system_dict = system.to_dict()
    system_dict["max_temperatures_c"] = monitor.max_temperatures_c
    system_dict["throttling_seen"] = monitor.throttled
    system_dict["throttling_reasons"] = monitor.reasons
    settings = runner.settings()
    warnings, notes = diagnose(
        scenario=config.scenario,
        latency=latency,
        queries=measured.queries,
        wall_s=measured.wall_s,
        interrupted=measured.interrupted,
        throttling=monitor.reasons,
        governor=system.governor,
        gpu_phases_ms=phases,
        min_duration_s=LOADGEN_MIN_DURATION_S,
    )
    return BenchResult(
        model=runner.label,
        model_sha256=session.model.sha256,
        backend=session.backend,
        plan=session.plan.to_dict(),
        device=profile.to_dict(),
        system=system_dict,
        scenario=config.scenario,
        settings=settings,
        batch=runner.batch,
        inputs={
            "source": runner.source.description,
            "include_preprocess": runner.source.timed,
            "shapes": runner.source.shapes,
        },
        queries=measured.queries,
        samples=measured.samples,
        wall_s=measured.wall_s,
        interrupted=measured.interrupted,
        latency_ms=latency,
        latency_samples_ms=_thin(measured.latencies_s * 1e3, LATENCY_SAMPLES_KEPT),
        deadline_ms=deadline,
        server=measured.server,
        gpu_phases_ms=phases,
        warnings=warnings,
        notes=notes,
        versions={"edgerun": __version__, **profile.versions},
    )


class _ScenarioRunner:
    """Turns a config into the callables a `loadgen` runner times, for one session."""

    def __init__(self, session: Session, config: BenchConfig, deadline_ms: float) -> None:
        self.session = session
        self.config = config
        self.deadline_ms = deadline_ms
        self.label = session.card.name if session.card else str(session.model.path)
        self.fixed_batch = _fixed_batch(session)
        self.batch = self._rows_per_call()
        self.calls_per_query = 1
        if config.scenario == "multi-stream" and self.fixed_batch is not None:
            self.calls_per_query = math.ceil(config.samples_per_query / self.fixed_batch)
        self.source = self._source(self.batch)

    def _rows_per_call(self) -> int:
        scenario, wanted = self.config.scenario, self.config.batch
        if scenario == "server":
            if self.fixed_batch is not None:
                raise ConfigError(
                    f"{self.label}: the server scenario sends queries through the dynamic batcher, which needs a "
                    f"dynamic batch axis; this model fixes its batch at {self.fixed_batch}"
                )
            return 1  # each server query is one sample; the batcher forms batches
        if scenario == "multi-stream":
            if wanted is not None:
                raise ConfigError("multi-stream sets its batch with --samples-per-query, not --batch")
            return self.fixed_batch or self.config.samples_per_query
        default = 8 if scenario == "offline" else 1
        rows = wanted or self.fixed_batch or default
        if self.fixed_batch is not None and rows != self.fixed_batch:
            raise ConfigError(f"{self.label}: the model fixes its batch at {self.fixed_batch}; cannot run batch {rows}")
        return rows

    def _source(self, rows: int) -> InputSource:
        config, session = self.config, self.session
        if config.data is None:
            shapes = config.shapes
            if shapes is not None and self.fixed_batch is None:
                shapes = batched_shapes(shapes, rows)  # --shape gives the sample shape; the batch is ours
            if shapes is None and session.card is not None:
                shapes = batched_shapes(session.card.input_shapes, rows)
            return random_source(session.inputs, rows, shapes, config.seed)
        spec = config.preprocess
        if spec is None and session.card is not None and session.card.preprocessing:
            spec = PreprocessSpec.from_dict(session.card.preprocessing)
        return data_source(
            Path(config.data),
            session.inputs,
            rows,
            spec,
            include_preprocess=config.include_preprocess,
            seed=config.seed,
        )

    def settings(self) -> dict[str, Any]:
        config = self.config
        return {
            "samples_per_query": config.samples_per_query if config.scenario == "multi-stream" else self.batch,
            "target_qps": config.target_qps,
            "latency_bound_ms": self.bound_ms if config.scenario == "server" else None,
            "find_max_qps": config.find_max_qps,
            "min_duration_s": config.min_duration_s,
            "min_queries": config.min_queries,
            "warmup": min(config.warmup, 2) if config.scenario == "offline" else config.warmup,
            "seed": config.seed,
            "max_batch_size": self.max_batch_size if config.scenario == "server" else None,
            "max_queue_delay_ms": self.queue_delay_ms if config.scenario == "server" else None,
        }

    @property
    def bound_ms(self) -> float:
        return self.config.latency_bound_ms if self.config.latency_bound_ms is not None else self.deadline_ms

    @property
    def max_batch_size(self) -> int:
        return self.config.batch or 8

    @property
    def queue_delay_ms(self) -> float:
        if self.config.max_queue_delay_ms is not None:
            return self.config.max_queue_delay_ms
        return min(2.0, self.bound_ms / 10)

    def run(self, progress: Progress | None) -> ScenarioRun:
        scenario = self.config.scenario
        if scenario in ("single-stream", "multi-stream"):
            return self._closed_loop(progress)
        if scenario == "offline":
            return self._offline(progress)
        return self._server(progress)

    def _query(self) -> Callable[[int], object]:
        run, feeds, calls = self.session.run, self.source.feeds, self.calls_per_query
        if self.source.timed or calls > 1:

            def query(i: int) -> None:
                for j in range(calls):
                    run(feeds(i * calls + j))

            return query
        prepared = feeds(0) if self.config.data is None else None
        if prepared is not None:
            return lambda _: run(prepared)
        return lambda i: run(feeds(i))  # picking rows from memory: negligible next to a run

    def _closed_loop(self, progress: Progress | None) -> ScenarioRun:
        samples = self.config.samples_per_query if self.config.scenario == "multi-stream" else self.batch
        return closed_loop(
            self._query(),
            samples_per_query=samples,
            min_queries=self.config.min_queries,
            min_duration_s=self.config.min_duration_s,
            warmup=self.config.warmup,
            progress=progress,
        )

    def _offline(self, progress: Progress | None) -> ScenarioRun:
        query, rows = self._query(), self.batch

        def run_batch(i: int) -> int:
            query(i)
            return rows

        return run_offline(
            run_batch,
            total_samples=self.config.offline_samples,
            min_duration_s=self.config.min_duration_s,
            warmup=min(self.config.warmup, 2),
            progress=progress,
        )

    def _server(self, progress: Progress | None) -> ScenarioRun:
        from edgerun.runtime.batching import DynamicBatcher

        config, feeds = self.config, self.source.feeds
        bound_s = self.bound_ms / 1e3
        duration = config.min_duration_s if config.min_duration_s > 0 else (3.0 if config.find_max_qps else 10.0)
        for i in range(config.warmup):
            self.session.run(feeds(i))

        def trial(qps: float, seconds: float) -> ScenarioRun:
            with DynamicBatcher(
                self.session,
                max_batch_size=self.max_batch_size,
                max_queue_delay_ms=self.queue_delay_ms,
                default_timeout_ms=10 * self.bound_ms,
            ) as batcher:
                return run_server(
                    lambda i: batcher.submit(feeds(i)),
                    target_qps=qps,
                    duration_s=seconds,
                    latency_bound_s=bound_s,
                    seed=config.seed,
                    progress=progress,
                )

        if not config.find_max_qps:
            assert config.target_qps is not None
            return trial(config.target_qps, duration)
        low, high = self._qps_bracket()
        search = find_max_qps(lambda qps: trial(qps, duration), low_qps=low, high_qps=high)
        best = search.best or trial(low, duration)
        assert best.server is not None
        best.server = {**best.server, "max_qps": search.max_qps, "trials": search.trials}
        best.interrupted = best.interrupted or search.interrupted
        return best

    def _qps_bracket(self) -> tuple[float, float]:
        """Where the search for the highest rate starts: half the serial rate to twice the batched one."""
        one = self.source.feeds(0)
        many = {k: np.repeat(v, self.max_batch_size, axis=0) for k, v in one.items()}
        serial = _median_seconds(lambda: self.session.run(one))
        batched = _median_seconds(lambda: self.session.run(many)) / self.max_batch_size
        return 0.5 / serial, 2.0 / min(serial, batched)


def _median_seconds(call: Callable[[], object], repeats: int = 7) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return max(float(np.median(times)), 1e-6)


def _fixed_batch(session: Session) -> int | None:
    """The batch size every input fixes (None when axis 0 is symbolic)."""
    first = session.inputs[0].shape[0] if session.inputs and session.inputs[0].shape else None
    return first if isinstance(first, int) else None


def _gpu_phases(session: Session) -> dict[str, float] | None:
    """Median enqueue / compute / H2D / D2H times, from backends that measure them (TensorRT's)."""
    if session.closed or not session.capabilities.phase_timing:
        return None
    backend = session.opened_backend
    result = backend.phase_times_ms() if isinstance(backend, PhaseTimedBackend) else None
    return dict(result) if result else None


def _thin(values: np.ndarray, limit: int) -> list[float]:
    if len(values) > limit:
        values = values[np.linspace(0, len(values) - 1, limit).astype(int)]
    return [round(float(v), 6) for v in values]
