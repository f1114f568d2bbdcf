"""Latency statistics as benchmark reports state them: nearest-rank percentiles, in ms.

Nearest rank (the smallest sample with at least p% of samples at or below it) is what
MLPerf LoadGen and trtexec report; it is always an observed latency, never an interpolation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def nearest_rank(values: Sequence[float] | np.ndarray, percentile: float) -> float:
    """The nearest-rank ``percentile`` (0 < p <= 100) of ``values``."""
    return nearest_ranks(values, (percentile,))[0]


def nearest_ranks(values: Sequence[float] | np.ndarray, percentiles: Sequence[float]) -> tuple[float, ...]:
    """The nearest-rank value of ``values`` for each of ``percentiles``, sorting them once."""
    for percentile in percentiles:
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    data = np.sort(np.asarray(values, dtype=np.float64))
    if data.size == 0:
        raise ValueError("no values")
    return tuple(_ranked(data, percentile) for percentile in percentiles)


def _ranked(ordered: np.ndarray, percentile: float) -> float:
    """`nearest_rank` of already sorted values (sort once for several percentiles)."""
    rank = max(1, math.ceil(percentile / 100 * ordered.size - 1e-9))
    return float(ordered[rank - 1])


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-call latencies in milliseconds."""

    count: int
    min: float
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float
    stdev: float

    @property
    def cv(self) -> float:
        """Coefficient of variation (stdev / mean): above ~0.1 a run is noisy."""
        return self.stdev / self.mean if self.mean else 0.0

    @classmethod
    def from_seconds(cls, seconds: Sequence[float] | np.ndarray) -> LatencyStats:
        ms = np.sort(np.asarray(seconds, dtype=np.float64) * 1e3)
        if ms.size == 0:
            raise ValueError("no latencies to summarise")
        return cls(
            count=int(ms.size),
            min=float(ms[0]),
            mean=float(ms.mean()),
            p50=_ranked(ms, 50),
            p90=_ranked(ms, 90),
            p95=_ranked(ms, 95),
            p99=_ranked(ms, 99),
            max=float(ms[-1]),
            stdev=float(ms.std()),
        )

    def to_dict(self) -> dict[str, float]:
        data = asdict(self)
        del data["count"]
        return data
