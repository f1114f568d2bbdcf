"""Load generation for `edgerun bench`: MLPerf LoadGen's four scenarios, in process.

* single-stream: one query at a time, the next sent when the previous completes (scored on p90);
* multi-stream: the same closed loop, each query carrying N samples (scored on p99 per query);
* server: Poisson arrivals at a target rate into the dynamic batcher, latency measured from each
  query's *scheduled* arrival, so a run that falls behind shows it (scored on whether p99 held
  the latency bound at that rate; `find_max_qps` bisects for the highest rate that holds it);
* offline: every sample available at once, run in full batches (scored on samples per second).

The runners only time callables they are given; inputs, sessions and reports live elsewhere.
Ctrl-C stops a run and returns what was measured so far, marked ``interrupted``.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from edgerun.errors import ConfigError
from edgerun.stats import nearest_rank

Scenario = Literal["single-stream", "multi-stream", "server", "offline"]
"""The four MLPerf LoadGen scenarios `edgerun bench` runs (see the module doc)."""
SCENARIOS: tuple[Scenario, ...] = get_args(Scenario)
LOADGEN_MIN_DURATION_S = 600.0
"""MLPerf Inference's minimum run for a valid result: far too long for a quick device check."""

Progress = Callable[[int, "list[float]"], None]
"""Called now and then with (queries done, latencies so far in seconds): the live p50/p99."""
_PROGRESS_EVERY_S = 0.1


@dataclass
class ScenarioRun:
    """What a scenario measured: one latency per query (seconds) and the wall time of the run."""

    latencies_s: np.ndarray
    wall_s: float
    queries: int
    samples: int
    interrupted: bool = False
    server: dict[str, Any] | None = None


def check_scenario(name: str) -> Scenario:
    """``name`` checked as a scenario (for strings from a command line or a file)."""
    for scenario in SCENARIOS:
        if name == scenario:
            return scenario
    raise ConfigError(f"unknown scenario '{name}'; choose one of {', '.join(SCENARIOS)}")


def closed_loop(
    query: Callable[[int], object],
    *,
    samples_per_query: int,
    min_queries: int,
    min_duration_s: float,
    warmup: int = 10,
    progress: Progress | None = None,
) -> ScenarioRun:
    """Single- and multi-stream: time ``query(i)`` back to back until both minimums are met."""
    if min_queries < 1:
        raise ConfigError(f"min_queries must be >= 1, got {min_queries}")

    def run(i: int) -> int:
        query(i)
        return samples_per_query

    return _timed_loop(
        run, lambda queries, _, elapsed: queries >= min_queries and elapsed >= min_duration_s, warmup, progress
    )


def offline(
    run_batch: Callable[[int], int],
    *,
    total_samples: int,
    min_duration_s: float,
    warmup: int = 2,
    progress: Progress | None = None,
) -> ScenarioRun:
    """Offline: ``run_batch(i)`` runs the i-th full batch and returns its sample count; repeat
    over ``total_samples`` (and for at least ``min_duration_s``). Latencies are per batch."""
    if total_samples < 1:
        raise ConfigError(f"offline needs at least 1 sample, got {total_samples}")
    return _timed_loop(
        run_batch, lambda _, samples, elapsed: samples >= total_samples and elapsed >= min_duration_s, warmup, progress
    )


def _timed_loop(
    run: Callable[[int], int],
    done: Callable[[int, int, float], bool],
    warmup: int,
    progress: Progress | None,
) -> ScenarioRun:
    """Time ``run(i)`` (which returns its sample count) back to back until ``done(queries, samples,
    seconds)``; Ctrl-C ends the loop with what was measured."""
    for i in range(max(0, warmup)):
        run(i)
    clock = time.perf_counter
    latencies: list[float] = []
    samples = 0
    interrupted = False
    start = last_report = clock()
    try:
        while True:
            t0 = clock()
            samples += run(len(latencies))
            t1 = clock()
            latencies.append(t1 - t0)
            if progress is not None and t1 - last_report >= _PROGRESS_EVERY_S:
                progress(len(latencies), latencies)
                last_report = t1
            if done(len(latencies), samples, t1 - start):
                break
    except KeyboardInterrupt:
        interrupted = True
    wall = clock() - start
    if progress is not None:
        progress(len(latencies), latencies)
    return ScenarioRun(np.asarray(latencies), wall, len(latencies), samples, interrupted)


def poisson_arrivals(rate_per_s: float, duration_s: float, seed: int = 0) -> np.ndarray:
    """Arrival times (seconds from 0) of a Poisson process at ``rate_per_s`` over ``duration_s``.

    Exponential gaps with mean 1/rate, as LoadGen's server scenario schedules queries; seeded, so
    two devices face the same schedule.
    """
    if not rate_per_s > 0:
        raise ConfigError(f"target QPS must be > 0, got {rate_per_s}")
    if not duration_s > 0:
        raise ConfigError(f"duration must be > 0 s, got {duration_s}")
    rng = np.random.default_rng(seed)
    expected = rate_per_s * duration_s
    gaps = rng.exponential(1.0 / rate_per_s, size=int(expected + 6 * np.sqrt(expected) + 16))
    times = np.cumsum(gaps)
    while times[-1] < duration_s:  # practically never: the margin is six standard deviations
        times = np.concatenate([times, times[-1] + np.cumsum(rng.exponential(1.0 / rate_per_s, size=len(gaps)))])
    return times[times < duration_s]


@dataclass
class _Completion:
    done_at: np.ndarray
    failed: np.ndarray
    remaining: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    all_done: threading.Event = field(default_factory=threading.Event)


def server(
    submit: Callable[[int], Future[Any]],
    *,
    target_qps: float,
    duration_s: float,
    latency_bound_s: float,
    seed: int = 0,
    drain_timeout_s: float = 30.0,
    progress: Progress | None = None,
) -> ScenarioRun:
    """Issue queries at Poisson arrival times; latency runs from each query's scheduled arrival.

    ``submit(i)`` hands query i to the system under test (the dynamic batcher) and returns its
    future. A query whose future fails (queue full, timed out) counts as dropped; one that ends
    after the bound counts as late. The bound holds when p99 over all issued queries (dropped ones
    as infinitely late) is within it. An issuer that falls behind its schedule needs no rule of its
    own: its lag is part of every latency.
    """
    if not latency_bound_s > 0:
        raise ConfigError(f"latency bound must be > 0 ms, got {latency_bound_s * 1e3}")
    schedule = poisson_arrivals(target_qps, duration_s, seed)
    count = len(schedule)
    state = _Completion(np.full(count, np.nan), np.zeros(count, dtype=bool), count)
    clock = time.perf_counter

    def finished(index: int, future: Future[Any]) -> None:
        now = clock()
        with state.lock:
            state.done_at[index] = now
            state.failed[index] = future.cancelled() or future.exception() is not None
            state.remaining -= 1
            if state.remaining == 0:
                state.all_done.set()

    issued = 0
    interrupted = False
    start = last_report = clock()
    try:
        for index, at in enumerate(schedule):
            delay = start + at - clock()
            if delay > 0:
                time.sleep(delay)
            future = submit(index)
            future.add_done_callback(functools.partial(finished, index))
            issued += 1
            now = clock()
            if progress is not None and now - last_report >= _PROGRESS_EVERY_S:
                progress(issued, _latencies_so_far(state, schedule, start))
                last_report = now
        issue_end = clock()
        with state.lock:
            if state.remaining == 0:
                state.all_done.set()
        state.all_done.wait(drain_timeout_s)
    except KeyboardInterrupt:
        interrupted = True
        issue_end = clock()
    wall = clock() - start
    with state.lock:
        done_at = state.done_at[:issued].copy()
        failed = state.failed[:issued].copy()
    latencies = done_at - (start + schedule[:issued])
    unfinished = np.isnan(latencies)
    dropped = failed | unfinished
    ok = latencies[~dropped]
    scored = np.where(dropped, np.inf, latencies)
    p99 = nearest_rank(scored, 99) if issued else float("inf")
    summary = {
        "target_qps": target_qps,
        "scheduled": count,
        "issued": issued,
        "issued_qps": issued / max(issue_end - start, duration_s if not interrupted else 1e-9),
        "achieved_qps": ok.size / max(wall, 1e-9),
        "late_fraction": float((ok > latency_bound_s).sum() / issued) if issued else 0.0,
        "dropped_fraction": float(dropped.sum() / issued) if issued else 0.0,
        "p99_ms": p99 * 1e3,
        "latency_bound_ms": latency_bound_s * 1e3,
        "bound_held": bool(issued and p99 <= latency_bound_s),
    }
    if progress is not None:
        progress(issued, list(ok))
    return ScenarioRun(ok, wall, issued, issued, interrupted, summary)


def _latencies_so_far(state: _Completion, schedule: np.ndarray, start: float) -> list[float]:
    with state.lock:
        done = ~np.isnan(state.done_at) & ~state.failed
        return list(state.done_at[done] - (start + schedule[done]))


@dataclass(frozen=True)
class MaxQpsSearch:
    """The bisection's answer: the highest rate whose run held the bound, and every trial."""

    max_qps: float
    best: ScenarioRun | None
    trials: list[dict[str, Any]]
    interrupted: bool = False


def find_max_qps(
    trial: Callable[[float], ScenarioRun],
    *,
    low_qps: float,
    high_qps: float,
    steps: int = 6,
    tolerance: float = 0.05,
    steps_down: int = 4,
) -> MaxQpsSearch:
    """Bisect for the highest target QPS at which ``trial(qps)`` holds the latency bound.

    ``low_qps`` is tried first; while it fails, the bracket moves down by ``4x`` (at most
    ``steps_down`` times, then the answer is 0). Then the midpoint of the bracket is tried, up to
    ``steps`` times or until the bracket is within ``tolerance`` of its top.
    """
    if not 0 < low_qps < high_qps:
        raise ConfigError(f"need 0 < low QPS < high QPS, got {low_qps} and {high_qps}")
    trials: list[dict[str, Any]] = []
    best: ScenarioRun | None = None
    interrupted = False

    def attempt(qps: float) -> bool:
        nonlocal best, interrupted
        run = trial(qps)
        if run.server is None:
            raise ConfigError("find_max_qps needs server-scenario trials")
        interrupted = run.interrupted
        held = bool(run.server["bound_held"]) and not run.interrupted
        trials.append({k: run.server[k] for k in ("target_qps", "achieved_qps", "p99_ms", "dropped_fraction")})
        trials[-1]["bound_held"] = held
        if held:
            best = run  # rates only rise after a pass, so the last pass is the highest
        return held

    low, high = low_qps, high_qps
    for step in range(steps_down + 1):
        if attempt(low):
            break
        if interrupted or step == steps_down:
            return MaxQpsSearch(0.0, None, trials, interrupted)
        low, high = low / 4, low
    for _ in range(steps):
        if interrupted or (high - low) / high <= tolerance:
            break
        middle = (low + high) / 2
        if attempt(middle):
            low = middle
        else:
            high = middle
    return MaxQpsSearch(low, best, trials, interrupted)
