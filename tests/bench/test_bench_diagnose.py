"""bench_diagnose: each trtexec-style warning fires on its rule and stays quiet below it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerun.bench.diagnose import ENQUEUE_BOUND_RATIO, UNSTABLE_CV, diagnose
from edgerun.stats import LatencyStats


def stats(values_ms: list[float]) -> LatencyStats:
    return LatencyStats.from_seconds(np.asarray(values_ms) / 1e3)


def run(**changes: Any) -> tuple[list[str], list[str]]:
    base: dict[str, Any] = {
        "scenario": "single-stream",
        "latency": stats([10.0] * 1000),
        "queries": 1000,
        "wall_s": 700.0,
        "interrupted": False,
        "throttling": [],
        "governor": "performance",
        "gpu_phases_ms": None,
        "min_duration_s": 600.0,
    }
    return diagnose(**{**base, **changes})


def test_a_clean_long_run_has_no_warnings_or_notes() -> None:
    assert run() == ([], [])


@settings(max_examples=60, deadline=None)
@given(spread=st.floats(0.0, 0.9))
def test_unstable_is_exactly_a_cv_above_the_threshold(spread: float) -> None:
    values = [10.0 * (1 - spread)] * 500 + [10.0 * (1 + spread)] * 500  # cv == spread
    latency = stats(values)
    warnings, _ = run(latency=latency)
    assert any("unstable" in w for w in warnings) == (latency.cv > UNSTABLE_CV)


def test_server_latency_spread_is_queueing_not_instability() -> None:
    warnings, _ = run(scenario="server", latency=stats([1.0] * 500 + [50.0] * 500))
    assert not any("unstable" in w for w in warnings)


@pytest.mark.parametrize(
    ("scenario", "queries", "warned"),
    [
        ("single-stream", 99, True),
        ("single-stream", 100, False),
        ("multi-stream", 999, True),
        ("multi-stream", 1000, False),
    ],
)
def test_too_few_queries_behind_the_scored_percentile(scenario: str, queries: int, warned: bool) -> None:
    warnings, _ = run(scenario=scenario, queries=queries)
    assert any("too few queries" in w for w in warnings) == warned


def test_enqueue_bound_follows_trtexecs_ratio() -> None:
    below, _ = run(gpu_phases_ms={"enqueue": ENQUEUE_BOUND_RATIO * 1.0 - 0.01, "compute": 1.0, "h2d": 0.1, "d2h": 0.1})
    above, _ = run(gpu_phases_ms={"enqueue": ENQUEUE_BOUND_RATIO * 1.0 + 0.01, "compute": 1.0, "h2d": 0.1, "d2h": 0.1})
    assert not any("enqueue-bound" in w for w in below)
    assert any("enqueue-bound" in w and "CUDA graphs" in w for w in above)


def test_transfer_bound_when_copies_outweigh_compute() -> None:
    copies, _ = run(gpu_phases_ms={"enqueue": 0.1, "compute": 1.0, "h2d": 0.7, "d2h": 0.4})
    compute, _ = run(gpu_phases_ms={"enqueue": 0.1, "compute": 1.0, "h2d": 0.5, "d2h": 0.4})
    assert any("transfer-bound" in w for w in copies)
    assert not any("transfer-bound" in w for w in compute)


def test_throttling_interruption_short_runs_and_governors_are_reported() -> None:
    warnings, notes = run(
        throttling=["cpu-thermal reached 85.0 C (passive trip 85.0 C)"],
        interrupted=True,
        wall_s=12.0,
        governor="ondemand",
    )
    assert any("thermal throttling" in w and "cpu-thermal" in w for w in warnings)
    assert any("interrupted" in w for w in warnings)
    assert any("12.0 s" in n and "600 s" in n for n in notes)
    assert any("'ondemand'" in n for n in notes)
