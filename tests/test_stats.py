"""Nearest-rank percentiles and latency summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgerun.stats import LatencyStats, nearest_rank, nearest_ranks

finite = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


def by_definition(values: list[float], p: float) -> float:
    """The smallest value such that at least p% of the values are <= it."""
    ordered = sorted(values)
    for v in ordered:
        if sum(x <= v for x in ordered) >= p / 100 * len(ordered) - 1e-9:
            return v
    return ordered[-1]


@given(st.lists(finite, min_size=1, max_size=200), st.sampled_from([1, 10, 25, 50, 90, 95, 99, 99.9, 100]))
def test_nearest_rank_matches_the_definition(values: list[float], p: float) -> None:
    got = nearest_rank(values, p)
    assert got in values, "nearest rank is always an observed value"
    assert got == by_definition(values, p)


@given(
    st.lists(finite, min_size=1, max_size=200),
    st.lists(st.sampled_from([1, 10, 25, 50, 90, 95, 99, 99.9, 100]), min_size=1, max_size=5),
)
def test_several_ranks_at_once_match_the_definition(values: list[float], ps: list[float]) -> None:
    assert nearest_ranks(values, ps) == tuple(by_definition(values, p) for p in ps)


def test_several_ranks_check_every_percentile() -> None:
    with pytest.raises(ValueError, match="percentile"):
        nearest_ranks([1.0], (50, 101))


@given(st.lists(finite, min_size=1, max_size=200))
def test_percentiles_are_ordered(values: list[float]) -> None:
    stats = LatencyStats.from_seconds(values)
    assert stats.min <= stats.p50 <= stats.p90 <= stats.p95 <= stats.p99 <= stats.max
    assert stats.min * (1 - 1e-12) <= stats.mean <= stats.max * (1 + 1e-12)  # the mean may round by an ulp
    assert stats.count == len(values)


def test_known_values() -> None:
    values = list(range(1, 101))  # 1..100
    assert nearest_rank(values, 50) == 50
    assert nearest_rank(values, 90) == 90
    assert nearest_rank(values, 99) == 99
    assert nearest_rank(values, 100) == 100
    assert nearest_rank([5.0], 99) == 5.0
    assert nearest_rank([3, 1, 2], 50) == 2  # unsorted input
    assert nearest_rank(list(range(1, 11)), 95) == 10  # ceil(9.5) = 10th value


def test_stats_are_in_milliseconds() -> None:
    stats = LatencyStats.from_seconds([0.001, 0.002, 0.003, 0.004])
    assert stats.min == pytest.approx(1.0)
    assert stats.max == pytest.approx(4.0)
    assert stats.mean == pytest.approx(2.5)
    assert stats.p50 == pytest.approx(2.0)
    assert stats.cv == pytest.approx(np.std([1, 2, 3, 4]) / 2.5)
    assert set(stats.to_dict()) == {"min", "mean", "p50", "p90", "p95", "p99", "max", "stdev"}


@pytest.mark.parametrize("p", [0, -1, 100.5, math.nan])
def test_bad_percentile(p: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        nearest_rank([1.0], p)


def test_no_values() -> None:
    with pytest.raises(ValueError, match="no"):
        LatencyStats.from_seconds([])
