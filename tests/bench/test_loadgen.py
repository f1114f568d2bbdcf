"""loadgen: arrival schedules, the closed loop, the server scenario's accounting and the max-QPS search.

The system under test here is a plain function or a thread resolving futures, so every figure
can be worked out by hand: how many queries a seed schedules, which ones are late or dropped,
where the bisection must land.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerun.bench.loadgen import (
    ScenarioRun,
    check_scenario,
    closed_loop,
    find_max_qps,
    offline,
    poisson_arrivals,
    server,
)
from edgerun.errors import ConfigError


def done_future(value: Any = None, error: BaseException | None = None) -> Future[Any]:
    future: Future[Any] = Future()
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)
    return future


# --- arrivals -------------------------------------------------------------------------------------


def test_poisson_arrivals_have_the_target_rate_and_exponential_gaps() -> None:
    rate, duration = 200.0, 50.0
    times = poisson_arrivals(rate, duration, seed=3)
    expected = rate * duration  # 10 000 arrivals; a Poisson count's stdev is sqrt(10 000) = 100
    assert abs(len(times) - expected) < 4 * np.sqrt(expected)
    gaps = np.diff(np.concatenate([[0.0], times]))
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)  # exponential: cv = 1
    assert np.mean(gaps < 1 / rate) == pytest.approx(1 - np.exp(-1), abs=0.02)  # P(gap < mean) = 1 - 1/e


def test_poisson_arrivals_are_reproducible_per_seed() -> None:
    np.testing.assert_array_equal(poisson_arrivals(50, 4, seed=1), poisson_arrivals(50, 4, seed=1))
    assert not np.array_equal(poisson_arrivals(50, 4, seed=1), poisson_arrivals(50, 4, seed=2))


@settings(max_examples=50, deadline=None)
@given(rate=st.floats(0.5, 5000), duration=st.floats(0.01, 5), seed=st.integers(0, 2**31))
def test_poisson_arrivals_are_sorted_inside_the_run(rate: float, duration: float, seed: int) -> None:
    times = poisson_arrivals(rate, duration, seed)
    assert np.all(np.diff(times) >= 0)
    assert times.size == 0 or (times[0] >= 0 and times[-1] < duration)


@pytest.mark.parametrize(("rate", "duration"), [(0, 1), (-5, 1), (10, 0), (float("nan"), 1)])
def test_bad_rates_and_durations_are_config_errors(rate: float, duration: float) -> None:
    with pytest.raises(ConfigError):
        poisson_arrivals(rate, duration)


def test_unknown_scenario_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="single-stream, multi-stream, server, offline"):
        check_scenario("streaming")


# --- closed loop and offline ------------------------------------------------------------------------


def test_closed_loop_meets_both_minimums_and_counts_samples() -> None:
    seen: list[int] = []
    run = closed_loop(seen.append, samples_per_query=4, min_queries=30, min_duration_s=0.0, warmup=3)
    assert seen == [0, 1, 2, *range(30)]  # warm-up queries, then the timed ones
    assert (run.queries, run.samples, run.interrupted) == (30, 120, False)
    slow = closed_loop(lambda _: time.sleep(0.01), samples_per_query=1, min_queries=1, min_duration_s=0.1, warmup=0)
    assert slow.wall_s >= 0.1
    assert 5 <= slow.queries <= 11
    assert np.all(slow.latencies_s >= 0.01)


def test_ctrl_c_stops_a_closed_loop_with_the_queries_so_far() -> None:
    def query(i: int) -> None:
        if i == 50:
            raise KeyboardInterrupt

    run = closed_loop(query, samples_per_query=1, min_queries=1000, min_duration_s=0.0, warmup=0)
    assert (run.queries, run.interrupted) == (50, True)


def test_offline_runs_full_batches_until_the_samples_are_done() -> None:
    run = offline(lambda _: 8, total_samples=100, min_duration_s=0.0, warmup=0)
    assert (run.queries, run.samples) == (13, 104)  # ceil(100 / 8) batches of 8
    with pytest.raises(ConfigError):
        offline(lambda _: 8, total_samples=0, min_duration_s=0.0)


# --- server -----------------------------------------------------------------------------------------


def test_server_against_an_instant_system_achieves_the_scheduled_rate() -> None:
    scheduled = len(poisson_arrivals(200, 2.0, seed=5))
    run = server(lambda _: done_future(), target_qps=200, duration_s=2.0, latency_bound_s=0.05, seed=5)
    assert run.server is not None
    assert run.server["issued"] == run.server["scheduled"] == scheduled == run.queries
    assert run.server["achieved_qps"] == pytest.approx(scheduled / run.wall_s)
    assert run.server["achieved_qps"] == pytest.approx(scheduled / 2.0, rel=0.05)
    assert (run.server["dropped_fraction"], run.server["late_fraction"]) == (0.0, 0.0)
    assert run.server["bound_held"]
    assert float(np.max(run.latencies_s)) < 0.05


def test_server_above_capacity_misses_the_bound_and_counts_late_queries() -> None:
    """One worker taking 20 ms per query can serve 50 QPS; at 100 QPS the queue grows."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        run = server(
            lambda _: pool.submit(time.sleep, 0.02), target_qps=100, duration_s=1.0, latency_bound_s=0.05, seed=1
        )
    finally:
        pool.shutdown()
    assert run.server is not None
    assert not run.server["bound_held"]
    assert run.server["late_fraction"] > 0.3
    assert run.server["achieved_qps"] < 70  # well below the 100 asked: capacity is 50
    assert run.server["p99_ms"] > 50


def test_failed_queries_are_dropped_and_fail_the_bound() -> None:
    errors = [RuntimeError("queue full") if i % 4 == 0 else None for i in range(10_000)]
    run = server(lambda i: done_future(error=errors[i]), target_qps=400, duration_s=0.5, latency_bound_s=0.05, seed=2)
    assert run.server is not None
    expected = sum(1 for i in range(run.server["issued"]) if errors[i] is not None) / run.server["issued"]
    assert run.server["dropped_fraction"] == pytest.approx(expected)
    assert run.server["p99_ms"] == float("inf")  # dropped queries count as never answered
    assert not run.server["bound_held"]
    assert len(run.latencies_s) == run.server["issued"] - round(expected * run.server["issued"])


def test_queries_still_running_at_the_end_count_as_dropped() -> None:
    never: Future[Any] = Future()
    run = server(lambda _: never, target_qps=50, duration_s=0.2, latency_bound_s=0.05, drain_timeout_s=0.05)
    assert run.server is not None
    assert run.server["dropped_fraction"] == 1.0


def test_ctrl_c_stops_issuing_and_reports_what_was_issued() -> None:
    def submit(i: int) -> Future[Any]:
        if i == 20:
            raise KeyboardInterrupt
        return done_future()

    run = server(submit, target_qps=1000, duration_s=5.0, latency_bound_s=0.05, seed=0)
    assert run.interrupted
    assert run.server is not None
    assert run.server["issued"] == 20


# --- max QPS search -----------------------------------------------------------------------------------


def synthetic_trial(capacity: float, calls: list[float]) -> Any:
    def trial(qps: float) -> ScenarioRun:
        calls.append(qps)
        held = qps <= capacity
        summary = {"target_qps": qps, "achieved_qps": min(qps, capacity), "p99_ms": 5.0 if held else 500.0}
        summary |= {"dropped_fraction": 0.0, "bound_held": held}
        return ScenarioRun(np.full(10, 0.005), 1.0, 10, 10, False, summary)

    return trial


@settings(max_examples=40, deadline=None)
@given(capacity=st.floats(20, 390))
def test_max_qps_bisection_brackets_the_capacity(capacity: float) -> None:
    calls: list[float] = []
    search = find_max_qps(synthetic_trial(capacity, calls), low_qps=10, high_qps=400, steps=8, tolerance=0.0)
    assert search.max_qps <= capacity
    assert search.max_qps >= capacity - (400 - 10) / 2**8 - 1e-9  # the bracket after 8 halvings
    assert calls[0] == 10
    assert search.best is not None
    assert search.best.server is not None
    assert search.best.server["target_qps"] == search.max_qps
    assert [t["bound_held"] for t in search.trials] == [q <= capacity for q in calls]


def test_max_qps_steps_down_when_the_low_end_fails() -> None:
    calls: list[float] = []
    search = find_max_qps(synthetic_trial(30, calls), low_qps=100, high_qps=400, steps=6, tolerance=0.0)
    assert calls[:2] == [100, 25]  # 100 fails: the bracket becomes 25..100
    assert 30 - 75 / 2**6 <= search.max_qps <= 30


def test_max_qps_is_zero_when_even_the_lowest_rate_fails() -> None:
    calls: list[float] = []
    search = find_max_qps(synthetic_trial(0.01, calls), low_qps=10, high_qps=400, steps_down=2)
    assert (search.max_qps, search.best, calls) == (0.0, None, [10, 2.5, 0.625])


def test_max_qps_search_stops_when_a_trial_is_interrupted() -> None:
    count = 0

    def trial(qps: float) -> ScenarioRun:
        nonlocal count
        count += 1
        summary = {"target_qps": qps, "achieved_qps": qps, "p99_ms": 1.0, "dropped_fraction": 0.0, "bound_held": True}
        return ScenarioRun(np.ones(3), 1.0, 3, 3, count == 2, summary)

    search = find_max_qps(trial, low_qps=10, high_qps=400, steps=8)
    assert search.interrupted
    assert count == 2
    assert search.max_qps == 10  # the interrupted trial does not count as a pass


def test_max_qps_bracket_must_be_ordered() -> None:
    with pytest.raises(ConfigError):
        find_max_qps(synthetic_trial(10, []), low_qps=50, high_qps=10)


def test_server_latency_is_measured_from_the_scheduled_arrival() -> None:
    """A submit that blocks 30 ms on its first query delays the issue of the next ones: their
    latency includes that lag, so a slow issuer cannot hide behind its own schedule."""
    gate = threading.Event()

    def submit(i: int) -> Future[Any]:
        if i == 0:
            gate.wait(0.03)
        return done_future()

    run = server(submit, target_qps=1000, duration_s=0.02, latency_bound_s=1.0, seed=4)
    assert run.queries >= 5
    assert float(np.max(run.latencies_s)) >= 0.01  # queries scheduled during the block waited
