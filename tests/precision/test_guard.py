"""The precision guard on models built to break FP16 or INT8 in one known place."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgerun.precision.calibration import CalibrationData
from edgerun.precision.checks import RANDOM_NOTE, CheckSamples, check_samples
from edgerun.precision.guard import QualityCheckError, guard_fp16, guard_int8
from edgerun.precision.quantize import QuantizeOptions
from edgerun.quality import QualityBudget
from edgerun.runtime.modelfile import ModelFile
from tests import precision_models as pm


def saved(model: onnx.ModelProto, folder: Path, name: str) -> ModelFile:
    path = folder / f"{name}.onnx"
    onnx.save(model, str(path))
    return ModelFile.open(path)


def outputs(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [np.asarray(v, dtype=np.float64) for v in session.run(None, feeds)]


def test_fp16_overflow_in_one_node_keeps_that_node_and_matches_fp32(tmp_path: Path) -> None:
    model = saved(pm.fp16_overflow_one_node(), tmp_path, "overflow")
    feeds = {model.inputs[0].name: pm.mlp_inputs(16)}
    result = guard_fp16(model, tmp_path / "out.onnx", CheckSamples(feeds, "mlp inputs"))
    kept = {k.name for k in result.kept}
    assert pm.FP16_OVERFLOW_NODE in kept
    assert kept <= {pm.FP16_OVERFLOW_NODE, *pm.FP16_OVERFLOW_CONSUMERS}  # the node and its consumer, nothing else
    assert any("65504" in k.why for k in result.kept)
    assert result.before[0].cosine_mean < 0.99 or not np.isfinite(result.before[0].max_abs)
    # the written model really is FP16 elsewhere, and matches FP32
    written = onnx.load(str(tmp_path / "out.onnx"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in written.graph.initializer)
    want, got = outputs(model.path, feeds)[0], outputs(tmp_path / "out.onnx", feeds)[0]
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, atol=0.02 * np.abs(want).max())


def test_an_fp16_safe_model_keeps_nothing_and_runs_one_probe(tmp_path: Path) -> None:
    model = saved(pm.fp16_safe_cnn(), tmp_path, "safe")
    feeds = pm.sample_feeds(pm.fp16_safe_cnn(), 8)
    result = guard_fp16(model, tmp_path / "out.onnx", CheckSamples(feeds, "cnn inputs"))
    assert result.passed
    assert result.kept == ()
    assert not result.changed
    assert [p.stage for p in result.probes] == ["first check"]
    assert "0 of" in result.summary()


def test_no_mix_meets_an_impossible_budget_and_nothing_is_written(tmp_path: Path) -> None:
    model = saved(pm.fp16_overflow_one_node(), tmp_path, "overflow")
    feeds = {model.inputs[0].name: pm.mlp_inputs(8)}
    impossible = QualityBudget.for_precision("fp16").with_overrides(min_cosine=1.0)
    with pytest.raises(QualityCheckError) as caught:
        guard_fp16(model, tmp_path / "out.onnx", CheckSamples(feeds, "mlp inputs"), impossible, max_probes=6)
    assert "quality budget" in str(caught.value)
    assert caught.value.report["passed"] is False
    assert not (tmp_path / "out.onnx").exists()


def test_int8_range_hostile_node_is_excluded(tmp_path: Path) -> None:
    model = saved(pm.int8_range_hostile(), tmp_path, "hostile")
    name = model.inputs[0].name
    calibration = CalibrationData({name: pm.mlp_inputs(32, seed=1)})
    check = CheckSamples({name: pm.mlp_inputs(16, seed=0)}, "held out")
    result = guard_int8(model, tmp_path / "out.onnx", calibration, check, QuantizeOptions(target="tensorrt"))
    assert [k.name for k in result.kept] == [pm.INT8_HOSTILE_NODE]
    assert "INT8 scale" in result.kept[0].why
    assert result.violations == ()
    feeds = {name: pm.mlp_inputs(16, seed=0)}
    small = pm.INT8_HOSTILE_SMALL
    want, got = outputs(model.path, feeds)[0][:, small], outputs(tmp_path / "out.onnx", feeds)[0][:, small]
    cosine = float((want * got).sum() / np.linalg.norm(want) / np.linalg.norm(got))
    assert cosine > 0.99


def test_yolo_int8_keeps_ninety_percent_of_detections(tmp_path: Path) -> None:
    model = saved(pm.yolo_detector(), tmp_path, "yolo")
    name = model.inputs[0].name
    calibration = CalibrationData({name: pm.yolo_inputs(8, seed=1)})
    check = CheckSamples({name: pm.yolo_inputs(8, seed=0)}, "photos")
    result = guard_int8(model, tmp_path / "out.onnx", calibration, check, QuantizeOptions(target="cpu"))
    before, after = result.before[0], result.after[0]
    assert before.detections_kept is not None
    assert before.detections_kept < 0.5
    assert after.detections_kept is not None
    assert after.detections_kept >= 0.9
    assert pm.YOLO_CONCAT_NODE in {k.name for k in result.kept}


def test_random_inputs_come_with_their_note(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = saved(pm.fp16_safe_mlp(), tmp_path, "plain")
    with caplog.at_level(logging.WARNING, logger="edgerun"):
        samples = check_samples(model, None)
    assert samples.random
    assert samples.note == RANDOM_NOTE
    assert "seeded random" in samples.describe()
    assert any("prove little" in r.message for r in caplog.records)
    result = guard_fp16(model, tmp_path / "out.onnx", samples)
    assert result.random_inputs
    assert "seeded random" in result.summary()


def test_fp16_overflow_that_onnxruntime_cpu_hides_is_still_caught(tmp_path: Path) -> None:
    """ONNX Runtime's x86 kernels compute this FP16 model in FP32 and return the right answer; TensorRT stores
    the 1e5 activation in FP16 (inf). The guard checks the rounded twin, so it keeps the overflowing node."""
    from onnx import TensorProto, helper, numpy_helper

    from edgerun.precision.convert import prepare_fp16_source, to_fp16
    from edgerun.precision.emulate import rounded_twin

    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["a"], name="mm"),
        helper.make_node("Mul", ["a", "k"], ["b"], name="big"),
        helper.make_node("Div", ["b", "k"], ["c"], name="down"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "W"], ["y"], name="mm2"),
    ]
    graph = helper.make_graph(
        nodes,
        "hidden_overflow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        [
            numpy_helper.from_array(np.eye(4, dtype=np.float32), "W"),
            numpy_helper.from_array(np.array(1e4, np.float32), "k"),
        ],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    model = saved(proto, tmp_path, "hidden")
    feeds = {"x": np.array([[10, 1, 0.5, 3], [8, -9, 2, 1]], np.float32)}
    plain = to_fp16(prepare_fp16_source(proto), block=())

    def run(candidate: onnx.ModelProto) -> np.ndarray:
        session = ort.InferenceSession(candidate.SerializeToString(), providers=["CPUExecutionProvider"])
        return np.asarray(session.run(None, feeds)[0])

    assert np.allclose(run(plain), np.maximum(feeds["x"], 0), rtol=1e-2), "ONNX Runtime's CPU hides the overflow"
    assert np.isinf(run(rounded_twin(plain))).any(), "FP16 storage overflows"
    result = guard_fp16(model, tmp_path / "out.onnx", CheckSamples(feeds, "two rows"), block=())
    assert {k.name for k in result.kept} == {"big", "down"}
    assert "65504" in result.kept[0].why
