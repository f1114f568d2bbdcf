"""Direct calls (``DynamicBatcher(direct_calls=True)``): requests run at once in their callers' threads.

What the device policy picks where batching does not pay (max batch 1 on ONNX Runtime): no queue,
no worker hand-off, and still every rule a caller relies on: exact results per caller under
concurrency, counts in ``stats()``, typed errors, and a close that waits for running calls.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgerun
from edgerun import BackendError, BatcherClosedError, ConfigError, InputError
from edgerun.runtime.batching import DynamicBatcher
from edgerun.runtime.batching.tryout import closed_loop_rate, tryout_modes
from edgerun.runtime.session import Session

from .. import onnx_factory
from ..batching_helpers import Gate, tagged_rows, wait_until


def test_each_request_runs_in_its_callers_thread(rows: Session) -> None:
    x = tagged_rows(1, 1, 4)
    with Gate(rows) as gate, DynamicBatcher(rows, max_batch_size=1, direct_calls=True) as batcher:
        got = batcher.infer({"x": x})
        (call,) = gate.calls
    assert call.thread is threading.current_thread()
    np.testing.assert_array_equal(got["y"], rows.run(x)["y"])


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 3), min_size=1, max_size=24))
def test_concurrent_callers_each_get_their_own_rows(rows: Session, sizes: list[int]) -> None:
    inputs = []
    first = 1
    for count in sizes:
        inputs.append(tagged_rows(first, count, 4))
        first += count
    with DynamicBatcher(rows, max_batch_size=1, direct_calls=True) as batcher, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(batcher.infer, inputs))
        stats = batcher.stats()
    for x, got in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(got["y"], 2 * x + x.sum(axis=1, keepdims=True))
    assert (stats["requests"], stats["batches"], stats["failed"]) == (len(sizes), len(sizes), 0)
    assert stats["direct_calls"] is True


def test_bad_input_and_backend_failures_are_typed_and_counted(rows: Session) -> None:
    broken = RuntimeError("device lost")
    with (
        Gate(rows, fail_when=lambda feeds: broken if feeds["x"][0, 0] == 99 else None),
        DynamicBatcher(rows, max_batch_size=1, direct_calls=True) as batcher,
    ):
        with pytest.raises(InputError, match="x"):
            batcher.infer({"x": np.zeros((1, 3), np.int64)})
        bad = np.full((1, 4), 99, np.float32)
        with pytest.raises(BackendError) as raised:
            batcher.infer({"x": bad})
        assert raised.value.__cause__ is broken or broken in _causes(raised.value)
        batcher.infer({"x": np.ones((1, 4), np.float32)})
        stats = batcher.stats()
    assert (stats["requests"], stats["failed"], stats["batches"]) == (3, 2, 1)


def _causes(exc: BaseException) -> list[BaseException]:
    found = []
    while exc.__cause__ is not None:
        exc = exc.__cause__
        found.append(exc)
    return found


def test_close_waits_for_running_calls_and_refuses_new_ones(rows: Session) -> None:
    x = {"x": np.ones((1, 4), np.float32)}
    with Gate(rows, held=True) as gate:
        batcher = DynamicBatcher(rows, max_batch_size=1, direct_calls=True)
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(batcher.infer, x)
            gate.wait_calls(1)
            closing = pool.submit(batcher.close)
            wait_until(lambda: batcher.closed)
            with pytest.raises(BatcherClosedError):
                batcher.infer(x)
            assert not closing.done()  # still waiting for the held call
            gate.open()
            closing.result(timeout=10)
            np.testing.assert_array_equal(running.result(timeout=10)["y"], np.full((1, 4), 6, np.float32))


def test_submit_still_queues_beside_direct_calls(rows: Session) -> None:
    x = tagged_rows(1, 1, 4)
    with DynamicBatcher(rows, max_batch_size=1, direct_calls=True) as batcher:
        got = batcher.submit(x).result(timeout=10)
    np.testing.assert_array_equal(got["y"], rows.run(x)["y"])


def test_queued_requests_batch_up_to_the_cap_beside_direct_calls(rows: Session) -> None:
    """Blocking calls run in their callers' threads while submit and asyncio requests share batches."""
    mine = tagged_rows(7, 1, 4)
    queued = [tagged_rows(10 + i, 1, 4) for i in range(6)]
    with DynamicBatcher(rows, max_batch_size=4, direct_calls=True) as batcher, Gate(rows, held=True) as gate:
        blocker = batcher.submit(tagged_rows(1, 1, 4))
        gate.wait_calls(1)  # the only worker is held: what is queued now waits together
        futures = [batcher.submit(x) for x in queued[:3]]

        async def awaited() -> list[dict[str, np.ndarray]]:
            tasks = [asyncio.create_task(batcher.infer_async(x)) for x in queued[3:]]
            await asyncio.sleep(0)
            assert batcher.stats()["queued"] == 6
            direct = await asyncio.to_thread(batcher.infer, mine)  # past the queue, in its own thread
            assert gate.batch_rows() == [1]  # it returned while the worker is held, never through the queue
            np.testing.assert_array_equal(direct["y"], rows.run(mine)["y"])
            gate.open()
            return await asyncio.gather(*tasks)

        later = asyncio.run(awaited())
        results = [f.result(timeout=10) for f in futures] + later
        blocker.result(timeout=10)
        stats = batcher.stats()
    for x, got in zip(queued, results, strict=True):
        np.testing.assert_array_equal(got["y"], rows.run(x)["y"])
    assert sorted(gate.batch_rows()[1:]) == [2, 4]  # six queued rows: batches capped at 4, not one by one
    assert stats["direct_calls"] is True
    assert stats["requests"] == 8


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_batch_size": 1, "preserve_order": True}, "cannot preserve_order"),
        ({"max_batch_size": 1, "direct_calls": "yes"}, "direct_calls must be True or False"),
    ],
)
def test_options_direct_calls_cannot_honour_are_refused(rows: Session, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DynamicBatcher(rows, **{"direct_calls": True, **options})


def test_a_serialising_backend_cannot_take_direct_calls(rows: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgerun.runtime.session import SERIAL

    monkeypatch.setattr(rows, "capabilities", SERIAL, raising=False)
    with pytest.raises(ConfigError, match="serialises them"):
        DynamicBatcher(rows, max_batch_size=1, direct_calls=True)


def test_the_tryout_measures_both_modes_on_the_real_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("edgerun.runtime.batching.tryout.SECONDS", 0.05)
    with edgerun.load("digits-student") as session:
        tryout = tryout_modes(session, 8, 1, 0.1)
    assert tryout.batched_per_s > 0
    assert tryout.direct_per_s > 0
    assert tryout.callers == 16
    assert tryout.batching_pays == (tryout.batched_per_s >= 1.1 * tryout.direct_per_s)


def test_a_callers_failure_in_the_tryout_is_raised_not_lost() -> None:
    def call(feeds: object) -> None:
        raise BackendError("boom")

    with pytest.raises(BackendError, match="boom"):
        closed_loop_rate(call, [{}, {}], 0.01)


def test_direct_calls_fill_known_constants(tmp_path: Path) -> None:
    """A constant the roles know (``sr`` compared with 16000): a direct call may leave it out, as a batched one may."""
    from tests.sequence_models import RATE, constant_compare_model

    path = onnx_factory.save(constant_compare_model(), tmp_path / "constant.onnx")
    x = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)
    with edgerun.load(path) as session, DynamicBatcher(session, max_batch_size=1, direct_calls=True) as batcher:
        got = batcher.infer({"input": x})
        want = session.run({"input": x, "sr": np.array(RATE, np.int64)})
    np.testing.assert_array_equal(got["output"], want["output"])
