"""Bench sweeps: every combination of batch sizes, thread counts and precisions in one invocation.

Values are checked against the model before anything runs (a model that fixes its batch cannot
sweep batch sizes). The best configuration is the fastest one that meets the real-time verdict:
highest throughput for throughput scenarios, lowest score latency for latency scenarios; when
none meets it, the best score overall, said so.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edgerun.bench.runner import BenchResult
from edgerun.bench.schema import SCHEMA
from edgerun.errors import ConfigError


@dataclass(frozen=True)
class SweepPoint:
    precision: str
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
    batches: Sequence[int | None], threads: Sequence[int | None], precisions: Sequence[str]
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


def sweep_document(results: Sequence[BenchResult], points: Sequence[SweepPoint]) -> dict[str, Any]:
    """The sweep's JSON: every run, the best one and why."""
    best, reason = best_run(results)
    runs = []
    for result, point in zip(results, points, strict=True):
        run = result.to_dict()
        run["sweep_point"] = {"precision": point.precision, "threads": point.threads, "batch": point.batch}
        runs.append(run)
    return {"schema": SCHEMA, "kind": "sweep", "runs": runs, "best": best, "best_reason": reason}
