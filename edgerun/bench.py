"""Measure a session's latency and throughput, and judge it against a real-time deadline.

One query at a time (the single-stream case of a camera app): warm up, then time each
``session.run`` with a monotonic clock until both the iteration count and the minimum
duration are reached. Inputs are generated once from the model's specs with a fixed seed,
so runs compare across devices.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from . import __version__
from .device import DeviceProfile
from .session import Session
from .specs import TensorSpec
from .stats import LatencyStats

_PROGRESS_EVERY_S = 0.05


def random_feeds(
    specs: Sequence[TensorSpec],
    batch: int | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Seeded random inputs shaped by the specs (symbols from ``shapes``, axis 0 = ``batch``)."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = spec.concrete_shape(batch, shapes)
        if spec.dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.dtype.kind == "b":
            feeds[spec.name] = rng.integers(0, 2, shape).astype(bool)
        elif spec.dtype.kind in "iu":
            feeds[spec.name] = rng.integers(0, 10, shape).astype(spec.dtype)
        else:
            feeds[spec.name] = np.zeros(shape, dtype=spec.dtype)
    return feeds


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
    for _ in range(max(0, warmup)):
        run(feeds)
    clock = time.perf_counter
    latencies: list[float] = []
    start = last_report = clock()
    while True:
        t0 = clock()
        run(feeds)
        t1 = clock()
        latencies.append(t1 - t0)
        if progress is not None and t1 - last_report >= _PROGRESS_EVERY_S:
            progress(len(latencies))
            last_report = t1
        if len(latencies) >= iterations and t1 - start >= duration_s:
            break
    wall = clock() - start
    if progress is not None:
        progress(len(latencies))
    return Timing(np.asarray(latencies), wall)


@dataclass(frozen=True)
class BenchResult:
    """One benchmark run: what ran where, how fast, and whether it meets the deadline."""

    model: str
    model_sha256: str
    backend: str
    plan: dict[str, Any]
    device: dict[str, Any]
    batch: int
    warmup: int
    iterations: int
    wall_s: float
    latency_ms: LatencyStats
    deadline_ms: float
    versions: dict[str, str | None]
    input_shapes: dict[str, list[int]]
    timestamp: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def throughput_per_s(self) -> float:
        """Samples per second over the measured loop (batch x calls / wall time)."""
        return self.batch * self.iterations / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def meets_deadline(self) -> bool:
        """Real-time verdict: every call but the slowest 1% (p99) within the deadline."""
        return self.latency_ms.p99 <= self.deadline_ms

    @property
    def warnings(self) -> list[str]:
        notes = []
        if self.latency_ms.cv > 0.25:
            notes.append(
                f"unstable: latency varies a lot (stdev {self.latency_ms.cv:.0%} of the mean); "
                "close other programs, fix CPU clocks or the power mode, and use more iterations"
            )
        if self.iterations < 100:
            notes.append(f"only {self.iterations} iterations: p99 rests on very few samples")
        return notes

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_sha256": self.model_sha256,
            "backend": self.backend,
            "precision": self.plan["precision"],
            "threads": self.plan["threads"],
            "device": self.device,
            "plan": self.plan,
            "fallbacks": self.plan["fallbacks"],
            "batch": self.batch,
            "input_shapes": self.input_shapes,
            "warmup": self.warmup,
            "iterations": self.iterations,
            "wall_s": self.wall_s,
            "latency_ms": self.latency_ms.to_dict(),
            "throughput_per_s": self.throughput_per_s,
            "deadline_ms": self.deadline_ms,
            "meets_deadline": self.meets_deadline,
            "warnings": self.warnings,
            "versions": self.versions,
            "timestamp": self.timestamp,
        }


def benchmark(
    session: Session,
    profile: DeviceProfile,
    *,
    batch: int | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    warmup: int = 10,
    iterations: int = 200,
    duration_s: float = 0.0,
    deadline_ms: float | None = None,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> BenchResult:
    """Benchmark ``session`` on seeded random inputs; the deadline defaults to the device's."""
    from .defaults import DeviceDefaults

    if batch is not None and batch < 1:
        raise ValueError("batch must be >= 1")
    if shapes is None and session.card is not None:
        shapes = batched_shapes(session.card.input_shapes, batch or 1)
    feeds = random_feeds(session.inputs, batch, shapes, seed)
    first = next(iter(feeds.values()))
    timing = time_calls(session, feeds, warmup=warmup, iterations=iterations, duration_s=duration_s, progress=progress)
    return BenchResult(
        model=session.card.name if session.card else str(session.model.path),
        model_sha256=session.model.sha256,
        backend=session.backend,
        plan=session.plan.to_dict(),
        device=profile.to_dict(),
        batch=int(first.shape[0]) if first.ndim else 1,
        warmup=warmup,
        iterations=len(timing.latencies_s),
        wall_s=timing.wall_s,
        latency_ms=LatencyStats.from_seconds(timing.latencies_s),
        deadline_ms=deadline_ms if deadline_ms is not None else DeviceDefaults.for_profile(profile).deadline_ms,
        versions={"edgerun": __version__, **profile.versions},
        input_shapes={name: list(a.shape) for name, a in feeds.items()},
    )
