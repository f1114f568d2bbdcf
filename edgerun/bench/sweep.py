"""Bench sweeps: every combination of batch sizes, thread counts and precisions in one invocation.

Values are checked against the model before anything runs (a model that fixes its batch cannot
sweep batch sizes). `run_sweep` loads one session per (precision, threads) and runs its batch
sizes in turn, so a sweep costs one model load per session, not per point. The best
configuration is the fastest one that meets the real-time verdict: highest throughput for
throughput scenarios, lowest score latency for latency scenarios; when none meets it, the best
score overall, said so. Ctrl-C stops a sweep and keeps what was measured, marked ``interrupted``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgerun.bench.config import BenchConfig
from edgerun.bench.result import BenchResult
from edgerun.bench.runner import benchmark
from edgerun.bench.scenarios import fixed_batch
from edgerun.bench.schema import SCHEMA
from edgerun.errors import ConfigError
from edgerun.loading import load
from edgerun.runtime.device import DeviceProfile, current_device
from edgerun.runtime.plan import Precision

SweepProgress = Callable[["SweepPoint", int, "list[float]"], None]
"""Called now and then with (the point being measured, its queries done, its latencies so far in
seconds): what a live progress bar shows."""


@dataclass(frozen=True)
class SweepPoint:
    """One configuration of a sweep: the model at a precision, with a thread count and a batch size."""

    precision: Precision
    threads: int | None
    batch: int | None

    def label(self) -> str:
        threads = "default" if self.threads is None else str(self.threads)
        batch = "default" if self.batch is None else str(self.batch)
        return f"{self.precision}, {threads} thread(s), batch {batch}"


def parse_values(text: str | None, what: str, kind: Callable[[str], Any], minimum: int | None = None) -> list[Any]:
    """``"1,2,4"`` -> [1, 2, 4]; a clear error for an empty, malformed or out-of-range list."""
    if text is None:
        return [None]
    parts = [part.strip() for part in text.split(",")]
    if not all(parts):
        raise ConfigError(f"--{what}: empty value in '{text}'")
    try:
        values = [kind(part) for part in parts]
    except ValueError as exc:
        raise ConfigError(f"--{what}: cannot read '{text}' ({exc})") from exc
    if minimum is not None and any(v < minimum for v in values):
        raise ConfigError(f"--{what}: values must be >= {minimum}, got '{text}'")
    if len(set(values)) != len(values):
        raise ConfigError(f"--{what}: repeated value in '{text}'")
    return values


def sweep_points(
    batches: Sequence[int | None], threads: Sequence[int | None], precisions: Sequence[Precision]
) -> list[SweepPoint]:
    """Precision outermost (each needs its own model), then threads (a session each), then batch."""
    return [SweepPoint(p, t, b) for p, t, b in itertools.product(precisions, threads, batches)]


def check_batches(batches: Sequence[int | None], fixed_batch: int | None, model: str) -> None:
    """A model with a fixed batch axis can only run that batch."""
    wrong = [b for b in batches if b is not None and fixed_batch is not None and b != fixed_batch]
    if wrong:
        raise ConfigError(
            f"{model}: the model fixes its batch at {fixed_batch}; cannot sweep batch "
            f"{', '.join(map(str, wrong))} (export it with a dynamic batch axis)"
        )


def best_run(results: Sequence[BenchResult]) -> tuple[int | None, str]:
    """Index of the best configuration and why it is the best."""
    if not results:
        return None, "no runs"
    higher = bool(results[0].score["higher_is_better"])
    metric = results[0].score["metric"]

    def key(index: int) -> float:
        value = float(results[index].score["value"])
        return value if higher else -value

    passing = [i for i, r in enumerate(results) if r.meets_deadline]
    pool = passing or list(range(len(results)))
    best = max(pool, key=key)
    chosen = results[best]
    value = chosen.score["value"]
    if passing:
        return best, f"best {metric} ({value:.3f}) among the {len(passing)} configuration(s) that meet the deadline"
    return best, f"no configuration meets the deadline; best {metric} overall ({value:.3f})"


def sweep_document(
    results: Sequence[BenchResult], points: Sequence[SweepPoint], interrupted: bool = False
) -> dict[str, Any]:
    """The sweep's JSON: every run, the best one and why, and whether Ctrl-C cut the sweep short
    (then ``runs`` holds only the points that ran)."""
    best, reason = best_run(results)
    runs = []
    for result, point in zip(results, points, strict=True):
        run = result.to_dict()
        run["sweep_point"] = {"precision": point.precision, "threads": point.threads, "batch": point.batch}
        runs.append(run)
    return {
        "schema": SCHEMA,
        "kind": "sweep",
        "runs": runs,
        "best": best,
        "best_reason": reason,
        "interrupted": interrupted,
    }


@dataclass(frozen=True)
class Sweep:
    """What `run_sweep` measured: one result per point that ran, in the order asked."""

    results: list[BenchResult]
    points: list[SweepPoint]
    """The points that ran: all of them, or the first ones when the sweep was interrupted."""
    planned: int
    """How many points were asked for (one: a single run, reported as a run, not a sweep)."""
    interrupted: bool
    """Ctrl-C stopped it: during a run (that run is marked ``interrupted`` too) or between runs."""

    def document(self) -> dict[str, Any]:
        """The report file's content: a run's own document for one point, the sweep document otherwise."""
        if self.planned == 1:
            return self.results[0].to_dict()
        return sweep_document(self.results, self.points, self.interrupted)

    @property
    def best(self) -> tuple[int | None, str]:
        """Index (in `results`) of the best configuration, and why it is the best."""
        return best_run(self.results)

    @property
    def meets_deadline(self) -> bool:
        """The verdict: at least one configuration meets the real-time deadline."""
        return any(result.meets_deadline for result in self.results)


def run_sweep(
    model: str | os.PathLike[str],
    base: BenchConfig,
    points: Sequence[SweepPoint],
    *,
    profile: DeviceProfile | None = None,
    device: str = "auto",
    backend: str = "auto",
    progress: SweepProgress | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> Sweep:
    """Benchmark ``model`` at every point: ``base`` with each point's batch, on a session per
    (precision, threads). ``inputs`` says what inputs mean where the model does not (``load(inputs=...)``).

    The requested batch sizes are checked against the model on the first session, before
    anything is timed. Ctrl-C stops the sweep and returns what was measured, ``interrupted``;
    before the first result there is nothing to report, and the interrupt propagates.
    """
    profile = profile or current_device()
    results: list[BenchResult] = []
    try:
        interrupted = _run_sessions(model, base, points, profile, device, backend, progress, results, inputs)
    except KeyboardInterrupt:  # between runs (loading the next session, say): keep the finished ones
        if not results:
            raise
        interrupted = True
    return Sweep(results, list(points[: len(results)]), len(points), interrupted)


def _run_sessions(
    model: str | os.PathLike[str],
    base: BenchConfig,
    points: Sequence[SweepPoint],
    profile: DeviceProfile,
    device: str,
    backend: str,
    progress: SweepProgress | None,
    results: list[BenchResult],
    inputs: Mapping[str, Any] | None = None,
) -> bool:
    """Run the points into ``results``, one session per (precision, threads); True when a run was interrupted."""
    batches = list(dict.fromkeys(point.batch for point in points))
    for index, ((precision, threads), group) in enumerate(_by_session(points)):
        options: dict[str, Any] = {} if threads is None else {"threads": threads}
        if inputs:
            options["inputs"] = dict(inputs)
        with load(model, device=device, backend=backend, precision=precision, **options) as session:
            if index == 0:
                check_batches(batches, fixed_batch(session), str(model))
            for point in group:
                config = dataclasses.replace(base, batch=point.batch)
                update = None if progress is None else functools.partial(progress, point)
                result = benchmark(session, profile, config, progress=update)
                results.append(result)
                if result.interrupted:
                    return True
    return False


def _by_session(points: Sequence[SweepPoint]) -> list[tuple[tuple[Precision, int | None], list[SweepPoint]]]:
    """Sweep points grouped by (precision, threads), in order: one loaded session per group."""
    groups: dict[tuple[Precision, int | None], list[SweepPoint]] = {}
    for point in points:
        groups.setdefault((point.precision, point.threads), []).append(point)
    return list(groups.items())
