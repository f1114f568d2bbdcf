"""Batching against direct calls, measured: does a batcher at the policy's max batch beat concurrent single calls?

The per-row costs say what a batch saves on the device, not what the batcher's Python costs per
request. On a CPU with a tiny model that cost can outweigh the saving: digits-student's per-row
cost falls from 0.047 ms at batch 1 to 0.012 ms at 16, yet with 16 callers a batcher reached about
0.6x the rate of the same callers running their requests directly (the GIL, not the cores, sets
the rate). So the policy runs both for a moment, closed-loop callers on random inputs, rounds
interleaved, and batches only when batching wins by `MIN_GAIN`.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgerun.runtime.session import Session

CALLERS = 16
"""Closed-loop callers in each trial (the concurrency the batcher is judged at)."""
SECONDS = 0.2
ROUNDS = 2
"""Measured seconds per mode per round, and rounds (the modes alternate their order each round)."""
MIN_GAIN = 0.10
"""Batching must reach this much more than direct calls to be chosen: otherwise direct calls, which add no wait."""


@dataclass(frozen=True)
class Tryout:
    """Requests per second with ``callers`` closed-loop callers: through a batcher, and as direct calls."""

    batched_per_s: float
    direct_per_s: float
    callers: int = CALLERS

    @property
    def batching_pays(self) -> bool:
        return self.batched_per_s >= self.direct_per_s * (1 + MIN_GAIN)

    def as_dict(self) -> dict[str, float]:
        return {"batched_per_s": self.batched_per_s, "direct_per_s": self.direct_per_s, "callers": self.callers}


def tryout_modes(session: Session, max_batch_size: int, instances: int, delay_ms: float) -> Tryout:
    """Both modes on ``session``, ``CALLERS`` callers each sending one-row random requests, medians of ``ROUNDS``."""
    from edgerun.runtime.batching.batcher import DynamicBatcher
    from edgerun.runtime.synthetic import on_batch_axes, random_feeds

    card_shapes = session.card.input_shapes if session.card else None
    shapes = on_batch_axes(card_shapes, 1, session.roles.batch_axes) if card_shapes else None
    feeds = [random_feeds(session.inputs, 1, shapes, seed=i, roles=session.roles) for i in range(CALLERS)]
    rates: dict[str, list[float]] = {"batched": [], "direct": []}
    with (
        DynamicBatcher(
            session, max_batch_size=max_batch_size, instances=instances, max_queue_delay_ms=delay_ms
        ) as batched,
        DynamicBatcher(session, max_batch_size=1, direct_calls=True) as direct,
    ):
        modes = [("direct", direct.infer), ("batched", batched.infer)]
        for round_ in range(ROUNDS):
            for name, call in modes if round_ % 2 == 0 else modes[::-1]:
                rates[name].append(closed_loop_rate(call, feeds, SECONDS))
    return Tryout(statistics.median(rates["batched"]), statistics.median(rates["direct"]))


def closed_loop_rate(
    call: Callable[[Mapping[str, np.ndarray]], Any], feeds: list[dict[str, np.ndarray]], seconds: float
) -> float:
    """Requests per second of ``len(feeds)`` threads calling ``call`` back to back for ``seconds``."""
    done = [0] * len(feeds)
    last = [0.0] * len(feeds)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(feeds) + 1)
    window: dict[str, float] = {}

    def caller(i: int) -> None:
        barrier.wait()
        stop, clock, feed = window["stop"], time.perf_counter, feeds[i]
        try:
            while clock() < stop:
                call(feed)
                done[i] += 1
                last[i] = clock()
        except BaseException as exc:  # re-raised below, never lost on a thread
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(len(feeds))]
    for thread in threads:
        thread.start()
    window["start"] = time.perf_counter()
    window["stop"] = window["start"] + seconds
    barrier.wait()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    wall = max(last) - window["start"]
    return sum(done) / wall if wall > 0 else 0.0
