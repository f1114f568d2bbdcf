"""The batcher's counters and recent timings, and the summary `DynamicBatcher.stats` returns."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgerun.stats import nearest_ranks

SAMPLES_KEPT = 20_000
"""Queue-wait and execution times kept for stats() percentiles (the most recent ones)."""


@dataclass
class Stats:
    """Counters and the most recent queue-wait / execution times (seconds), updated under the batcher's lock."""

    requests: int = 0
    batches: int = 0
    rejected: int = 0
    timed_out: int = 0
    failed: int = 0
    cancelled: int = 0
    inline: int = 0
    batch_sizes: Counter[int] = field(default_factory=Counter)
    queue_wait_s: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES_KEPT))
    execute_s: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES_KEPT))

    def summary(self, queued: int) -> dict[str, Any]:
        """Counters, batch-size histogram and queue-wait / execution percentiles (ms); ``queued``: waiting now."""
        waits = list(self.queue_wait_s)
        runs = list(self.execute_s)
        sizes = self.batch_sizes
        return {
            "requests": self.requests,
            "batches": self.batches,
            "rejected": self.rejected,
            "timed_out": self.timed_out,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "inline": self.inline,
            "queued": queued,
            "batch_size_histogram": dict(sorted(sizes.items())),
            "mean_batch_size": mean_batch_size(sizes, self.batches),
            "queue_wait_ms": percentiles(waits),
            "execute_ms": percentiles(runs),
        }


def mean_batch_size(histogram: Mapping[int, int], batches: int) -> float:
    """Rows per batch from a batch-size histogram (0 before the first batch)."""
    return sum(size * count for size, count in histogram.items()) / batches if batches else 0.0


def percentiles(seconds: list[float]) -> dict[str, float]:
    """Nearest-rank p50 and p99 of ``seconds``, in milliseconds (zeros when there are none)."""
    if not seconds:
        return {"p50": 0.0, "p99": 0.0}
    p50, p99 = nearest_ranks([s * 1e3 for s in seconds], (50, 99))
    return {"p50": p50, "p99": p99}


def add_direct(summary: dict[str, Any], started: int, failed: int, running: int) -> None:
    """Count direct calls (`DirectCalls`) into ``summary``: each a request and, once it ran, a batch of 1.

    They keep no timings (their hot path takes no lock), so the percentiles stay those of queued work.
    """
    ran = started - failed - running
    summary["requests"] += started
    summary["inline"] += started
    summary["failed"] += failed
    summary["batches"] += ran
    histogram = summary["batch_size_histogram"]
    histogram[1] = histogram.get(1, 0) + ran
    summary["mean_batch_size"] = mean_batch_size(histogram, summary["batches"])
    summary["direct_calls"] = True
