"""DynamicBatcher along each input's and output's own batch axis (``session.roles``), with constants and streams.

Stateful models keep the batch of their state on axis 1 (Silero's ``state [2, batch, 128]``, a GRU's
``h [1, batch, 16]``); constants (Silero's rank-0 ``sr``) are never stacked, and requests with
different constants never share a batch. Streams through one batcher must give exactly what each
stream gives alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import edgerun
from edgerun import ConfigError, InputError
from edgerun.runtime.batching import DynamicBatcher
from edgerun.runtime.session import Session
from edgerun.runtime.streaming import Stream

from .. import onnx_factory, sequence_models
from ..batching_helpers import WAIT_S, Gate, scalar_output_model

STREAMS = 8


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("batching-axes")


def run_streams(
    make_stream: Callable[[], Stream], chunks: list[np.ndarray], name: str, concurrent: bool
) -> list[tuple[list[dict[str, np.ndarray]], dict[str, np.ndarray]]]:
    """Each stream's outputs step by step and its final state; all streams at once in threads if ``concurrent``."""
    results: list[tuple[list[dict[str, np.ndarray]], dict[str, np.ndarray]]] = [([], {})] * len(chunks)
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            stream = make_stream()
            outputs = [stream.step({name: chunk}) for chunk in chunks[i]]
            results[i] = (outputs, dict(stream.state))
        except BaseException as exc:  # surfaced in the test's thread
            errors.append(exc)

    if concurrent:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(chunks))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:
        for i in range(len(chunks)):
            one(i)
    assert not errors, errors
    return results


def assert_same_streams(
    got: list[tuple[list[dict[str, np.ndarray]], dict[str, np.ndarray]]],
    want: list[tuple[list[dict[str, np.ndarray]], dict[str, np.ndarray]]],
    atol: float,
) -> None:
    for (outputs, state), (solo_outputs, solo_state) in zip(got, want, strict=True):
        assert len(outputs) == len(solo_outputs)
        for step, solo_step in zip(outputs, solo_outputs, strict=True):
            for key, value in solo_step.items():
                assert step[key].shape == value.shape
                np.testing.assert_allclose(step[key], value, rtol=0, atol=atol)
        for key, value in solo_state.items():
            np.testing.assert_allclose(state[key], value, rtol=0, atol=atol)


def vad_chunks(steps: int) -> list[np.ndarray]:
    return [np.random.default_rng(100 + i).uniform(-1, 1, (steps, 1, 576)).astype(np.float32) for i in range(STREAMS)]


def check_vad_streams(steps: int) -> None:
    chunks = vad_chunks(steps)
    with edgerun.load("silero-vad") as session:
        solo = run_streams(session.stream, chunks, "input", concurrent=False)
        with DynamicBatcher(session, max_batch_size=STREAMS, max_queue_delay_ms=1) as batcher:
            batched = run_streams(batcher.stream, chunks, "input", concurrent=True)
            stats = batcher.stats()
    assert stats["requests"] == STREAMS * steps
    assert stats["mean_batch_size"] > 1.5, stats["batch_size_histogram"]  # the streams really shared batches
    assert_same_streams(batched, solo, atol=1e-5)


def test_silero_vad_streams_through_one_batcher_equal_solo_streams() -> None:
    """8 threads, one stream each, 1000 steps: outputs and final state equal each stream run alone."""
    check_vad_streams(1000)


def test_silero_vad_batcher_merges_state_on_axis_1_and_shares_the_constant() -> None:
    with edgerun.load("silero-vad") as session, DynamicBatcher(session, max_batch_size=8) as batcher:
        with Gate(session, held=True) as gate:
            state = np.zeros((2, 1, 128), np.float32)
            blocker = batcher.submit({"input": np.zeros((1, 576), np.float32), "state": state})
            gate.wait_calls(1)
            futures = [
                batcher.submit({"input": np.full((1, 576), i / 10, np.float32), "state": state}) for i in range(3)
            ]
            gate.open()
            blocker.result(timeout=WAIT_S)
            results = [f.result(timeout=WAIT_S) for f in futures]
        merged = gate.calls[1].feeds
        assert merged["input"].shape == (3, 576)
        assert merged["state"].shape == (2, 3, 128)
        assert merged["sr"].shape == ()  # filled from the card, not stacked
        assert int(merged["sr"]) == 16000
        for i, result in enumerate(results):
            assert result["output"].shape == (1, 1)
            assert result["stateN"].shape == (2, 1, 128)
            solo = session.run({"input": np.full((1, 576), i / 10, np.float32), "state": state, "sr": np.array(16000)})
            np.testing.assert_allclose(result["stateN"], solo["stateN"], atol=1e-6)


def gru_path(model_dir: Path) -> Path:
    return sequence_models.save(sequence_models.gru_step_model(), model_dir / "gru.onnx")


def test_gru_streams_with_state_on_axis_1_equal_solo_streams(model_dir: Path) -> None:
    chunks = [np.random.default_rng(i).standard_normal((300, 1, 8)).astype(np.float32) for i in range(STREAMS)]
    with edgerun.load(gru_path(model_dir)) as session:
        solo = run_streams(session.stream, chunks, "x", concurrent=False)
        with DynamicBatcher(session, max_batch_size=STREAMS, max_queue_delay_ms=1) as batcher:
            batched = run_streams(batcher.stream, chunks, "x", concurrent=True)
            assert batcher.stats()["mean_batch_size"] > 1.5
    assert_same_streams(batched, solo, atol=1e-5)


def test_batched_session_streams_through_its_batcher(model_dir: Path) -> None:
    chunks = [np.random.default_rng(i).standard_normal((50, 1, 8)).astype(np.float32) for i in range(4)]
    with edgerun.load(gru_path(model_dir)) as session:
        solo = run_streams(session.stream, chunks, "x", concurrent=False)
    with edgerun.load(gru_path(model_dir), batching={"max_batch_size": 4, "max_queue_delay_ms": 1}) as batched:
        assert batched.roles.state_pairs == {"h": "hn"}
        got = run_streams(batched.stream, chunks, "x", concurrent=True)
        assert batched.batcher.stats()["requests"] == 200
    assert_same_streams(got, solo, atol=1e-5)


def test_padding_rows_go_on_the_state_axis(model_dir: Path) -> None:
    with edgerun.load(gru_path(model_dir)) as session:
        options = {"max_batch_size": 4, "preferred_batch_sizes": [4], "pad_to_preferred": True}
        with DynamicBatcher(session, **options) as batcher, Gate(session) as gate:  # type: ignore[arg-type]
            x = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
            h = np.random.default_rng(2).standard_normal((1, 2, 16)).astype(np.float32)
            result = batcher.infer({"x": x, "h": h})
        assert gate.calls[0].feeds["h"].shape == (1, 4, 16)
        assert result["hn"].shape == (1, 2, 16)
        assert result["logits"].shape == (2, 3)
        solo = session.run({"x": x, "h": h})
        np.testing.assert_allclose(result["hn"], solo["hn"], atol=1e-6)


def test_time_major_requests_stack_on_axis_1(model_dir: Path) -> None:
    path = sequence_models.save(sequence_models.time_major_model(), model_dir / "time_major.onnx")
    with edgerun.load(path) as session, DynamicBatcher(session, max_batch_size=8) as batcher:
        requests = [np.random.default_rng(i).standard_normal((5, rows, 6)).astype(np.float32) for i, rows in
                    enumerate((1, 2, 3))]  # fmt: skip
        with Gate(session, held=True) as gate:
            blocker = batcher.submit(requests[0])
            gate.wait_calls(1)
            futures = [batcher.submit(x) for x in requests[1:]]
            gate.open()
            results = [blocker.result(timeout=WAIT_S)] + [f.result(timeout=WAIT_S) for f in futures]
        assert gate.calls[1].feeds["x"].shape == (5, 5, 6)
        for x, result in zip(requests, results, strict=True):
            solo = session.run(x)
            assert result["y"].shape == (5, x.shape[1], 5)
            assert result["pooled"].shape == (x.shape[1], 5)
            np.testing.assert_allclose(result["y"], solo["y"], atol=1e-6)
            np.testing.assert_allclose(result["pooled"], solo["pooled"], atol=1e-6)
        with pytest.raises(InputError, match=r"same batch size >= 1 along its batch axis"):
            batcher.infer(np.zeros((5, 0, 6), np.float32))


def test_different_constants_never_share_a_batch_and_a_known_one_may_be_omitted(model_dir: Path) -> None:
    path = sequence_models.save(sequence_models.constant_compare_model(), model_dir / "constant_compare.onnx")
    with edgerun.load(path) as session, DynamicBatcher(session, max_batch_size=8) as batcher:
        rng = np.random.default_rng(3)
        inputs = [rng.standard_normal((1, 16)).astype(np.float32) for _ in range(6)]
        rates = [16000, 8000, 16000, None, 8000, 16000]  # None: omitted, the roles know 16000
        with Gate(session, held=True) as gate:
            blocker = batcher.submit(np.zeros((1, 16), np.float32))  # one array: the constant is filled
            gate.wait_calls(1)
            futures = [
                batcher.submit({"input": x} if rate is None else {"input": x, "sr": np.array(rate, np.int64)})
                for x, rate in zip(inputs, rates, strict=True)
            ]
            gate.open()
            blocker.result(timeout=WAIT_S)
            results = [f.result(timeout=WAIT_S) for f in futures]
        by_rate = sorted((int(call.feeds["sr"]), call.rows) for call in gate.calls[1:])
        assert by_rate == [(8000, 2), (16000, 4)]
        for x, rate, result in zip(inputs, rates, results, strict=True):
            solo = session.run({"input": x, "sr": np.array(rate or 16000, np.int64)})
            np.testing.assert_allclose(result["output"], solo["output"], atol=1e-6)


def test_a_fixed_batch_of_one_is_refused_with_the_fix(model_dir: Path) -> None:
    path = onnx_factory.save(onnx_factory.two_input_add(batch=1), model_dir / "fixed.onnx")
    with edgerun.load(path) as session:
        with pytest.raises(ConfigError) as refused:
            DynamicBatcher(session, max_batch_size=4)
        message = str(refused.value)
        assert "batching needs a dynamic batch axis" in message
        assert "input 'a' (a float32 [1, 4]) has a fixed batch of 1 at axis 0" in message
        assert "re-export it with a dynamic batch" in message
        assert "max_batch_size 0" in message
        with DynamicBatcher(session, max_batch_size=1, instances=2) as batcher:  # the fix without batching
            a = np.ones((1, 4), np.float32)
            result = batcher.infer({"a": a, "b": a, "c": np.zeros(1, np.int64)})
            np.testing.assert_array_equal(result["y"], 2 * a)


def test_an_output_with_no_batch_axis_is_refused_by_name(model_dir: Path) -> None:
    path = onnx_factory.save(scalar_output_model(), model_dir / "scalar_out.onnx")
    with edgerun.load(path) as session, pytest.raises(ConfigError) as refused:
        DynamicBatcher(session, max_batch_size=4)
    assert "output 'y' (y float32 []) has none" in str(refused.value)
    assert "Re-export the model" in str(refused.value)


def test_the_axis_0_models_keep_the_plain_path(model_dir: Path) -> None:
    path = onnx_factory.save(onnx_factory.two_input_add(), model_dir / "add.onnx")
    with edgerun.load(path) as session, DynamicBatcher(session, max_batch_size=4) as batcher:
        assert batcher.layout.plain
    with edgerun.load(gru_path(model_dir)) as gru, DynamicBatcher(gru, max_batch_size=4) as batcher:
        assert not batcher.layout.plain


def test_a_session_without_roles_for_its_tensors_batches_by_shape(model_dir: Path) -> None:
    with edgerun.load(gru_path(model_dir)) as session:
        bare = Session(session.model, session.plan, session.opened_backend, roles=None)
        object.__setattr__(bare, "roles", type(session.roles)((), {}))
        with DynamicBatcher(bare, max_batch_size=4) as batcher:
            assert batcher.layout.input_axes == {"x": 0, "h": 1}
            assert batcher.layout.output_axes == {"logits": 0, "hn": 1}
