"""The batcher's device defaults: the max-batch rule, its cache, instances from cores, and load's use of them."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import edgerun
from edgerun import BackendError
from edgerun.runtime.batching import BatchedSession, batched_session, batching_options
from edgerun.runtime.batching.policy import (
    MIN_GAIN,
    SIZES,
    batch_policy,
    cached_policy,
    choose_max_batch,
    device_instances,
)
from edgerun.runtime.batching.tryout import Tryout
from edgerun.runtime.device import current_device
from edgerun.runtime.session import Session
from tests import onnx_factory

MLP_LIKE = {1: 1.0, 2: 0.5, 4: 0.25, 8: 0.13, 16: 0.07}
CNN_LIKE = {1: 10.4, 2: 11.0, 4: 12.1, 8: 13.5, 16: 14.6}

factors = st.lists(st.floats(0.05, 2.0), min_size=len(SIZES) - 1, max_size=len(SIZES) - 1)


@pytest.fixture(autouse=True)
def own_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test its own cache: a measurement another test (or a real load) cached would answer first."""
    monkeypatch.setenv("EDGERUN_CACHE_DIR", str(tmp_path / "cache"))


def _table(first: float, steps: Sequence[float]) -> dict[int, float]:
    costs = {SIZES[0]: first}
    for size, previous, factor in zip(SIZES[1:], SIZES[:-1], steps, strict=True):
        costs[size] = costs[previous] * factor
    return costs


@given(st.floats(0.01, 100.0), st.lists(st.floats(0.1, 1 - MIN_GAIN - 1e-6), min_size=4, max_size=4))
def test_costs_falling_enough_at_every_doubling_batch_to_16(first: float, steps: list[float]) -> None:
    size, why = choose_max_batch(_table(first, steps))
    assert size == 16
    assert "up to 16" in why


@given(st.floats(0.01, 100.0), st.lists(st.floats(1 - MIN_GAIN + 1e-6, 3.0), min_size=4, max_size=4))
def test_flat_or_rising_costs_do_not_batch(first: float, steps: list[float]) -> None:
    size, why = choose_max_batch(_table(first, steps))
    assert size == 1
    assert "no gain from batching" in why


@given(st.floats(0.01, 100.0), factors)
def test_the_cap_is_where_the_first_doubling_stops_paying(first: float, steps: list[float]) -> None:
    table = _table(first, steps)
    size, _ = choose_max_batch(table)
    assert size in SIZES
    reached = SIZES[: SIZES.index(size) + 1]
    assert all(table[b] <= table[a] * (1 - MIN_GAIN) for a, b in itertools.pairwise(reached))
    if size != SIZES[-1]:
        following = SIZES[SIZES.index(size) + 1]
        assert table[following] > table[size] * (1 - MIN_GAIN)


def test_the_reasons_name_the_costs() -> None:
    assert choose_max_batch(CNN_LIKE) == (
        1,
        "per-row cost 10.4 ms at 1, 14.6 ms at 16: no gain from batching on this device",
    )
    size, why = choose_max_batch({1: 1.0, 2: 0.5, 4: 0.48})
    assert size == 2
    assert "gain < 10% per doubling past 2" in why
    with pytest.raises(ValueError, match="no per-row costs"):
        choose_max_batch({})


class Measured:
    """A stand-in for the timing: a fixed table, counting calls."""

    def __init__(self, table: dict[int, float]) -> None:
        self.table = table
        self.calls = 0

    def __call__(self, session: Session, sizes: Sequence[int]) -> dict[int, float]:
        self.calls += 1
        return dict(self.table)


class Tried:
    """A stand-in for `tryout_modes`: fixed rates, counting calls and recording the batcher it was asked about."""

    def __init__(self, batched: float, direct: float) -> None:
        self.rates = Tryout(batched, direct)
        self.calls: list[tuple[int, int, float]] = []

    def __call__(self, session: Session, size: int, instances: int, delay_ms: float) -> Tryout:
        self.calls.append((size, instances, delay_ms))
        return self.rates


@pytest.fixture(autouse=True)
def no_real_tryout(monkeypatch: pytest.MonkeyPatch) -> Tried:
    """Loads in these tests get a tryout in which batching pays (a real one takes about a second)."""
    tried = Tried(2000.0, 1000.0)
    monkeypatch.setattr("edgerun.runtime.batching.policy._default_tryout", tried)
    return tried


def test_the_measurement_is_cached_and_a_corrupt_entry_measured_again(tmp_path: Path) -> None:
    measure = Measured(MLP_LIKE)
    tried = Tried(2000.0, 1000.0)
    with edgerun.load("digits-student") as session:
        first = batch_policy(session, folder=tmp_path, measure=measure, try_modes=tried)
        again = batch_policy(session, folder=tmp_path, measure=measure, try_modes=tried)
        assert (first.source, again.source, measure.calls, len(tried.calls)) == ("measured", "cache", 1, 1)
        assert first.max_batch_size == again.max_batch_size == 16
        assert (first.direct_calls, again.tryout) == (False, tried.rates)
        assert tried.calls == [(16, first.instances, first.queue_delay_ms)]
        assert cached_policy(session.model.sha256, session.plan, current_device(), folder=tmp_path) == again
        (entry,) = [p for p in tmp_path.rglob("*.policy")]
        entry.write_text("{not json")
        healed = batch_policy(session, folder=tmp_path, measure=measure, try_modes=tried)
        assert (healed.source, measure.calls) == ("measured", 2)
        other = dataclasses.replace(session.plan, threads=session.plan.threads + 1)
        assert cached_policy(session.model.sha256, other, current_device(), folder=tmp_path) is None


@pytest.mark.parametrize("tryout", [{"batched_per_s": "fast"}, {"batched_per_s": -1, "direct_per_s": 1, "callers": 16}])
def test_a_malformed_cached_tryout_is_measured_again(tmp_path: Path, tryout: dict[str, Any]) -> None:
    measure, tried = Measured(MLP_LIKE), Tried(2000.0, 1000.0)
    with edgerun.load("digits-student") as session:
        batch_policy(session, folder=tmp_path, measure=measure, try_modes=tried)
        (entry,) = [p for p in tmp_path.rglob("*.policy")]
        data = json.loads(entry.read_text())
        entry.write_text(json.dumps({**data, "tryout": tryout}))
        again = batch_policy(session, folder=tmp_path, measure=measure, try_modes=tried)
    assert (again.source, measure.calls, len(tried.calls)) == ("measured", 2, 2)


@given(st.floats(1.0, 1e6), st.floats(0.0, 2.0))
def test_batching_is_chosen_only_when_it_beats_direct_calls_by_the_margin(direct: float, ratio: float) -> None:
    from edgerun.runtime.batching import tryout as tryout_module

    rates = Tryout(direct * ratio, direct)
    assert rates.batching_pays == (direct * ratio >= direct * (1 + tryout_module.MIN_GAIN))


def test_a_tryout_batching_loses_makes_direct_calls_and_says_why(tmp_path: Path) -> None:
    """digits-student on this CPU: batches cut the per-row cost, yet the batcher's Python per request loses."""
    tried = Tried(28000.0, 69000.0)
    with edgerun.load("digits-student") as session:
        policy = batch_policy(session, folder=tmp_path, measure=Measured(MLP_LIKE), try_modes=tried)
        cached = cached_policy(session.model.sha256, session.plan, current_device(), folder=tmp_path)
        serial = cached_policy(session.model.sha256, session.plan, current_device(), folder=tmp_path,
                               concurrent_runs=False)  # fmt: skip
    assert (policy.max_batch_size, policy.direct_calls) == (1, True)
    assert "28000 req/s against 69000 for direct calls" in policy.batch_why
    queued = policy.for_queued_requests()
    assert queued.max_batch_size > 1  # the per-row costs still fall: queued requests batch
    delay_ms = round(queued.queue_delay_ms, 3)
    assert policy.options() == {"max_batch_size": queued.max_batch_size, "instances": policy.instances,
                                "max_queue_delay_ms": delay_ms, "direct_calls": True}  # fmt: skip
    assert policy.chosen()["queued"] == {"max_batch_size": queued.max_batch_size,
                                         "max_queue_delay_ms": round(queued.queue_delay_ms, 3),
                                         "why": queued.batch_why}  # fmt: skip
    assert policy.chosen()["tryout"] == {"batched_per_s": 28000.0, "direct_per_s": 69000.0, "callers": 16}
    assert cached == dataclasses.replace(policy, source="cache")
    assert serial is not None
    assert (serial.max_batch_size, serial.direct_calls) == (1, False)


def test_a_failed_tryout_leaves_the_decision_to_the_per_row_costs(tmp_path: Path) -> None:
    def failing(session: Session, size: int, instances: int, delay_ms: float) -> Tryout:
        raise BackendError("out of memory")

    measure = Measured(MLP_LIKE)
    with edgerun.load("digits-student") as session:
        policy = batch_policy(session, folder=tmp_path, measure=measure, try_modes=failing)
        assert (policy.max_batch_size, policy.tryout, policy.direct_calls) == (16, None, False)
        again = batch_policy(session, folder=tmp_path, measure=measure, try_modes=Tried(1000.0, 2000.0))
    assert (again.source, measure.calls) == ("measured", 2)  # the failure was not cached: tried again
    assert (again.max_batch_size, again.direct_calls) == (1, True)


def test_flat_costs_make_direct_calls_without_a_tryout(tmp_path: Path) -> None:
    tried = Tried(2000.0, 1000.0)
    with edgerun.load("digits-student") as session:
        policy = batch_policy(session, folder=tmp_path, measure=Measured(CNN_LIKE), try_modes=tried)
    assert (policy.max_batch_size, policy.direct_calls, tried.calls) == (1, True, [])
    assert "direct calls" in policy.batch_why


def test_the_cache_lives_under_edgerun_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGERUN_CACHE_DIR", str(tmp_path))
    with edgerun.load("digits-student") as session:
        batch_policy(session, measure=Measured(CNN_LIKE))
    assert list((tmp_path / "batching").rglob("*.policy"))


def test_a_fixed_batch_axis_gets_batch_1_unmeasured(tmp_path: Path) -> None:
    path = onnx_factory.save(onnx_factory.two_input_add(batch=1), tmp_path / "fixed.onnx")
    measure = Measured(MLP_LIKE)
    with edgerun.load(path) as session:
        policy = batch_policy(session, folder=tmp_path / "cache", measure=measure)
    assert (policy.max_batch_size, policy.source, measure.calls) == (1, "fixed", 0)
    assert "fixes its batch axis at 1" in policy.batch_why


def test_a_model_the_batcher_refuses_is_not_measured(tmp_path: Path) -> None:
    """An output with no batch axis: the batcher will refuse it, so the policy spends no time timing it."""
    from tests.batching_helpers import scalar_output_model

    path = onnx_factory.save(scalar_output_model(), tmp_path / "scalar_out.onnx")
    measure = Measured(MLP_LIKE)
    with edgerun.load(path) as session:
        policy = batch_policy(session, folder=tmp_path / "cache", measure=measure)
    assert (policy.max_batch_size, policy.source, measure.calls) == (1, "fixed", 0)
    assert "output 'y'" in policy.batch_why
    assert not list((tmp_path / "cache").rglob("*.policy"))


def test_instances_from_cores_and_threads_and_2_on_a_gpu() -> None:
    with edgerun.load("digits-student") as session:
        plan = dataclasses.replace(session.plan, threads=2, device="cpu")
        eight = dataclasses.replace(current_device(), cores=8)
        assert device_instances(plan, eight) == (4, "8 cores / 2 threads per session")
        assert device_instances(plan, dataclasses.replace(eight, cores=1))[0] == 1
        gpu = dataclasses.replace(plan, device="cuda:0")
        count, why = device_instances(gpu, eight)
        assert count == 2
        assert "GPU" in why
        policy = batch_policy(session, eight, measure=Measured(CNN_LIKE))
        assert policy.instances == 8 // session.plan.threads


def _chosen(batched: BatchedSession) -> dict[str, Any]:
    stats = batched.batcher.stats()
    return dict(stats["chosen"]) if "chosen" in stats else dict(vars(batched.batcher)["chosen"])


def test_batching_true_takes_the_policy_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("edgerun.runtime.batching.policy.measure_per_row", Measured(CNN_LIKE))
    eight = dataclasses.replace(current_device(), cores=8)
    with edgerun.load("digits-student") as session:
        with batched_session(session.reopen(), True, profile=eight) as batched:
            assert isinstance(batched, BatchedSession)
            assert (batched.batcher.max_batch_size, batched.batcher._pool_size) == (1, 8 // session.plan.threads)
            chosen = _chosen(batched)
            assert chosen["max_batch_size"] == 1
            assert "no gain from batching" in chosen["batch_why"]
            assert chosen["instances_why"].startswith("8 cores")
            assert batched.batcher.direct_calls
        options = batching_options({"max_queue_delay_ms": 2, "instances": 3}, session, eight)
        assert options == {"max_batch_size": 1, "instances": 3, "max_queue_delay_ms": 2, "direct_calls": True}
        ordered = batching_options({"preserve_order": True}, session, eight)
        assert ordered["direct_calls"] is False  # an order to keep needs the queue


def test_explicit_options_win_and_measure_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    measure = Measured(CNN_LIKE)
    monkeypatch.setattr("edgerun.runtime.batching.policy.measure_per_row", measure)
    with edgerun.load("digits-student") as session:
        assert batching_options(4, session) == {"max_batch_size": 4}
        assert batching_options({"max_batch_size": 2, "instances": 2}, session) == {"max_batch_size": 2, "instances": 2}
        with batched_session(session.reopen(), 4) as batched:
            assert _chosen(batched) == {"max_batch_size": 4, "batch_why": "given"}
    assert batching_options(True) == {"max_batch_size": 8}
    assert measure.calls == 0


def test_load_with_batching_true_uses_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("edgerun.runtime.batching.policy.measure_per_row", Measured(MLP_LIKE))
    with edgerun.load("digits-student", batching=True) as batched:
        assert isinstance(batched, BatchedSession)
        chosen = _chosen(batched)
        assert batched.batcher.max_batch_size == 16
        assert "up to 16" in chosen["batch_why"]


@pytest.mark.parametrize(
    ("max_batch", "per_row", "delay_ms"),
    [(16, {1: 3.05, 16: 0.44}, 2.0), (8, {1: 0.047, 8: 0.013}, 0.1), (4, {1: 0.6, 4: 0.3}, 0.6), (1, {1: 47.3}, 0.0),
     (8, {}, 1.0)],
)  # fmt: skip
def test_queue_delay_is_about_one_single_call(max_batch: int, per_row: dict[int, float], delay_ms: float) -> None:
    from edgerun.runtime.batching.policy import BatchPolicy

    policy = BatchPolicy(2, "2 cores", max_batch, "why", per_row)
    assert policy.queue_delay_ms == pytest.approx(delay_ms)
    assert policy.options()["max_queue_delay_ms"] == pytest.approx(delay_ms)
    assert policy.chosen()["max_queue_delay_ms"] == pytest.approx(delay_ms)


def test_queued_requests_batch_by_the_per_row_rule_where_direct_calls_won(tmp_path: Path) -> None:
    """bench's server scenario submits requests: direct calls cannot serve them, so the per-row cap applies."""
    with edgerun.load("digits-student") as session:
        lost = batch_policy(session, folder=tmp_path / "a", measure=Measured(MLP_LIKE), try_modes=Tried(1.0, 2.0))
        flat = batch_policy(session, folder=tmp_path / "b", measure=Measured(CNN_LIKE), try_modes=Tried(1.0, 2.0))
        won = batch_policy(session, folder=tmp_path / "c", measure=Measured(MLP_LIKE), try_modes=Tried(2.0, 1.0))
    queued = lost.for_queued_requests()
    assert (lost.max_batch_size, lost.direct_calls) == (1, True)
    assert (queued.max_batch_size, queued.direct_calls) == (16, False)
    assert "queued requests" in queued.batch_why
    assert (flat.for_queued_requests().max_batch_size, flat.for_queued_requests().direct_calls) == (1, False)
    assert won.for_queued_requests() == won


@pytest.mark.parametrize("given", [{"preserve_order": True}, {"direct_calls": False}])
def test_blocking_callers_kept_off_direct_calls_get_the_tryouts_choice(
    monkeypatch: pytest.MonkeyPatch, given: dict[str, Any]
) -> None:
    """Batches cut the per-row cost but the tryout says the batcher loses: direct calls. An option that keeps
    blocking callers in the queue must give them that choice (max batch 1), not the cap meant for queued requests."""
    monkeypatch.setattr("edgerun.runtime.batching.policy.measure_per_row", Measured(MLP_LIKE))
    monkeypatch.setattr("edgerun.runtime.batching.policy._default_tryout", Tried(28000.0, 69000.0))
    with edgerun.load("digits-student") as session:
        options = batching_options(True, session)
        kept = batching_options(given, session)
        with batched_session(session.reopen(), given) as batched:
            chosen = _chosen(batched)
            assert (batched.batcher.max_batch_size, batched.batcher.direct_calls) == (1, False)
    assert options["direct_calls"] is True
    assert options["max_batch_size"] > 1  # beside direct calls, queued requests batch
    assert {k: kept[k] for k in ("max_batch_size", "max_queue_delay_ms", "direct_calls")} == {
        "max_batch_size": 1, "max_queue_delay_ms": 0.0, "direct_calls": False}  # fmt: skip
    assert chosen["max_batch_size"] == 1
    assert chosen["direct_calls"] is False
    assert "queued" not in chosen
