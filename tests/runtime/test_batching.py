"""DynamicBatcher: every rule of edgerun/runtime/batching/, on real sessions whose backend call a test can gate.

Timing is controlled with `Gate` (tests/batching_helpers.py): the real ONNX Runtime call behind a
wrapper that records each batch and holds it until the test releases it. So "the worker is busy"
means a call is held in the gate, not a sleep. The row model (y = 2x + row sum, [batch, n]) takes
small integers, so its results are exact whatever the batching; rows are tagged to find their owner.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import CancelledError
from concurrent.futures import wait as wait_futures
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgerun
from edgerun import (
    BackendError,
    BatcherClosedError,
    ConfigError,
    InputError,
    QueueFullError,
    RequestTimeoutError,
    SessionClosedError,
)
from edgerun.runtime.batching import BatchedSession, DynamicBatcher
from edgerun.runtime.session import Session

from .. import onnx_factory
from ..batching_helpers import (
    WAIT_S,
    Gate,
    as_key,
    batcher_threads,
    contains_row,
    scalar_output_model,
    symbolic_transposed_output_model,
    tagged_rows,
    transposed_output_model,
    wait_until,
)

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("batching-models")


@pytest.fixture(scope="module")
def digits() -> Iterator[Session]:
    with edgerun.load("digits-student") as session:
        yield session


@pytest.fixture(scope="module")
def digits_ref() -> Iterator[Session]:
    with edgerun.load("digits-student") as session:
        yield session


def image(rng: np.random.Generator, rows: int) -> np.ndarray:
    return rng.standard_normal((rows, 1, 8, 8), dtype=np.float32)


def assert_same_logits(got: np.ndarray, want: np.ndarray) -> None:
    # Exact on this machine; a tolerance far below any other row's difference keeps it portable
    # to CPUs whose GEMM kernels differ in the last bit between batch sizes.
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def tagged_requests(shapes: list[tuple[int, int]], first_row_id: int = 1) -> list[np.ndarray]:
    """One tagged input per (n, rows); row ids start at ``first_row_id`` (0 would be an all-zero row)."""
    inputs = []
    next_id = first_row_id
    for n, count in shapes:
        inputs.append(tagged_rows(next_id, count, n))
        next_id += count
    return inputs


def owners(inputs: list[np.ndarray]) -> dict[bytes, int]:
    """Row bytes -> index of the request that sent that row."""
    return {as_key(x[j : j + 1]): i for i, x in enumerate(inputs) for j in range(len(x))}


def members(call_rows: np.ndarray, owner: dict[bytes, int]) -> list[int]:
    """The requests whose rows make up a batch, in row order (KeyError: a row nobody sent)."""
    found: list[int] = []
    for j in range(len(call_rows)):
        i = owner[as_key(call_rows[j : j + 1])]
        if not found or found[-1] != i:
            found.append(i)
    return found


# --- results ---------------------------------------------------------------------------------------


@PROPERTY
@given(
    sizes=st.lists(st.integers(1, 8), min_size=1, max_size=16),
    instances=st.integers(1, 2),
    preserve_order=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_request_gets_exactly_its_own_rows(
    digits: Session, digits_ref: Session, sizes: list[int], instances: int, preserve_order: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    inputs = [image(rng, n) for n in sizes]
    expected = [digits_ref.run(x)["logits"] for x in inputs]
    completed: list[int] = []
    with (
        DynamicBatcher(digits, max_batch_size=8, instances=instances, preserve_order=preserve_order) as batcher,
        Gate(digits, held=True) as gate,
    ):
        blocker = batcher.submit(image(rng, 1))
        gate.wait_calls(1)
        futures = [batcher.submit(x) for x in inputs]
        for i, future in enumerate(futures):
            future.add_done_callback(lambda _, i=i: completed.append(i))
        gate.open()
        results = [future.result(timeout=WAIT_S) for future in futures]
        blocker.result(timeout=WAIT_S)
    for got, want in zip(results, expected, strict=True):
        assert list(got) == ["logits"]
        assert_same_logits(got["logits"], want)
    assert all(0 < n <= 8 for n in gate.batch_rows())
    executed = Counter(as_key(row[None]) for row in gate.executed("image"))
    assert sum(executed.values()) == 1 + sum(sizes)  # every row ran exactly once: nothing lost or duplicated
    assert all(executed[as_key(x[j : j + 1])] == 1 for x in inputs for j in range(len(x)))
    if preserve_order:
        assert completed == list(range(len(inputs)))


def test_every_output_of_a_multi_input_model_is_split_per_request(model_dir: Path) -> None:
    path = onnx_factory.save(onnx_factory.two_input_add(), model_dir / "two_input_add.onnx")
    rng = np.random.default_rng(5)
    requests = [
        {
            "a": rng.random((n, 4), dtype=np.float32),
            "b": rng.random((n, 4), dtype=np.float32),
            "c": rng.integers(0, 2**40, n, dtype=np.int64),
        }
        for n in (1, 3, 2, 4, 1)
    ]
    with edgerun.load(path) as session, edgerun.load(path) as ref:
        expected = [ref.run(feeds) for feeds in requests]
        with DynamicBatcher(session, max_batch_size=8) as batcher, Gate(session, held=True) as gate:
            blocker = batcher.submit(requests[0])
            gate.wait_calls(1)
            futures = [batcher.submit(feeds) for feeds in requests]
            gate.open()
            results = [future.result(timeout=WAIT_S) for future in futures]
            blocker.result(timeout=WAIT_S)
    assert gate.batch_rows() == [1, 6, 5]  # FIFO, merged while the next request fits in 8 rows
    for got, want in zip(results, expected, strict=True):
        assert list(got) == ["y", "n"]
        for name in ("y", "n"):
            assert got[name].dtype == want[name].dtype
            np.testing.assert_array_equal(got[name], want[name])


def test_results_are_arrays_each_request_owns(rows: Session, rows_ref: Session) -> None:
    inputs = tagged_requests([(3, 2), (3, 1), (3, 3), (3, 2)])
    with DynamicBatcher(rows, max_batch_size=8) as batcher, Gate(rows, held=True) as gate:
        blocker = batcher.submit(tagged_rows(100, 1, 3))
        gate.wait_calls(1)
        futures = [batcher.submit(x) for x in inputs]
        gate.open()
        arrays = [future.result(timeout=WAIT_S)["y"] for future in futures]
        arrays.append(blocker.result(timeout=WAIT_S)["y"])
        inline_first = batcher.infer(inputs[0])["y"]
        inline_first[:] = -7  # the lone request's array is the caller's too
        inline_again = batcher.infer(inputs[0])["y"]
    assert gate.batch_rows() == [1, 8, 2, 2]
    for a, b in itertools.combinations(arrays, 2):
        assert not np.shares_memory(a, b)
    for a, x in zip(arrays, inputs, strict=False):
        assert not np.shares_memory(a, x)
    kept = [a.copy() for a in arrays]
    arrays[1][:] = -1  # a request writes to its result ...
    for a, k in zip(arrays[2:], kept[2:], strict=True):  # ... and no other request's result changes
        np.testing.assert_array_equal(a, k)
    np.testing.assert_array_equal(arrays[0], kept[0])
    np.testing.assert_array_equal(kept[0], rows_ref.run(inputs[0])["y"])
    np.testing.assert_array_equal(inline_again, rows_ref.run(inputs[0])["y"])


# --- grouping ----------------------------------------------------------------------------------------


@st.composite
def request_mixes(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]]]:
    """(max_batch_size, [(n, rows), ...]) with three non-batch shapes."""
    max_batch = draw(st.integers(1, 8))
    requests = draw(st.lists(st.tuples(st.sampled_from([2, 3, 5]), st.integers(1, max_batch)), min_size=1, max_size=20))
    return max_batch, requests


@PROPERTY
@given(mix=request_mixes())
def test_shapes_never_share_a_batch_and_batches_are_filled_in_arrival_order(
    rows: Session, rows_ref: Session, mix: tuple[int, list[tuple[int, int]]]
) -> None:
    max_batch, shapes = mix
    inputs = tagged_requests(shapes)
    owner = owners(inputs)
    expected = [rows_ref.run(x)["y"] for x in inputs]
    with DynamicBatcher(rows, max_batch_size=max_batch) as batcher, Gate(rows, held=True) as gate:
        blocker = batcher.submit(tagged_rows(4000, 1, 2))
        gate.wait_calls(1)
        futures = [batcher.submit(x) for x in inputs]
        gate.open()
        results = [future.result(timeout=WAIT_S)["y"] for future in futures]
        blocker.result(timeout=WAIT_S)
        stats = batcher.stats()
    for got, want in zip(results, expected, strict=True):
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    ran = Counter[int]()
    for call in gate.calls[1:]:
        x = call.feeds["x"]
        assert x.shape[0] <= max_batch
        batch = members(x, owner)
        assert {shapes[i][0] for i in batch} == {x.shape[1]}  # one non-batch shape per batch
        ran.update(i for i in batch for _ in range(shapes[i][1]))
        # the batch is a run of consecutive requests of its shape's queue, ended only by the max
        queue = [i for i, (n, _) in enumerate(shapes) if n == x.shape[1]]
        start = queue.index(batch[0])
        assert batch == queue[start : start + len(batch)]
        following = queue[start + len(batch) :]
        assert not following or x.shape[0] + shapes[following[0]][1] > max_batch
        assert sum(shapes[i][1] for i in batch) == x.shape[0]
    assert ran == Counter({i: n for i, (_, n) in enumerate(shapes)})  # each request ran exactly once
    assert stats["batch_size_histogram"] == dict(sorted(Counter(gate.batch_rows()).items()))
    assert stats["batches"] == len(gate.calls)


@PROPERTY
@given(
    sizes=st.lists(st.integers(1, 8), min_size=1, max_size=12),
    preferred=st.sets(st.integers(1, 8), min_size=1, max_size=4),
)
def test_padding_to_preferred_sizes_is_seen_by_the_backend_and_dropped_from_results(
    rows: Session, rows_ref: Session, sizes: list[int], preferred: set[int]
) -> None:
    inputs = tagged_requests([(3, n) for n in sizes])
    owner = owners(inputs)
    sizes_sorted = sorted(preferred)
    with (
        DynamicBatcher(rows, max_batch_size=8, preferred_batch_sizes=sizes_sorted, pad_to_preferred=True) as batcher,
        Gate(rows, held=True) as gate,
    ):
        blocker = batcher.submit(tagged_rows(3000, 1, 3))
        gate.wait_calls(1)
        futures = [batcher.submit(x) for x in inputs]
        gate.open()
        results = [future.result(timeout=WAIT_S)["y"] for future in futures]
        blocker.result(timeout=WAIT_S)
    for got, x in zip(results, inputs, strict=True):
        assert got.shape == x.shape
        np.testing.assert_array_equal(got, rows_ref.run(x)["y"])
    for call in gate.calls[1:]:
        x = call.feeds["x"]
        real = int(x.any(axis=1).sum())  # tagged rows are never all zero
        assert x[:real].any(axis=1).all()  # the real rows come first ...
        assert not x[real:].any()  # ... then the padding: zeros
        assert real == sum(len(inputs[i]) for i in members(x[:real], owner))
        assert x.shape[0] == next((s for s in sizes_sorted if s >= real), real)  # the next preferred size, if any


def test_other_dtypes_and_shapes_are_rejected_not_grouped(rows: Session, rows_ref: Session) -> None:
    """The model fixes the dtype, so a request of another dtype never reaches a group: InputError at submit."""
    good = tagged_requests([(3, 2), (4, 1)])
    with DynamicBatcher(rows, max_batch_size=8) as batcher, Gate(rows, held=True) as gate:
        blocker = batcher.submit(tagged_rows(500, 1, 3))
        gate.wait_calls(1)
        first = batcher.submit(good[0])
        for dtype in (np.float64, np.float16, np.int32):
            with pytest.raises(InputError, match="dtype"):
                batcher.submit(good[0].astype(dtype))
        with pytest.raises(InputError, match="rank"):
            batcher.submit(good[0][..., None])
        second = batcher.submit(good[1])
        gate.open()
        np.testing.assert_array_equal(first.result(timeout=WAIT_S)["y"], rows_ref.run(good[0])["y"])
        np.testing.assert_array_equal(second.result(timeout=WAIT_S)["y"], rows_ref.run(good[1])["y"])
        blocker.result(timeout=WAIT_S)
    assert sorted(gate.batch_rows()) == [1, 1, 2]  # the two shapes ran as two batches


# --- no idle wait and the queue delay --------------------------------------------------------------


def test_lone_infer_on_an_idle_batcher_runs_in_the_callers_thread_at_once(digits: Session, digits_ref: Session) -> None:
    x = image(np.random.default_rng(1), 3)
    with DynamicBatcher(digits, max_batch_size=8, max_queue_delay_ms=500) as batcher, Gate(digits) as gate:
        started = time.perf_counter()
        got = batcher.infer(x)
        elapsed = time.perf_counter() - started
        stats = batcher.stats()
    assert elapsed < 0.1  # far below the 500 ms delay: a lone request never waits for company
    assert stats["inline"] == 1
    assert gate.calls[0].thread is threading.current_thread()
    assert_same_logits(got["logits"], digits_ref.run(x)["logits"])


def test_lone_submit_on_an_idle_batcher_goes_to_a_worker_at_once(digits: Session, digits_ref: Session) -> None:
    x = image(np.random.default_rng(2), 2)
    with DynamicBatcher(digits, max_batch_size=8, max_queue_delay_ms=500) as batcher, Gate(digits) as gate:
        started = time.perf_counter()
        got = batcher.submit(x).result(timeout=WAIT_S)
        elapsed = time.perf_counter() - started
        stats = batcher.stats()
    assert elapsed < 0.1
    assert stats["inline"] == 0
    assert gate.calls[0].thread.name.startswith("edgerun-batcher-")
    assert_same_logits(got["logits"], digits_ref.run(x)["logits"])


def test_requests_queued_behind_a_busy_worker_run_as_one_batch(digits: Session, digits_ref: Session) -> None:
    rng = np.random.default_rng(3)
    queued = [image(rng, 1) for _ in range(3)]
    with (
        DynamicBatcher(digits, max_batch_size=8, max_queue_delay_ms=20) as batcher,
        Gate(digits, held=True) as gate,
    ):
        blocker = batcher.submit(image(rng, 1))
        gate.wait_calls(1)
        futures = [batcher.submit(x) for x in queued]
        gate.open()
        results = [future.result(timeout=WAIT_S) for future in futures]
        blocker.result(timeout=WAIT_S)
        stats = batcher.stats()
    assert gate.batch_rows() == [1, 3]
    assert stats["batch_size_histogram"] == {1: 1, 3: 1}
    for got, x in zip(results, queued, strict=True):
        assert_same_logits(got["logits"], digits_ref.run(x)["logits"])


def test_queue_delay_waits_for_company_up_to_the_max_batch(rows: Session) -> None:
    first, later = tagged_requests([(3, 1)] * 3), tagged_requests([(3, 1)] * 5, first_row_id=50)
    with (
        DynamicBatcher(rows, max_batch_size=8, max_queue_delay_ms=5000) as batcher,
        Gate(rows, held=True) as gate,
    ):
        blocker = batcher.submit(tagged_rows(40, 1, 3))
        gate.wait_calls(1)
        futures = [batcher.submit(x) for x in first]
        started = time.perf_counter()
        gate.open()
        blocker.result(timeout=WAIT_S)
        time.sleep(0.05)  # a chance for a wrong batcher to run the 3 alone (not synchronisation)
        assert gate.batch_rows() == [1]  # the 3 queued requests wait for company ...
        futures += [batcher.submit(x) for x in later]
        for future in futures:
            future.result(timeout=WAIT_S)
        elapsed = time.perf_counter() - started
    assert gate.batch_rows() == [1, 8]  # ... and run with the 5 that came, as one full batch
    assert elapsed < 2.5  # a full batch ends the wait: far less than the 5 s delay


def test_without_a_queue_delay_requests_behind_a_busy_worker_run_as_soon_as_it_is_free(rows: Session) -> None:
    """Control for the test above: the same scenario with no delay runs the 3 at once."""
    with DynamicBatcher(rows, max_batch_size=8) as batcher, Gate(rows, held=True) as gate:
        blocker = batcher.submit(tagged_rows(40, 1, 3))
        gate.wait_calls(1)
        futures = [batcher.submit(x) for x in tagged_requests([(3, 1)] * 3)]
        gate.open()
        assert gate.wait_calls(2)[1].rows == 3
        futures += [batcher.submit(x) for x in tagged_requests([(3, 1)] * 5, first_row_id=50)]
        for future in [blocker, *futures]:
            future.result(timeout=WAIT_S)
    assert gate.batch_rows()[:2] == [1, 3]
    assert sum(gate.batch_rows()) == 9


def test_reaching_a_preferred_size_ends_the_queue_delay(rows: Session) -> None:
    with (
        DynamicBatcher(rows, max_batch_size=8, preferred_batch_sizes=[2], max_queue_delay_ms=5000) as batcher,
        Gate(rows, held=True) as gate,
    ):
        blocker = batcher.submit(tagged_rows(40, 1, 3))
        gate.wait_calls(1)
        futures = [batcher.submit(x) for x in tagged_requests([(3, 1)] * 2)]
        started = time.perf_counter()
        gate.open()
        blocker.result(timeout=WAIT_S)
        for future in futures:
            future.result(timeout=WAIT_S)
        elapsed = time.perf_counter() - started
    assert gate.batch_rows() == [1, 2]
    assert elapsed < 2.5  # not the 5 s delay


def test_queue_delay_is_an_upper_bound_on_waiting_for_company(rows: Session) -> None:
    with (
        DynamicBatcher(rows, max_batch_size=8, max_queue_delay_ms=200) as batcher,
        Gate(rows, held=True) as gate,
    ):
        blocker = batcher.submit(tagged_rows(40, 1, 3))
        gate.wait_calls(1)
        submitted = time.perf_counter()
        lonely = batcher.submit(tagged_rows(41, 1, 3))
        gate.open()
        blocker.result(timeout=WAIT_S)
        lonely.result(timeout=WAIT_S)
        waited = time.perf_counter() - submitted
    assert gate.batch_rows() == [1, 1]
    assert 0.2 <= waited < 2.0  # it waited for company, but no longer than the delay (plus slack)


def test_a_group_waiting_for_company_does_not_hold_up_a_ready_request_of_another_shape(rows: Session) -> None:
    with (
        DynamicBatcher(rows, max_batch_size=8, max_queue_delay_ms=1000) as batcher,
        Gate(rows, held=True) as gate,
    ):
        blocker = batcher.submit(tagged_rows(40, 1, 3))
        gate.wait_calls(1)
        waiting = batcher.submit(tagged_rows(41, 1, 3))  # behind a busy worker: waits up to 1 s
        gate.open()
        blocker.result(timeout=WAIT_S)
        started = time.perf_counter()
        ready = batcher.submit(tagged_rows(42, 1, 5))  # another shape, on a free worker: no wait
        ready.result(timeout=WAIT_S)
        elapsed = time.perf_counter() - started
        assert not waiting.done()
        waiting.result(timeout=WAIT_S)
    assert elapsed < 0.3  # not the other group's 1 s
    assert gate.batch_rows() == [1, 1, 1]


def _run_a_batch_of_three(batcher: DynamicBatcher, gate: Gate) -> None:
    """A blocker, then three requests queued behind it that run as one batch (a preferred size)."""
    blocker = batcher.submit(tagged_rows(40, 1, 3))
    gate.wait_calls(1)
    three = [batcher.submit(x) for x in tagged_requests([(3, 1)] * 3, first_row_id=100)]
    gate.open()
    for future in [blocker, *three]:
        future.result(timeout=WAIT_S)
    assert gate.batch_rows() == [1, 3]


def test_callers_of_a_batch_coming_back_are_batched_together_at_once(rows: Session) -> None:
    """In a closed loop the first caller back waits for the others, but only until all are back."""
    with (
        DynamicBatcher(rows, max_batch_size=8, preferred_batch_sizes=[3], max_queue_delay_ms=3000) as batcher,
        Gate(rows) as gate,
    ):
        gate.held = True
        _run_a_batch_of_three(batcher, gate)
        started = time.perf_counter()
        back = [batcher.submit(tagged_rows(200, 1, 3)), batcher.submit(tagged_rows(201, 1, 3))]
        time.sleep(0.05)  # a chance for a wrong batcher to run the first ones back alone
        assert gate.batch_rows() == [1, 3]
        back.append(batcher.submit(tagged_rows(202, 1, 3)))  # the last of the three: no more waiting
        for future in back:
            future.result(timeout=WAIT_S)
        elapsed = time.perf_counter() - started
    assert gate.batch_rows() == [1, 3, 3]
    assert elapsed < 1.5  # not the 3 s delay


def test_a_lone_request_right_after_a_batch_waits_at_most_the_rest_of_the_delay(rows: Session) -> None:
    with DynamicBatcher(rows, max_batch_size=8, preferred_batch_sizes=[3], max_queue_delay_ms=300) as batcher:
        with Gate(rows, held=True) as gate:
            _run_a_batch_of_three(batcher, gate)
            batch_end = time.perf_counter()
            lone = batcher.infer(tagged_rows(300, 1, 3))  # its batch's other callers never come back
            waited = time.perf_counter() - batch_end
        later = time.perf_counter()
        batcher.infer(tagged_rows(301, 1, 3))  # long after the batch: runs at once, inline
        alone = time.perf_counter() - later
        stats = batcher.stats()
    np.testing.assert_array_equal(lone["y"], 2 * tagged_rows(300, 1, 3) + tagged_rows(300, 1, 3).sum())
    assert waited < 0.3 + 1.0  # bounded by the delay counted from the batch's end (plus slack)
    assert alone < 0.1
    assert stats["inline"] == 1  # the second one only


# --- max_batch_size and max_queue_size ---------------------------------------------------------------


def test_a_request_over_max_batch_size_is_rejected_at_submit(digits: Session) -> None:
    x = image(np.random.default_rng(4), 5)
    with DynamicBatcher(digits, max_batch_size=4) as batcher, Gate(digits) as gate:
        for call in (batcher.submit, batcher.infer):
            with pytest.raises(InputError, match="exceeds max_batch_size 4"):
                call(x)
        with pytest.raises(InputError, match="exceeds max_batch_size 4"):
            asyncio.run(batcher.infer_async(x))
        assert batcher.stats()["requests"] == 0
        batcher.infer(x[:4])  # exactly the maximum is fine
    assert gate.batch_rows() == [4]


def test_batches_never_exceed_max_batch_size(rows: Session, rows_ref: Session) -> None:
    inputs = tagged_requests([(3, 1)] * 6 + [(3, 3), (3, 2), (3, 4)])
    with DynamicBatcher(rows, max_batch_size=4) as batcher, Gate(rows, held=True) as gate:
        blocker = batcher.submit(tagged_rows(900, 1, 3))
        gate.wait_calls(1)
        futures = [batcher.submit(x) for x in inputs]
        gate.open()
        for future, x in zip(futures, inputs, strict=True):
            np.testing.assert_array_equal(future.result(timeout=WAIT_S)["y"], rows_ref.run(x)["y"])
        blocker.result(timeout=WAIT_S)
    assert gate.batch_rows() == [1, 4, 2, 3, 2, 4]


def test_a_full_queue_rejects_the_next_request_at_once(digits: Session, digits_ref: Session) -> None:
    rng = np.random.default_rng(6)
    first, second, extra = image(rng, 1), image(rng, 2), image(rng, 1)
    with DynamicBatcher(digits, max_batch_size=8, max_queue_size=2) as batcher, Gate(digits, held=True) as gate:
        blocker = batcher.submit(image(rng, 1))
        gate.wait_calls(1)
        futures = [batcher.submit(first), batcher.submit(second)]
        started = time.perf_counter()
        with pytest.raises(QueueFullError, match="max_queue_size 2"):
            batcher.submit(extra)
        assert time.perf_counter() - started < 0.1  # at once, not after waiting for room
        with pytest.raises(QueueFullError):
            batcher.infer(extra)
        stats = batcher.stats()
        assert (stats["rejected"], stats["queued"], stats["requests"]) == (2, 2, 3)
        gate.open()
        for future, x in zip(futures, (first, second), strict=True):
            assert_same_logits(future.result(timeout=WAIT_S)["logits"], digits_ref.run(x)["logits"])
        blocker.result(timeout=WAIT_S)
        assert_same_logits(batcher.submit(extra).result(timeout=WAIT_S)["logits"], digits_ref.run(extra)["logits"])
    executed = gate.executed("image")
    assert sum((executed == extra).all(axis=(1, 2, 3))) == 1  # the rejected attempts never ran


# --- timeouts ------------------------------------------------------------------------------------------


def test_a_request_past_its_timeout_fails_while_the_worker_is_busy_and_never_runs(digits: Session) -> None:
    rng = np.random.default_rng(7)
    late, later = image(rng, 1), image(rng, 1)
    with DynamicBatcher(digits, max_batch_size=8) as batcher, Gate(digits, held=True) as gate:
        blocker = batcher.submit(image(rng, 1))
        gate.wait_calls(1)
        submitted = time.perf_counter()
        future = batcher.submit(late, timeout_ms=50)
        error = future.exception(timeout=WAIT_S)
        waited = time.perf_counter() - submitted
        assert isinstance(error, RequestTimeoutError)
        assert isinstance(error, TimeoutError)
        assert 0.05 <= waited < 0.5
        assert gate.in_flight == 1  # failed while the worker was still blocked
        assert not blocker.done()
        with pytest.raises(RequestTimeoutError):  # infer raises it too
            batcher.infer(late, timeout_ms=30)
        stats = batcher.stats()
        assert (stats["timed_out"], stats["queued"]) == (2, 0)
        gate.open()
        blocker.result(timeout=WAIT_S)
        batcher.submit(later).result(timeout=WAIT_S)
    executed = gate.executed("image")
    assert not contains_row(executed, late)  # never run late
    assert contains_row(executed, later)


def test_default_timeout_applies_when_a_request_gives_none(digits: Session, digits_ref: Session) -> None:
    rng = np.random.default_rng(8)
    unlimited, longer, defaulted = image(rng, 1), image(rng, 1), image(rng, 1)
    with (
        DynamicBatcher(digits, max_batch_size=8, default_timeout_ms=50) as batcher,
        Gate(digits, held=True) as gate,
    ):
        blocker = batcher.submit(image(rng, 1))
        gate.wait_calls(1)
        explicit = [batcher.submit(unlimited, timeout_ms=0), batcher.submit(longer, timeout_ms=60_000)]
        default = batcher.submit(defaulted)
        assert isinstance(default.exception(timeout=WAIT_S), RequestTimeoutError)
        # submitted earlier: had they got the 50 ms default, they would have expired first
        assert not any(future.done() for future in explicit)
        gate.open()
        for future, x in zip(explicit, (unlimited, longer), strict=True):
            assert_same_logits(future.result(timeout=WAIT_S)["logits"], digits_ref.run(x)["logits"])
        blocker.result(timeout=WAIT_S)
    assert batcher.stats()["timed_out"] == 1
    assert not contains_row(gate.executed("image"), defaulted)


# --- invalid feeds -------------------------------------------------------------------------------------

INVALID: dict[str, Any] = {
    "float64": np.zeros((1, 1, 8, 8)),
    "int32": np.zeros((1, 1, 8, 8), dtype=np.int32),
    "wrong size": np.zeros((1, 1, 8, 7), dtype=np.float32),
    "wrong rank": np.zeros((1, 8, 8), dtype=np.float32),
    "zero rows": np.zeros((0, 1, 8, 8), dtype=np.float32),
    "too many rows": np.zeros((9, 1, 8, 8), dtype=np.float32),
    "unknown name": {"img": np.zeros((1, 1, 8, 8), dtype=np.float32)},
    "missing input": {},
    "extra input": {"image": np.zeros((1, 1, 8, 8), dtype=np.float32), "mask": np.zeros(1, dtype=np.float32)},
    "not an array": "pixels",
    "ragged": [[1.0, 2.0], [3.0]],
    "none": None,
}


@PROPERTY
@given(
    plan=st.lists(st.one_of(st.integers(1, 4), st.sampled_from(sorted(INVALID))), min_size=1, max_size=16),
    seed=st.integers(0, 2**32 - 1),
)
def test_invalid_feeds_are_rejected_at_submit_and_never_poison_a_batch(
    digits: Session, digits_ref: Session, plan: list[int | str], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    valid = [image(rng, item) if isinstance(item, int) else None for item in plan]
    with DynamicBatcher(digits, max_batch_size=8) as batcher, Gate(digits, held=True) as gate:
        blocker = batcher.submit(image(rng, 1))
        gate.wait_calls(1)
        futures = []
        for item, x in zip(plan, valid, strict=True):
            if x is None:
                with pytest.raises(InputError):
                    batcher.submit(INVALID[str(item)])
            else:
                futures.append((batcher.submit(x), x))
        gate.open()
        for future, x in futures:
            assert_same_logits(future.result(timeout=WAIT_S)["logits"], digits_ref.run(x)["logits"])
        blocker.result(timeout=WAIT_S)
        assert batcher.stats()["requests"] == 1 + len(futures)
    assert sum(gate.batch_rows()) == 1 + sum(len(x) for _, x in futures)


def test_inputs_of_one_request_must_agree_on_the_batch(model_dir: Path) -> None:
    path = onnx_factory.save(onnx_factory.two_input_add(), model_dir / "agree.onnx")
    feeds = {"a": np.zeros((2, 4), np.float32), "b": np.zeros((3, 4), np.float32), "c": np.zeros(2, np.int64)}
    with edgerun.load(path) as session, DynamicBatcher(session, max_batch_size=8) as batcher:
        with pytest.raises(InputError):
            batcher.submit(feeds)
        with pytest.raises(InputError):
            asyncio.run(batcher.infer_async(feeds))
        assert batcher.stats()["requests"] == 0


# --- backend errors ---------------------------------------------------------------------------------


class MarkerError(RuntimeError):
    pass


def fail_on_nan(feeds: dict[str, np.ndarray]) -> BaseException | None:
    x = feeds["x"]
    return MarkerError(f"marker in a batch of {len(x)} rows") if np.isnan(x[:, 0]).any() else None


def test_a_backend_error_fails_exactly_the_requests_of_its_batch(rows: Session, rows_ref: Session) -> None:
    shapes = [(4, 2), (4, 1), (4, 2), (4, 3), (5, 1), (5, 2)]
    inputs = tagged_requests(shapes)
    inputs[1][0, 0] = np.nan  # the marker: the gate raises for the batch that carries it
    owner = owners(inputs)
    with (
        DynamicBatcher(rows, max_batch_size=6) as batcher,
        Gate(rows, held=True, fail_when=fail_on_nan) as gate,
    ):
        blocker = batcher.submit(tagged_rows(700, 1, 3))
        gate.wait_calls(1)
        futures = [batcher.submit(x) for x in inputs]
        gate.open()
        wait_futures(futures, timeout=WAIT_S)
        blocker.result(timeout=WAIT_S)
        stats = batcher.stats()
        after = batcher.infer(inputs[0])["y"]  # the batcher goes on serving
    failing = [call for call in gate.calls if call.error is not None]
    assert len(failing) == 1
    in_failed_batch = set(members(failing[0].feeds["x"], owner))
    assert in_failed_batch == {0, 1, 2}  # 2 + 1 + 2 rows; the 3-row request did not fit in 6
    for i, (future, x) in enumerate(zip(futures, inputs, strict=True)):
        if i in in_failed_batch:
            error = future.exception(timeout=0)
            assert isinstance(error, BackendError)
            assert error.__cause__ is failing[0].error
        else:
            np.testing.assert_array_equal(future.result(timeout=0)["y"], rows_ref.run(x)["y"])
    assert stats["failed"] == 3
    np.testing.assert_array_equal(after, rows_ref.run(inputs[0])["y"])


def test_a_backend_error_on_the_inline_path_is_chained_too(rows: Session, rows_ref: Session) -> None:
    marker = tagged_rows(1, 2, 3)
    marker[1, 0] = np.nan
    with DynamicBatcher(rows, max_batch_size=4) as batcher, Gate(rows, fail_when=fail_on_nan) as gate:
        with pytest.raises(BackendError) as info:
            batcher.infer(marker)
        assert info.value.__cause__ is gate.calls[0].error
        assert isinstance(info.value.__cause__, MarkerError)
        good = tagged_rows(5, 1, 3)
        np.testing.assert_array_equal(batcher.infer(good)["y"], rows_ref.run(good)["y"])
        stats = batcher.stats()
    assert (stats["inline"], stats["failed"], stats["batches"]) == (2, 1, 1)


# --- instances ------------------------------------------------------------------------------------


@pytest.fixture
def reopened(monkeypatch: pytest.MonkeyPatch) -> list[Session]:
    """Sessions made by Session.reopen (still the real reopen: a second load of the model)."""
    made: list[Session] = []
    real = Session.reopen

    def reopen(self: Session) -> Session:
        session = real(self)
        made.append(session)
        return session

    monkeypatch.setattr(Session, "reopen", reopen)
    return made


@pytest.mark.parametrize("per_instance", [None, False])
def test_instances_run_batches_concurrently_on_one_shared_ort_session(
    rows: Session, rows_ref: Session, reopened: list[Session], per_instance: bool | None
) -> None:
    inputs = tagged_requests([(3, 1), (3, 2), (3, 1)])
    with (
        DynamicBatcher(rows, max_batch_size=8, instances=3, session_per_instance=per_instance) as batcher,
        Gate(rows, held=True) as gate,
    ):
        futures = []
        for i, x in enumerate(inputs):
            futures.append(batcher.submit(x))
            gate.wait_calls(i + 1)  # a free worker took it at once
        gate.wait_in_flight(3)
        assert len({call.thread for call in gate.calls}) == 3
        gate.open()
        for future, x in zip(futures, inputs, strict=True):
            np.testing.assert_array_equal(future.result(timeout=WAIT_S)["y"], rows_ref.run(x)["y"])
    assert gate.max_in_flight == 3
    assert reopened == []  # ONNX Runtime runs concurrent calls: the workers share the session
    assert not rows.closed


def test_session_per_instance_gives_each_worker_its_own_session_and_closes_them(
    row_path: Path, rows_ref: Session, reopened: list[Session]
) -> None:
    inputs = tagged_requests([(3, 1), (3, 2), (3, 1)])
    entered = threading.Semaphore(0)
    with edgerun.load(row_path) as base:
        batcher = DynamicBatcher(base, max_batch_size=8, instances=3, session_per_instance=True)
        with batcher, ExitStack() as stack:
            assert len(reopened) == 2
            sessions = [base, *reopened]
            gates = [stack.enter_context(Gate(s, held=True, entered=entered)) for s in sessions]
            futures = []
            for x in inputs:
                futures.append(batcher.submit(x))
                assert entered.acquire(timeout=WAIT_S)
            assert [g.in_flight for g in gates] == [1, 1, 1]  # three sessions, one batch each, at once
            for gate in gates:
                gate.open()
            for future, x in zip(futures, inputs, strict=True):
                np.testing.assert_array_equal(future.result(timeout=WAIT_S)["y"], rows_ref.run(x)["y"])
            assert not any(s.closed for s in reopened)
        assert all(s.closed for s in reopened)  # the batcher's own sessions close with it
        assert not base.closed  # the caller's does not
    with edgerun.load(row_path) as base, DynamicBatcher(base, max_batch_size=8, session_per_instance=True):
        assert len(reopened) == 2  # one instance needs no second session


# --- preserve_order -------------------------------------------------------------------------------


@pytest.mark.parametrize("preserve", [True, False])
def test_preserve_order_holds_back_a_later_batch_that_finished_first(
    rows: Session, rows_ref: Session, preserve: bool
) -> None:
    inputs = tagged_requests([(3, 1), (3, 2)])
    completed: list[int] = []
    with (
        DynamicBatcher(rows, max_batch_size=8, instances=2, preserve_order=preserve) as batcher,
        Gate(rows, held=True) as gate,
    ):
        first = batcher.submit(inputs[0])
        gate.wait_calls(1)
        second = batcher.submit(inputs[1])
        gate.wait_calls(2)
        for i, future in enumerate((first, second)):
            future.add_done_callback(lambda _, i=i: completed.append(i))
        gate.release(1)
        wait_until(lambda: batcher.stats()["batches"] == 1)  # the second batch ran and was handed back
        assert second.done() is not preserve
        gate.release(0)
        for future, x in zip((first, second), inputs, strict=True):
            np.testing.assert_array_equal(future.result(timeout=WAIT_S)["y"], rows_ref.run(x)["y"])
    assert completed == ([0, 1] if preserve else [1, 0])


# --- close ---------------------------------------------------------------------------------------------


def test_close_with_drain_finishes_queued_work_without_waiting_out_the_delay(rows: Session, rows_ref: Session) -> None:
    before = set(threading.enumerate())
    inputs = tagged_requests([(3, 1), (3, 2), (5, 1)])
    batcher = DynamicBatcher(rows, max_batch_size=8, max_queue_delay_ms=5000)
    with Gate(rows, held=True) as gate:
        blocker = batcher.submit(tagged_rows(300, 1, 3))
        gate.wait_calls(1)
        futures = [batcher.submit(x) for x in inputs]
        closer = threading.Thread(target=batcher.close)
        started = time.perf_counter()
        closer.start()
        wait_until(lambda: batcher.closed)
        with pytest.raises(BatcherClosedError):
            batcher.submit(inputs[0])
        gate.open()
        closer.join(WAIT_S)
        elapsed = time.perf_counter() - started
    assert not closer.is_alive()
    assert elapsed < 2.5  # the queued requests ran at once, not after the 5 s delay
    blocker.result(timeout=0)
    for future, x in zip(futures, inputs, strict=True):
        np.testing.assert_array_equal(future.result(timeout=0)["y"], rows_ref.run(x)["y"])
    assert batcher_threads(before) == []


def test_close_without_drain_cancels_queued_requests_and_finishes_those_in_flight(
    rows: Session, rows_ref: Session
) -> None:
    before = set(threading.enumerate())
    inputs = tagged_requests([(3, 1), (3, 2), (5, 1)])
    running = tagged_rows(300, 1, 3)
    batcher = DynamicBatcher(rows, max_batch_size=8)
    with Gate(rows, held=True) as gate:
        in_flight = batcher.submit(running)
        gate.wait_calls(1)
        queued = [batcher.submit(x) for x in inputs]
        closer = threading.Thread(target=batcher.close, kwargs={"drain": False})
        closer.start()
        done, _ = wait_futures(queued, timeout=WAIT_S)
        assert len(done) == len(queued)
        assert all(future.cancelled() for future in queued)
        with pytest.raises(CancelledError):
            queued[0].result(timeout=0)
        assert not in_flight.done()
        gate.open()
        closer.join(WAIT_S)
    assert not closer.is_alive()
    np.testing.assert_array_equal(in_flight.result(timeout=0)["y"], rows_ref.run(running)["y"])
    assert batcher.stats()["cancelled"] == 3
    assert gate.batch_rows() == [1]  # nothing queued ran
    assert batcher_threads(before) == []


def test_a_closed_batcher_refuses_requests_and_close_is_idempotent(digits: Session) -> None:
    before = set(threading.enumerate())
    x = image(np.random.default_rng(9), 1)
    with DynamicBatcher(digits, max_batch_size=4, instances=2) as batcher:
        assert not batcher.closed
        assert len(batcher_threads(before)) == 3  # two workers and the timeout reaper
        batcher.infer(x)
    assert batcher.closed  # the context manager closed it
    assert batcher_threads(before) == []
    for call in (batcher.submit, batcher.infer, batcher.run, batcher):
        with pytest.raises(BatcherClosedError) as info:
            call(x)
        assert isinstance(info.value, SessionClosedError)
    with pytest.raises(BatcherClosedError):
        asyncio.run(batcher.infer_async(x))
    batcher.close()
    batcher.close(drain=False)
    assert batcher.stats()["requests"] == 1
    assert not digits.closed  # the caller's session stays open


# --- asyncio ---------------------------------------------------------------------------------------


def test_infer_async_serves_many_gathered_requests(digits: Session, digits_ref: Session) -> None:
    rng = np.random.default_rng(10)
    inputs = [image(rng, int(n)) for n in rng.integers(1, 5, 200)]

    async def main(batcher: DynamicBatcher) -> list[dict[str, np.ndarray]]:
        return await asyncio.gather(*(batcher.infer_async(x) for x in inputs))

    with DynamicBatcher(digits, max_batch_size=8, instances=2) as batcher, Gate(digits) as gate:
        results = asyncio.run(main(batcher))
        stats = batcher.stats()
    for got, x in zip(results, inputs, strict=True):
        assert_same_logits(got["logits"], digits_ref.run(x)["logits"])
    assert stats["requests"] == 200
    assert sum(gate.batch_rows()) == sum(len(x) for x in inputs)


def test_cancelling_an_awaiting_task_withdraws_its_queued_request(rows: Session, rows_ref: Session) -> None:
    marker, later = tagged_rows(77, 2, 3), tagged_rows(90, 1, 3)

    async def scenario(batcher: DynamicBatcher, gate: Gate) -> np.ndarray:
        blocker = batcher.submit(tagged_rows(60, 1, 3))
        gate.wait_calls(1)
        task = asyncio.create_task(batcher.infer_async(marker))
        await asyncio.sleep(0)  # one loop step: the task submits, then awaits its future
        assert batcher.stats()["queued"] == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.open()
        result = await batcher.infer_async(later)  # same shape, queued behind it: the worker passed it
        blocker.result(timeout=WAIT_S)
        return result["y"]

    with DynamicBatcher(rows, max_batch_size=8) as batcher, Gate(rows, held=True) as gate:
        got = asyncio.run(scenario(batcher, gate))
        stats = batcher.stats()
    np.testing.assert_array_equal(got, rows_ref.run(later)["y"])
    assert not contains_row(gate.executed("x"), marker)  # never run
    assert stats["cancelled"] == 1


# --- stats -----------------------------------------------------------------------------------------


def test_stats_count_requests_batches_and_times(rows: Session) -> None:
    hold_ms = 50.0
    with DynamicBatcher(rows, max_batch_size=8) as batcher, Gate(rows) as gate:
        assert batcher.stats()["queue_wait_ms"] == {"p50": 0.0, "p99": 0.0}
        batcher.infer(tagged_rows(1, 1, 3))
        batcher.infer(tagged_rows(2, 1, 3))
        gate.held = True
        blocker = batcher.submit(tagged_rows(3, 1, 3))
        gate.wait_calls(3)
        futures = [batcher.submit(x) for x in tagged_requests([(3, 1), (3, 2), (3, 3)], first_row_id=10)]
        time.sleep(hold_ms / 1e3)  # a duration to measure, not synchronisation: the held call lasts this long
        gate.open()
        for future in [blocker, *futures]:
            future.result(timeout=WAIT_S)
        stats = batcher.stats()
    assert stats["requests"] == 6
    assert stats["inline"] == 2
    assert stats["batches"] == 4
    assert stats["batch_size_histogram"] == {1: 3, 6: 1}
    assert stats["mean_batch_size"] == pytest.approx(9 / 4)
    assert (stats["rejected"], stats["timed_out"], stats["failed"], stats["cancelled"], stats["queued"]) == (0,) * 5
    waits, runs = stats["queue_wait_ms"], stats["execute_ms"]
    # queue waits: 0 (inline) x2, ~0 (blocker), >= hold (the 3 queued behind it)
    assert waits["p50"] < hold_ms <= waits["p99"] < 10 * WAIT_S * 1e3
    # execution: the held blocker's batch took >= hold; the others far less
    assert runs["p50"] < hold_ms <= runs["p99"]
    assert runs["p50"] > 0


# --- load(..., batching=...) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("batching", "max_batch", "delay_s"),
    [(True, None, 0.0), (4, 4, 0.0), ({"max_batch_size": 3, "max_queue_delay_ms": 1.0}, 3, 1e-3), ({}, None, 0.0)],
)
def test_load_with_batching_returns_a_batched_session_with_the_same_api(
    digits_ref: Session, batching: Any, max_batch: int | None, delay_s: float
) -> None:
    """``max_batch`` None: the batching policy's measured choice (tests/runtime/test_batching_policy.py)."""
    before = set(threading.enumerate())
    with edgerun.load("digits-student", batching=batching) as session:
        assert isinstance(session, BatchedSession)
        assert isinstance(session, Session)
        if max_batch is None:
            chosen = session.batcher.stats()["chosen"]
            assert "batch_why" in chosen
            if chosen["direct_calls"]:  # blocking calls go direct; the batcher's cap is that of queued requests
                assert chosen["max_batch_size"] == 1
                chosen = chosen["queued"]
            max_batch = chosen["max_batch_size"]
            delay_s = chosen["max_queue_delay_ms"] / 1e3
            assert delay_s == 0.0 if max_batch == 1 else 1e-4 <= delay_s <= 2e-3
        assert session.batcher.max_batch_size == max_batch
        x = image(np.random.default_rng(11), max_batch)
        want = digits_ref.run(x)["logits"]
        assert session.batcher.max_queue_delay_s == pytest.approx(delay_s)
        assert session.inputs == digits_ref.inputs
        assert session.outputs == digits_ref.outputs
        assert (session.backend, session.label) == (digits_ref.backend, digits_ref.label)
        outputs = [
            session.run(x),
            session(x),
            session.run({"image": x}),
            session.submit(x).result(timeout=WAIT_S),
            asyncio.run(session.run_async(x)),
        ]
        for got in outputs:
            assert list(got) == ["logits"]
            assert_same_logits(got["logits"], want)
        larger = image(np.random.default_rng(12), max_batch + 1)
        if session.batcher.direct_calls:  # direct calls merge nothing: a request runs as it is
            assert_same_logits(session.run(larger)["logits"], digits_ref.run(larger)["logits"])
        else:
            with pytest.raises(InputError):
                session.run(larger)
        inner = session.inner
    assert session.closed
    assert inner.closed
    with pytest.raises(SessionClosedError):
        session.run(x)
    session.close()  # idempotent
    assert batcher_threads(before) == []


@pytest.mark.parametrize("batching", [None, False])
def test_load_without_batching_returns_a_plain_session(batching: Any) -> None:
    with edgerun.load("digits-student", batching=batching) as session:
        assert type(session) is Session


def test_batching_a_fixed_batch_model_is_a_config_error(model_dir: Path) -> None:
    path = onnx_factory.save(onnx_factory.two_input_add(batch=2), model_dir / "fixed.onnx")
    with pytest.raises(ConfigError, match="dynamic batch"):
        edgerun.load(path, batching=True)
    with edgerun.load(path) as session, pytest.raises(ConfigError, match="dynamic batch"):
        DynamicBatcher(session, max_batch_size=2)


@pytest.mark.parametrize(
    "batching",
    [
        "yes",
        0,
        -1,
        2.5,
        [8],
        {"max_batch_size": 0},
        {"instances": 0},
        {"preferred_batch_sizes": [32]},  # above any max batch the policy can choose (it times up to 16)
        {"preferred_batch_sizes": [0, 2]},
        {"pad_to_preferred": True},
        {"max_queue_delay_ms": -1},
        {"default_timeout_ms": -1},
        {"max_queue_size": -1},
        {"max_batch_sise": 8},
        {"max_batch_size": "8"},
        {"instances": 2.0},
    ],
)
def test_bad_batching_options_are_config_errors(batching: Any) -> None:
    before = set(threading.enumerate())
    with pytest.raises(ConfigError):
        edgerun.load("digits-student", batching=batching)
    assert batcher_threads(before) == []


def test_a_batcher_needs_an_open_edgerun_session(row_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs an edgerun Session"):
        DynamicBatcher(object(), max_batch_size=2)  # type: ignore[arg-type]
    session = edgerun.load(row_path)
    session.close()
    with pytest.raises(BatcherClosedError):
        DynamicBatcher(session, max_batch_size=2)


# --- regressions: each of these was a bug found in review ------------------------------------------


def test_an_output_without_a_batch_axis_is_refused_up_front(model_dir: Path) -> None:
    path = onnx_factory.save(scalar_output_model(), model_dir / "scalar_out.onnx")
    with edgerun.load(path) as session, pytest.raises(ConfigError) as refused:
        DynamicBatcher(session, max_batch_size=4)
    assert "dynamic batch axis on every output, but output 'y' (y float32 []) has none" in str(refused.value)


@pytest.mark.parametrize(
    ("make", "file", "max_batch", "count", "batches"),
    [
        (transposed_output_model, "transposed.onnx", 8, 3, [1, 6]),  # y [4, batch]
        (symbolic_transposed_output_model, "symbolic_transposed.onnx", 4, 2, [1, 4]),  # y [rows, batch]
    ],
)
def test_an_output_whose_first_axis_is_not_the_batch_is_split_along_its_own_axis(
    model_dir: Path, make: Any, file: str, max_batch: int, count: int, batches: list[int]
) -> None:
    """y = x^T: the roles put its batch on axis 1, so each request gets its own columns (split by position,
    two 2-row requests in a 4-row batch would swap values)."""
    path = onnx_factory.save(make(), model_dir / file)
    with edgerun.load(path) as session, DynamicBatcher(session, max_batch_size=max_batch) as batcher:
        with Gate(session, held=True) as gate:
            blocker = batcher.submit(tagged_rows(1, 1, 4))
            gate.wait_calls(1)
            requests = [tagged_rows(10 * i, 2, 4) for i in range(1, count + 1)]
            futures = [batcher.submit(x) for x in requests]
            gate.open()
            blocker.result(timeout=WAIT_S)
            for x, future in zip(requests, futures, strict=True):
                np.testing.assert_array_equal(future.result(timeout=WAIT_S)["y"], x.T)
        assert gate.batch_rows() == batches


def test_a_backend_output_without_the_batch_rows_fails_the_batch_not_the_rows(row_path: Path) -> None:
    def drop_a_row(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: array[1:] for name, array in outputs.items()}

    with edgerun.load(row_path) as session, DynamicBatcher(session, max_batch_size=8) as batcher:
        with Gate(session, held=True, outputs=drop_a_row) as gate:
            blocker = batcher.submit(tagged_rows(1, 1, 3))
            gate.wait_calls(1)
            futures = [batcher.submit(tagged_rows(10 * i, 2, 3)) for i in range(1, 3)]
            gate.open()
            for future in (blocker, *futures):
                with pytest.raises(BackendError, match=r"output 'y' has no batch axis of \d+ rows"):
                    future.result(timeout=WAIT_S)
        assert gate.batch_rows() == [1, 4]


def test_a_done_callback_can_use_the_batcher(digits: Session) -> None:
    rng = np.random.default_rng(13)
    outcome: dict[str, bool] = {}
    called = threading.Event()
    with DynamicBatcher(digits, max_batch_size=8) as batcher, Gate(digits, held=True) as gate:
        blocker = batcher.submit(image(rng, 1))
        gate.wait_calls(1)
        future = batcher.submit(image(rng, 1))

        helper = threading.Thread(target=batcher.stats)  # e.g. a monitor thread reading stats

        def callback(_: object) -> None:
            helper.start()
            helper.join(1.0)  # bounded here; calling batcher.stats() in the callback itself hangs for ever
            outcome["stats_answered"] = not helper.is_alive()
            called.set()

        future.add_done_callback(callback)
        gate.open()
        assert called.wait(WAIT_S)
        helper.join(WAIT_S)
        blocker.result(timeout=WAIT_S)
    assert outcome["stats_answered"]


def test_rebinding_a_key_of_the_callers_dict_after_submit_does_not_change_the_request(
    digits: Session, digits_ref: Session
) -> None:
    rng = np.random.default_rng(14)
    frame, next_frame = image(rng, 1), image(rng, 1)
    with DynamicBatcher(digits, max_batch_size=8) as batcher, Gate(digits, held=True) as gate:
        blocker = batcher.submit({"image": image(rng, 1)})  # primes the validator's fast path
        gate.wait_calls(1)
        feeds = {"image": frame}
        future = batcher.submit(feeds)
        feeds["image"] = next_frame  # the app reuses its dict for the next frame
        gate.open()
        blocker.result(timeout=WAIT_S)
        assert_same_logits(future.result(timeout=WAIT_S)["logits"], digits_ref.run(frame)["logits"])


def test_cancelling_a_queued_request_frees_its_place_in_the_queue(rows: Session) -> None:
    async def scenario(batcher: DynamicBatcher) -> None:
        task = asyncio.create_task(batcher.infer_async(tagged_rows(20, 1, 3)))
        await asyncio.sleep(0)
        assert batcher.stats()["queued"] == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert batcher.stats()["queued"] == 0
        batcher.submit(tagged_rows(21, 1, 3))  # fits: max_queue_size is 1 and nothing is queued

    with DynamicBatcher(rows, max_batch_size=8, max_queue_size=1) as batcher, Gate(rows, held=True) as gate:
        blocker = batcher.submit(tagged_rows(10, 1, 3))
        gate.wait_calls(1)
        try:
            asyncio.run(scenario(batcher))
        finally:
            gate.open()
            blocker.result(timeout=WAIT_S)


def test_a_cancelled_request_counts_as_cancelled_even_past_its_deadline(rows: Session) -> None:
    with DynamicBatcher(rows, max_batch_size=8) as batcher, Gate(rows, held=True) as gate:
        blocker = batcher.submit(tagged_rows(10, 1, 3))
        gate.wait_calls(1)
        cancelled = batcher.submit(tagged_rows(11, 1, 3), timeout_ms=20)
        assert cancelled.cancel()
        expiring = batcher.submit(tagged_rows(12, 1, 3), timeout_ms=20)  # its deadline is later
        assert isinstance(expiring.exception(timeout=WAIT_S), RequestTimeoutError)
        gate.open()
        blocker.result(timeout=WAIT_S)
        stats = batcher.stats()
    assert (stats["cancelled"], stats["timed_out"]) == (1, 1)


def test_a_full_batch_does_not_wait_out_another_shapes_queue_delay(rows: Session) -> None:
    with (
        DynamicBatcher(rows, max_batch_size=4, max_queue_delay_ms=1000) as batcher,
        Gate(rows, held=True) as gate,
    ):
        blocker = batcher.submit(tagged_rows(1, 1, 3))
        gate.wait_calls(1)
        lonely = batcher.submit(tagged_rows(2, 1, 3))  # behind a busy worker: may wait for company
        full = batcher.submit(tagged_rows(10, 4, 5))  # another shape, already max_batch_size rows
        started = time.perf_counter()
        gate.open()
        full.result(timeout=WAIT_S)
        elapsed = time.perf_counter() - started
        lonely.result(timeout=WAIT_S)
        blocker.result(timeout=WAIT_S)
    assert elapsed < 0.3  # not the lonely request's 1 s delay


def test_closing_a_batched_session_lets_an_inline_request_in_flight_finish(row_path: Path, rows_ref: Session) -> None:
    x = tagged_rows(5, 2, 3)
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["y"] = session.run(x)["y"]
        except BaseException as exc:
            outcome["error"] = exc

    session = edgerun.load(row_path, batching=4)
    assert isinstance(session, BatchedSession)
    with Gate(session.inner, held=True) as gate:
        caller = threading.Thread(target=call)
        caller.start()
        gate.wait_calls(1)
        assert gate.calls[0].thread is caller  # inline: the idle batcher runs it in the caller's thread
        closer = threading.Thread(target=session.close)
        closer.start()
        closer.join(2.0)  # close() waits for the call
        gate.open()
        caller.join(WAIT_S)
        closer.join(WAIT_S)
    assert "error" not in outcome, repr(outcome.get("error"))
    np.testing.assert_array_equal(outcome["y"], rows_ref.run(x)["y"])


def test_a_failed_batching_load_closes_the_session_it_opened(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgerun.runtime.backends import onnxruntime_backend

    opened: list[Any] = []
    closed: list[Any] = []
    real_open, real_close = (
        onnxruntime_backend.OnnxRuntimeBackend.__init__,
        onnxruntime_backend.OnnxRuntimeBackend.close,
    )

    def record_open(self: Any, *args: Any) -> None:
        real_open(self, *args)
        opened.append(self)

    def record_close(self: Any) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(onnxruntime_backend.OnnxRuntimeBackend, "__init__", record_open)
    monkeypatch.setattr(onnxruntime_backend.OnnxRuntimeBackend, "close", record_close)
    path = onnx_factory.save(onnx_factory.two_input_add(batch=2), model_dir / "fixed_leak.onnx")
    with pytest.raises(ConfigError):
        edgerun.load(path, batching=True)
    assert len(opened) == 1
    assert closed == opened


def test_a_batched_session_can_be_reopened(row_path: Path) -> None:
    with edgerun.load(row_path, batching=4) as session, session.reopen() as again:
        assert again.inputs == session.inputs
        np.testing.assert_array_equal(again.run(tagged_rows(1, 1, 3))["y"], session.run(tagged_rows(1, 1, 3))["y"])


def test_a_request_cancelled_while_a_worker_takes_it_never_runs(rows: Session) -> None:
    """The caller's cancel lands first, but its withdrawal (a done-callback) has not run yet when the
    worker takes the request: the worker must see the cancel and skip it."""
    withdrawal_may_run = threading.Event()
    with DynamicBatcher(rows, max_batch_size=8) as batcher, Gate(rows, held=True) as gate:
        real_on_done = batcher._on_done

        def late_on_done(request: Any) -> None:
            if request.future is victim:
                withdrawal_may_run.wait(WAIT_S)
            real_on_done(request)

        blocker = batcher.submit(tagged_rows(10, 1, 3))
        gate.wait_calls(1)
        victim = batcher.submit(tagged_rows(11, 1, 3))
        batcher._on_done = late_on_done  # type: ignore[method-assign]
        canceller = threading.Thread(target=victim.cancel)
        canceller.start()
        wait_until(victim.cancelled)
        gate.open()
        blocker.result(timeout=WAIT_S)
        wait_until(lambda: batcher.stats()["queued"] == 0)
        withdrawal_may_run.set()
        canceller.join(WAIT_S)
        later = batcher.submit(tagged_rows(12, 1, 3)).result(timeout=WAIT_S)  # and the batcher goes on
        stats = batcher.stats()
    assert not contains_row(gate.executed("x"), tagged_rows(11, 1, 3))
    assert later["y"].shape == (1, 3)
    assert (stats["cancelled"], stats["batches"]) == (1, 2)


# --- blocking infer: result slots, callers woken in turn, batches run by the caller completing them ---


def test_blocking_callers_of_one_batch_each_get_their_own_rows(rows: Session, rows_ref: Session) -> None:
    inputs = tagged_requests([(3, 1), (3, 2), (3, 1), (3, 3), (3, 1)])
    results: dict[int, np.ndarray] = {}
    with DynamicBatcher(rows, max_batch_size=8) as batcher, Gate(rows, held=True) as gate:
        blocker = batcher.submit(tagged_rows(90, 1, 3))
        gate.wait_calls(1)
        callers = [
            threading.Thread(target=lambda i=i, x=x: results.__setitem__(i, batcher.infer(x)["y"]))
            for i, x in enumerate(inputs)
        ]
        for caller in callers:
            caller.start()
        wait_until(lambda: batcher.stats()["queued"] == len(inputs))
        gate.open()
        blocker.result(timeout=WAIT_S)
        for caller in callers:
            caller.join(WAIT_S)
    assert gate.batch_rows() == [1, 8]  # all five in one batch, every caller woken
    for i, x in enumerate(inputs):
        np.testing.assert_array_equal(results[i], rows_ref.run(x)["y"])


def test_close_without_drain_cancels_queued_blocking_callers(rows: Session) -> None:
    errors: list[BaseException] = []

    def call() -> None:
        try:
            batcher.infer(tagged_rows(70, 1, 3))
        except BaseException as exc:
            errors.append(exc)

    batcher = DynamicBatcher(rows, max_batch_size=8)
    with Gate(rows, held=True) as gate:
        in_flight = batcher.submit(tagged_rows(60, 1, 3))
        gate.wait_calls(1)
        callers = [threading.Thread(target=call) for _ in range(3)]
        for caller in callers:
            caller.start()
        wait_until(lambda: batcher.stats()["queued"] == 3)
        closer = threading.Thread(target=batcher.close, kwargs={"drain": False})
        closer.start()
        for caller in callers:
            caller.join(WAIT_S)
        assert len(errors) == 3
        assert all(isinstance(e, CancelledError) for e in errors)
        gate.open()
        closer.join(WAIT_S)
    in_flight.result(timeout=WAIT_S)
    assert batcher.stats()["cancelled"] == 3
    assert gate.batch_rows() == [1]


def test_a_held_request_runs_when_the_others_of_a_batch_a_caller_ran_never_come_back(rows: Session) -> None:
    """The last caller back runs the batch in its own thread; afterwards only one caller returns, and
    its request, held for the others, must still run once the hold ends (no worker was timed for it)."""
    with DynamicBatcher(rows, max_batch_size=8, preferred_batch_sizes=[3], max_queue_delay_ms=200) as batcher:
        with Gate(rows, held=True) as gate:
            _run_a_batch_of_three(batcher, gate)
        threads = [threading.Thread(target=batcher.infer, args=(tagged_rows(400 + i, 1, 3),)) for i in range(3)]
        for thread in threads:  # the three callers come back: the last one completes the batch
            thread.start()
        for thread in threads:
            thread.join(WAIT_S)
        started = time.perf_counter()
        lone = batcher.infer(tagged_rows(500, 1, 3))  # the other two never come back
        waited = time.perf_counter() - started
    assert gate.batch_rows()[:2] == [1, 3]
    np.testing.assert_array_equal(lone["y"], 2 * tagged_rows(500, 1, 3) + tagged_rows(500, 1, 3).sum())
    assert waited < 0.2 + 1.0  # the rest of the delay at most (plus slack), not forever


def test_stats_include_what_the_defaults_chose(digits: Session) -> None:
    with DynamicBatcher(digits, max_batch_size=4) as batcher:
        assert "chosen" not in batcher.stats()
        batcher.chosen.update(instances=2, why="two cores")
        assert batcher.stats()["chosen"] == {"instances": 2, "why": "two cores"}
