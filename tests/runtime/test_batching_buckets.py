"""``pad_sequences``: text requests of different lengths share batches padded to length buckets through the mask.

Token ids and the mask are padded with 0 (the mask tells the model those positions are padding), and
outputs that carry the sequence are cut back to each request's own length, so every result equals
the request run alone, unpadded. A model without a mask refuses the option: padding would change
its results.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import edgerun
from edgerun import ConfigError
from edgerun.runtime.batching import DynamicBatcher
from edgerun.runtime.session import Session

from .. import sequence_models
from ..batching_helpers import WAIT_S, Gate

PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
BUCKETS = (8, 16, 32)
VOCAB = 1000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("batching-buckets")


@pytest.fixture(scope="module")
def text_path(model_dir: Path) -> Path:
    return sequence_models.save(sequence_models.text_classifier_model(vocab=VOCAB), model_dir / "text.onnx")


@pytest.fixture(scope="module")
def text(text_path: Path) -> Iterator[Session]:
    with edgerun.load(text_path) as session:
        yield session


def tokens(length: int, seed: int, rows: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "input_ids": rng.integers(1, VOCAB, (rows, length), dtype=np.int64),
        "attention_mask": np.ones((rows, length), np.int64),
    }


def hidden_model() -> onnx.ModelProto:
    """hidden [batch, sequence, 4] = embedding(ids) * mask and pooled [batch, 4] = its sum over the sequence."""
    table = np.random.default_rng(7).standard_normal((VOCAB, 4)).astype(np.float32)
    seq: list[str | int] = ["batch", "sequence"]
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "input_ids"], ["emb"], axis=0),
            helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
            helper.make_node("Mul", ["emb", "mask3"], ["hidden"]),
            helper.make_node("ReduceSum", ["hidden", "axis1"], ["pooled"], keepdims=0),
        ],
        "hidden",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, seq),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, seq),
        ],
        [
            helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "sequence", 4]),
            helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", 4]),
        ],
        [
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([1], np.int64), "axis1"),
            numpy_helper.from_array(np.array([2], np.int64), "axis2"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@PROPERTY
@given(lengths=st.lists(st.integers(1, 40), min_size=1, max_size=10), seed=st.integers(0, 2**16))
def test_requests_of_any_length_share_buckets_and_equal_their_solo_runs(
    text: Session, lengths: list[int], seed: int
) -> None:
    requests = [tokens(length, seed + i) for i, length in enumerate(lengths)]
    solo = [text.run(r)["logits"] for r in requests]
    with DynamicBatcher(text, max_batch_size=16, pad_sequences=BUCKETS) as batcher:
        with Gate(text, held=True) as gate:
            blocker = batcher.submit(tokens(3, seed))
            gate.wait_calls(1)
            futures = [batcher.submit(r) for r in requests]
            gate.open()
            blocker.result(timeout=WAIT_S)
            results = [f.result(timeout=WAIT_S)["logits"] for f in futures]
        for want, got in zip(solo, results, strict=True):
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
        groups = {min([b for b in BUCKETS if b >= n], default=n) for n in lengths}
        assert len(gate.calls) - 1 == len(groups)  # one batch per bucket: lengths share them
        for call in gate.calls:
            width = call.feeds["input_ids"].shape[1]
            assert width in BUCKETS or width > BUCKETS[-1]
            assert call.feeds["attention_mask"].shape == call.feeds["input_ids"].shape


def test_outputs_that_carry_the_sequence_are_cut_back_to_each_request(model_dir: Path) -> None:
    path = sequence_models.save(hidden_model(), model_dir / "hidden.onnx")
    with edgerun.load(path) as session, DynamicBatcher(session, max_batch_size=16, pad_sequences=[8, 16]) as batcher:
        requests = [tokens(length, i, rows) for i, (length, rows) in enumerate([(3, 1), (7, 2), (5, 1), (20, 1)])]
        with Gate(session, held=True) as gate:
            blocker = batcher.submit(tokens(8, 99))
            gate.wait_calls(1)
            futures = [batcher.submit(r) for r in requests]
            gate.open()
            blocker.result(timeout=WAIT_S)
            results = [f.result(timeout=WAIT_S) for f in futures]
        assert sorted(call.feeds["input_ids"].shape for call in gate.calls[1:]) == [(1, 20), (4, 8)]
        padded = next(call.feeds for call in gate.calls[1:] if call.rows == 4)
        assert padded["attention_mask"].sum() == 3 + 2 * 7 + 5  # padding positions are masked out
        for request, result in zip(requests, results, strict=True):
            solo = session.run(request)
            rows, length = request["input_ids"].shape
            assert result["hidden"].shape == (rows, length, 4)
            np.testing.assert_allclose(result["hidden"], solo["hidden"], atol=1e-6)
            np.testing.assert_allclose(result["pooled"], solo["pooled"], atol=1e-5)


def test_load_with_default_buckets_serves_concurrent_callers(text_path: Path, text: Session) -> None:
    lengths = np.random.default_rng(5).integers(1, 130, 48)
    requests = [tokens(int(n), 1000 + i) for i, n in enumerate(lengths)]
    results: list[np.ndarray | None] = [None] * len(requests)
    with edgerun.load(text_path, batching={"max_batch_size": 16, "pad_sequences": True}) as batched:
        assert batched.batcher.pad_sequences == (8, 16, 32, 64, 128, 256, 512)

        def caller(start: int) -> None:
            for i in range(start, len(requests), 8):
                results[i] = batched.run(requests[i])["logits"]

        threads = [threading.Thread(target=caller, args=(k,)) for k in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for request, got in zip(requests, results, strict=True):
        assert got is not None
        np.testing.assert_allclose(got, text.run(request)["logits"], rtol=0, atol=1e-4)


def test_a_model_without_a_mask_refuses_padding(model_dir: Path) -> None:
    path = sequence_models.save(sequence_models.time_major_model(), model_dir / "time_major.onnx")
    with edgerun.load(path) as session, pytest.raises(ConfigError) as refused:
        DynamicBatcher(session, max_batch_size=4, pad_sequences=True)
    message = str(refused.value)
    assert "pad_sequences needs a mask input" in message
    assert "padding a sequence changes a model's results unless a mask tells it" in message


def test_a_mask_on_its_own_axis_refuses_padding(model_dir: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input_ids"], ["out"])],
        "apart",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "memory"]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.INT64, ["batch", "sequence"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = sequence_models.save(model, model_dir / "apart.onnx")
    with edgerun.load(path) as session, pytest.raises(ConfigError, match=r"mask 'attention_mask' .* to share"):
        DynamicBatcher(session, max_batch_size=4, pad_sequences=True)


@pytest.mark.parametrize("value", [[], [0, 8], "yes", 16, [8.5]])
def test_bad_bucket_lists_are_config_errors(text: Session, value: object) -> None:
    with pytest.raises(ConfigError, match="pad_sequences must be True, False or a list of bucket lengths"):
        DynamicBatcher(text, max_batch_size=4, pad_sequences=value)  # type: ignore[arg-type]
