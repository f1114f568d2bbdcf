"""The sequence, stateful and text test models behave in ONNX Runtime as their docstrings say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from . import sequence_models as sm

VOCAB = 1000


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def floats(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.fixture(scope="module")
def text_session() -> ort.InferenceSession:
    return session(sm.text_classifier_model(vocab=VOCAB))


def test_builders_are_valid_and_deterministic(tmp_path: Path) -> None:
    for build in (sm.gru_step_model, sm.lstm_step_model, sm.text_classifier_model, sm.time_major_model):
        model = build()
        onnx.checker.check_model(model, full_check=True)
        assert model.ir_version == 8
        assert model.producer_name == "edgerun-tests"
        assert model.opset_import[0].version == 17
        assert build().SerializeToString() == model.SerializeToString()
    path = sm.save(sm.constant_compare_model(), tmp_path / "vad.onnx")
    assert path.exists()
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def test_gru_step_matches_numpy_reference() -> None:
    x, h = floats(3, 8, seed=1), floats(1, 3, 16, seed=2)
    run = session(sm.gru_step_model())
    assert [(i.name, i.shape) for i in run.get_inputs()] == [("x", ["batch", 8]), ("h", [1, "batch", 16])]
    assert [(o.name, o.shape) for o in run.get_outputs()] == [("logits", ["batch", 3]), ("hn", [1, "batch", 16])]
    logits, hn = run.run(None, {"x": x, "h": h})
    ref_logits, ref_hn = sm.gru_step_reference(x, h)
    np.testing.assert_allclose(logits, ref_logits, atol=1e-5)
    np.testing.assert_allclose(hn, ref_hn, atol=1e-5)
    # streaming: feeding hn back is a second step of the same recurrence
    logits2, hn2 = run.run(None, {"x": x, "h": hn})
    np.testing.assert_allclose(hn2, sm.gru_step_reference(x, ref_hn)[1], atol=1e-5)
    assert not np.allclose(logits2, logits)


def test_gru_step_other_sizes() -> None:
    x, h = floats(2, 5), floats(1, 2, 7)
    logits, hn = session(sm.gru_step_model(features=5, hidden=7, classes=4)).run(None, {"x": x, "h": h})
    ref_logits, ref_hn = sm.gru_step_reference(x, h, classes=4)
    assert logits.shape == (2, 4)
    np.testing.assert_allclose(logits, ref_logits, atol=1e-5)
    np.testing.assert_allclose(hn, ref_hn, atol=1e-5)


def test_lstm_step_matches_reference_and_pairs_state_by_name() -> None:
    x, h, c = floats(4, 8, seed=3), floats(1, 4, 16, seed=4), floats(1, 4, 16, seed=5)
    run = session(sm.lstm_step_model())
    assert [o.name for o in run.get_outputs()] == ["y", "hn", "cn"]
    states = [i.name for i in run.get_inputs() if i.name != "x"]
    assert states == ["h", "c"]
    assert all(f"{name}n" in [o.name for o in run.get_outputs()] for name in states)
    y, hn, cn = run.run(None, {"x": x, "h": h, "c": c})
    for got, want in zip((y, hn, cn), sm.lstm_step_reference(x, h, c), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_array_equal(y, hn[0])


def test_text_classifier_inputs(text_session: ort.InferenceSession) -> None:
    assert [(i.name, i.type, i.shape) for i in text_session.get_inputs()] == [
        ("input_ids", "tensor(int64)", ["batch", "sequence"]),
        ("attention_mask", "tensor(int64)", ["batch", "sequence"]),
    ]
    typed = session(sm.text_classifier_model(type_vocab=2))
    assert [i.name for i in typed.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    ids = np.array([[5, 6, 7]], np.int64)
    mask = np.ones_like(ids)
    zero = typed.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
    one = typed.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.ones_like(ids)})[0]
    assert zero.shape == (1, 4)
    assert not np.allclose(zero, one), "token types feed their own embedding"


@settings(max_examples=40, deadline=None)
@given(
    ids=st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=20),
    pad=st.lists(st.integers(0, VOCAB - 1), min_size=0, max_size=12),
)
def test_text_classifier_padding_invariance(text_session: ort.InferenceSession, ids: list[int], pad: list[int]) -> None:
    bare = np.array([ids], np.int64)
    padded = np.array([ids + pad], np.int64)
    mask = np.array([[1] * len(ids) + [0] * len(pad)], np.int64)
    want = text_session.run(None, {"input_ids": bare, "attention_mask": np.ones_like(bare)})[0]
    got = text_session.run(None, {"input_ids": padded, "attention_mask": mask})[0]
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_text_classifier_batch_rows_are_independent(text_session: ort.InferenceSession) -> None:
    ids = np.array([[1, 2, 3, 4], [9, 8, 0, 0]], np.int64)
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], np.int64)
    batched = text_session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
    second = text_session.run(None, {"input_ids": ids[1:, :2], "attention_mask": mask[1:, :2]})[0]
    np.testing.assert_allclose(batched[1:], second, atol=1e-4)


@pytest.mark.parametrize("bad", [VOCAB, VOCAB + 7, 2**40])
def test_text_classifier_rejects_ids_outside_vocab(text_session: ort.InferenceSession, bad: int) -> None:
    ids = np.array([[1, bad, 2]], np.int64)
    with pytest.raises(Exception, match="out of data bounds"):
        text_session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})


def test_time_major_batches_concatenate_on_axis_1() -> None:
    run = session(sm.time_major_model())
    first, second = floats(7, 2, 6, seed=6), floats(7, 3, 6, seed=7)
    y1, p1 = run.run(None, {"x": first})
    y2, p2 = run.run(None, {"x": second})
    y, pooled = run.run(None, {"x": np.concatenate([first, second], axis=1)})
    assert y.shape == (7, 5, 5)
    assert pooled.shape == (5, 5)
    np.testing.assert_allclose(y, np.concatenate([y1, y2], axis=1), atol=1e-5)
    np.testing.assert_allclose(pooled, np.concatenate([p1, p2], axis=0), atol=1e-5)
    np.testing.assert_allclose(y1, first @ sm.time_major_weight(), atol=1e-5)
    np.testing.assert_allclose(p1, (first @ sm.time_major_weight()).mean(axis=0), atol=1e-5)


def test_lying_output_runs_with_its_real_shape() -> None:
    model = sm.lying_output_model()
    declared = [d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert declared == [1, "seqlen"]
    onnx.checker.check_model(model)
    with pytest.raises(onnx.shape_inference.InferenceError, match="rank"):
        onnx.shape_inference.infer_shapes(model, strict_mode=True)
    run = session(model)
    assert run.get_outputs()[0].shape == [], "ORT drops the shape it could not merge"
    x = floats(2, 4)
    (probs,) = run.run(None, {"x": x})
    assert probs.shape == (sm.LYING_STEPS, 2, 10)
    np.testing.assert_allclose(probs, np.broadcast_to(x @ sm.lying_output_weight(), probs.shape), atol=1e-5)


def test_constant_compare_branches_on_rate() -> None:
    model = sm.constant_compare_model()
    constants = [n for n in model.graph.node if n.op_type == "Constant"]
    assert int(onnx.numpy_helper.to_array(constants[0].attribute[0].t)) == 16000
    (branch_if,) = [n for n in model.graph.node if n.op_type == "If"]
    inner = {n.op_type for a in branch_if.attribute for n in a.g.node}
    assert {"MatMul", "Conv"} <= inner
    run = session(model)
    x = floats(3, 16)
    weight, weight2 = sm.constant_compare_weights()
    at_16k = run.run(None, {"input": x, "sr": np.array(16000, np.int64)})[0]
    at_8k = run.run(None, {"input": x, "sr": np.array(8000, np.int64)})[0]
    np.testing.assert_allclose(at_16k, x @ weight, atol=1e-5)
    np.testing.assert_allclose(at_8k, x @ weight2, atol=1e-5)
