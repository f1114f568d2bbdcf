"""The synthetic models of `tests/precision_models.py` have the property each one is built for (ONNX Runtime, CPU)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnxconverter_common import float16
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from .. import precision_models as pm

FP16_MAX = 65504.0
Detections = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Per image: boxes [K, 4] as x1, y1, x2, y2, scores [K], classes [K]."""


def run(model: onnx.ModelProto | Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return [np.asarray(out) for out in session.run(None, feeds)]


def with_every_output(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose graph also outputs every node output of the main graph (to read activation ranges)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    outputs = {o.name for o in copy.graph.output}
    for node in model.graph.node:
        for name in node.output:
            if name not in outputs:
                copy.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return copy


def fp16(model: onnx.ModelProto, **kwargs: object) -> onnx.ModelProto:
    converted: onnx.ModelProto = float16.convert_float_to_float16(
        model, keep_io_types=True, max_finite_val=FP16_MAX, **kwargs
    )
    return converted


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    x, y = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    norms = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y / norms) if norms > 0 else 0.0


class Samples(CalibrationDataReader):  # type: ignore[misc]
    def __init__(self, name: str, data: np.ndarray) -> None:
        self._feeds = iter([{name: row[None]} for row in data])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def quantize(
    model: onnx.ModelProto, data: np.ndarray, folder: Path, *, symmetric: bool, exclude: Sequence[str] = ()
) -> Path:
    """Naive static INT8 (QDQ, per-tensor, MinMax) calibrated on ``data``; QInt8 symmetric or QUInt8 activations."""
    source, output = folder / "model.onnx", folder / f"int8-{symmetric}-{len(exclude)}.onnx"
    onnx.save(model, str(source))
    quantize_static(
        str(source),
        str(output),
        Samples(model.graph.input[0].name, data),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(exclude),
        extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
    )
    return output


# -- every builder --------------------------------------------------------------------------------------------------

BUILDERS: dict[str, tuple[Callable[[], onnx.ModelProto], Callable[[], np.ndarray]]] = {
    "fp16_overflow_one_node": (pm.fp16_overflow_one_node, pm.mlp_inputs),
    "fp16_safe_mlp": (pm.fp16_safe_mlp, pm.mlp_inputs),
    "fp16_safe_cnn": (pm.fp16_safe_cnn, pm.cnn_inputs),
    "int8_range_hostile": (pm.int8_range_hostile, pm.mlp_inputs),
    "l2norm_mlp": (lambda: pm.l2norm_mlp(named=True), pm.mlp_inputs),
    "with_if_subgraph": (pm.with_if_subgraph, lambda: pm.mlp_inputs(features=8)),
    "with_loop_subgraph": (pm.with_loop_subgraph, lambda: pm.mlp_inputs(features=8)),
    "detector_with_casts": (pm.detector_with_casts, pm.cnn_inputs),
    "yolo_detector": (pm.yolo_detector, lambda: pm.yolo_inputs(2)),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_builder_is_valid_named_and_runs(name: str) -> None:
    build, inputs = BUILDERS[name]
    model = build()
    onnx.checker.check_model(model, full_check=True)
    assert (model.ir_version, model.opset_import[0].version) == (8, 17)
    names = [node.name for node in model.graph.node]
    assert all(names)
    assert len(set(names)) == len(names)
    assert build().SerializeToString() == model.SerializeToString()  # deterministic
    data = inputs()
    outputs = run(model, {model.graph.input[0].name: data})
    assert all(np.isfinite(out).all() and out.shape[0] == len(data) for out in outputs)
    feeds = pm.sample_feeds(model, n=len(data))
    np.testing.assert_array_equal(feeds[model.graph.input[0].name], data)


def test_inputs_are_seeded() -> None:
    np.testing.assert_array_equal(pm.mlp_inputs(seed=3), pm.mlp_inputs(seed=3))
    assert not np.array_equal(pm.yolo_inputs(2, seed=0), pm.yolo_inputs(2, seed=1))
    images = pm.yolo_inputs(9, size=64)
    assert images.shape == (9, 3, 64, 64)
    assert images.dtype == np.float32
    assert images.min() >= 0.0
    assert images.max() <= 1.0
    assert len(sorted(pm.PHOTOS.glob("*.jpg"))) == 7  # images 7 and 8 are smooth random fields
    photo = cv2.imread(str(sorted(pm.PHOTOS.glob("*.jpg"))[0]))  # astronaut.jpg, mostly red: RGB order kept
    assert photo is not None
    assert photo.mean(axis=(0, 1))[::-1].argmax() == images[0].mean(axis=(1, 2)).argmax() == 0


# -- FP16 -----------------------------------------------------------------------------------------------------------


def test_fp16_overflow_is_in_exactly_one_node_and_keeping_it_fixes_fp16() -> None:
    model, x = pm.fp16_overflow_one_node(), pm.mlp_inputs()
    probe = with_every_output(model)
    peaks = {o.name: float(np.abs(v).max()) for o, v in zip(probe.graph.output, run(probe, {"x": x}), strict=True)}
    producer = {out: node.name for node in model.graph.node for out in node.output}
    over = {producer[name] for name, peak in peaks.items() if peak > FP16_MAX}
    assert over == {pm.FP16_OVERFLOW_NODE}
    assert max(peak for name, peak in peaks.items() if producer[name] != pm.FP16_OVERFLOW_NODE) < 50
    consumers = {n.name for n in model.graph.node if any(i in producer and producer[i] == "overflow" for i in n.input)}
    assert consumers == set(pm.FP16_OVERFLOW_CONSUMERS)

    reference = run(model, {"x": x})[0]
    plain = run(fp16(model), {"x": x})[0]
    assert not np.isfinite(plain).all()
    only_node = run(fp16(model, node_block_list=[pm.FP16_OVERFLOW_NODE]), {"x": x})[0]
    assert not np.isfinite(only_node).all()  # its consumer must read FP32 too
    kept = fp16(model, node_block_list=[pm.FP16_OVERFLOW_NODE, *pm.FP16_OVERFLOW_CONSUMERS])
    weights = {t.name: t.data_type for t in kept.graph.initializer}
    assert weights["overflow.weight"] == TensorProto.FLOAT
    assert weights["fc1.weight"] == TensorProto.FLOAT16
    fixed = run(kept, {"x": x})[0]
    assert cosine(reference, fixed) > 0.9999
    assert np.abs(fixed - reference).max() < 0.01 * np.abs(reference).max()


@pytest.mark.parametrize(("build", "inputs"), [(pm.fp16_safe_mlp, pm.mlp_inputs), (pm.fp16_safe_cnn, pm.cnn_inputs)])
def test_fp16_safe_models_match_fp32(build: Callable[[], onnx.ModelProto], inputs: Callable[[], np.ndarray]) -> None:
    model, data = build(), inputs()
    feeds = {model.graph.input[0].name: data}
    reference, converted = run(model, feeds)[0], run(fp16(model), feeds)[0]
    assert reference.shape == (len(data), 10)  # a classifier's [N, C]
    assert len(set(reference.argmax(axis=1).tolist())) >= 2
    assert cosine(reference, converted) > 0.9999
    np.testing.assert_array_equal(reference.argmax(axis=1), converted.argmax(axis=1))


def test_l2norm_mlp_reproduces_the_output_cast_ssa_failure() -> None:
    model = pm.l2norm_mlp()
    assert [n.op_type for n in model.graph.node] == [
        "MatMul", "Relu", "MatMul", "ReduceSumSquare", "Sqrt", "Div", "MatMul",
    ]  # fmt: skip
    assert not any(n.name for n in model.graph.node)
    blocked = [*float16.DEFAULT_OP_BLOCK_LIST, "ReduceSumSquare", "Sqrt"]
    with pytest.raises(onnx.checker.ValidationError, match="'_output_cast_0' has been used as output names multiple"):
        onnx.checker.check_model(fp16(model, op_block_list=blocked))
    named = pm.l2norm_mlp(named=True)
    x = pm.mlp_inputs()
    normalised = run(with_every_output(named), {"x": x})[6]  # after the Div
    np.testing.assert_allclose(np.linalg.norm(normalised, axis=1), 1.0, rtol=1e-5)
    converted = fp16(named, op_block_list=blocked)
    onnx.checker.check_model(converted)
    assert cosine(run(named, {"x": x})[0], run(converted, {"x": x})[0]) > 0.9999


def test_if_subgraph_uses_outer_scope_and_breaks_the_converter_sort() -> None:
    model, x = pm.with_if_subgraph(), pm.mlp_inputs(features=8)
    branch_ops = set()
    for attribute in next(n for n in model.graph.node if n.op_type == "If").attribute:
        branch_ops |= {n.op_type for n in attribute.g.node}
    assert {"MatMul", "Add", "Mul", "If"} <= branch_ops
    assert model.graph.node[-1].op_type == "Mul"
    assert model.graph.node[-1].input[0] == "if_out"
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    hidden = x @ weights["pre.weight"] * weights["gain"]  # the else branch runs (constant condition False)
    relu = np.maximum(hidden, 0)
    inner = relu + weights["bias"] if relu.max() > 0 else relu * weights["gain"]
    np.testing.assert_allclose(run(model, {"x": x})[0], (inner + weights["bias"]) * 2.0, rtol=1e-5, atol=1e-6)
    with pytest.raises(onnx.checker.ValidationError, match="Nodes in a graph must be topologically sorted"):
        onnx.checker.check_model(fp16(model))


def test_loop_subgraph_computes_its_recurrence() -> None:
    model, x = pm.with_loop_subgraph(), pm.mlp_inputs(features=8)
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    pre = x @ weights["pre.weight"]
    state = pre
    for _ in range(int(weights["trip_count"])):
        state = np.maximum(state @ weights["loop.weight"] + pre, 0) * 0.5
    np.testing.assert_allclose(run(model, {"x": x})[0], state * 2.0, rtol=1e-5, atol=1e-6)


def test_detector_with_casts_reproduces_the_cast_type_mismatch() -> None:
    model, images = pm.detector_with_casts(), pm.cnn_inputs()
    casts = {n.name: n for n in model.graph.node if n.op_type == "Cast"}
    assert set(casts) == {"/model.22/Cast_4", "/model.22/Cast_5"}
    assert all(helper.get_attribute_value(n.attribute[0]) == TensorProto.FLOAT for n in casts.values())
    assert [n.op_type for n in model.graph.node if n.output[0] == casts["/model.22/Cast_4"].input[0]] == ["Gather"]
    output = run(model, {"images": images})[0]
    assert output.shape == (4, 7, 256)
    assert output[:, :4].max() > 1
    assert output[:, 4:].min() >= 0
    assert output[:, 4:].max() <= 1
    with pytest.raises(Exception, match=re.escape("(/model.22/Cast_5_output_0) of node (/model.22/Cast_5)")):
        run(fp16(model), {"images": images})


# -- INT8 -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("symmetric", [False, True])
def test_int8_range_hostile_node_destroys_the_small_channels(tmp_path: Path, symmetric: bool) -> None:
    model, x = pm.int8_range_hostile(), pm.mlp_inputs(32)
    reference = run(model, {"x": x})[0]
    small = reference[:, pm.INT8_HOSTILE_SMALL]
    assert reference[:, :4].max() > 200
    assert small.max() <= 1
    naive = run(quantize(model, x, tmp_path, symmetric=symmetric), {"x": x})[0]
    assert cosine(reference, naive) > 0.999  # the whole output hides it
    assert cosine(small, naive[:, pm.INT8_HOSTILE_SMALL]) < 0.9
    kept = quantize(model, x, tmp_path, symmetric=symmetric, exclude=[pm.INT8_HOSTILE_NODE])
    assert cosine(small, run(kept, {"x": x})[0][:, pm.INT8_HOSTILE_SMALL]) > 0.999
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(kept)).graph.node)


def detections(output: np.ndarray, threshold: float = 0.25, iou: float = 0.45) -> list[Detections]:
    """YOLOv8 decoding of [N, 4+C, A]: best class per anchor, score threshold, class-aware NMS."""
    found: list[Detections] = []
    for image in output:
        boxes, scores = image[:4].T, image[4:].T
        best, classes = scores.max(axis=1), scores.argmax(axis=1)
        keep = best > threshold
        boxes, best, classes = boxes[keep], best[keep], classes[keep]
        corners = np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], axis=1)
        chosen = np.zeros(0, int)
        if len(boxes):
            xywh = np.concatenate([corners[:, :2], boxes[:, 2:]], axis=1)
            picked = cv2.dnn.NMSBoxesBatched(xywh.tolist(), best.tolist(), classes.tolist(), threshold, iou)
            chosen = np.asarray(picked, dtype=int).ravel()
        found.append((corners[chosen], best[chosen], classes[chosen]))
    return found


def kept_detections(reference: list[Detections], candidate: list[Detections]) -> int:
    """How many reference detections a candidate detection matches (same class, IoU >= 0.5, one to one)."""
    matched = 0
    for (boxes, scores, classes), (other, _, other_classes) in zip(reference, candidate, strict=True):
        if not len(boxes) or not len(other):
            continue
        low = np.maximum(boxes[:, None, :2], other[None, :, :2])
        high = np.minimum(boxes[:, None, 2:], other[None, :, 2:])
        inter = np.clip(high - low, 0, None).prod(axis=2)
        area = (boxes[:, 2:] - boxes[:, :2]).prod(axis=1)[:, None] + (other[:, 2:] - other[:, :2]).prod(axis=1)
        iou = inter / (area - inter) * (classes[:, None] == other_classes[None, :])
        free = np.ones(len(other), bool)
        for row in np.argsort(-scores):
            candidates = np.flatnonzero(free & (iou[row] >= 0.5))
            if len(candidates):
                free[candidates[iou[row, candidates].argmax()]] = False
                matched += 1
    return matched


@pytest.fixture(scope="module")
def yolo() -> tuple[onnx.ModelProto, np.ndarray, np.ndarray, list[Detections]]:
    model, images = pm.yolo_detector(), pm.yolo_inputs(8)
    output = run(model, {"images": images})[0]
    return model, images, output, detections(output)


def test_yolo_detector_has_the_yolov8_layout_and_healthy_detections(
    yolo: tuple[onnx.ModelProto, np.ndarray, np.ndarray, list[Detections]],
) -> None:
    model, images, output, found = yolo
    assert output.shape == (8, 7, 20 * 20 + 10 * 10)
    assert model.graph.node[-1].name == pm.YOLO_CONCAT_NODE
    assert model.graph.output[0].name == pm.YOLO_OUTPUT
    assert output[:, :4].min() >= 0
    assert 250 < output[:, :4].max() <= 640
    assert output[:, 4:].min() >= 0
    assert output[:, 4:].max() <= 1
    total = sum(len(scores) for _, scores, _ in found)
    assert 30 <= total <= 150
    per_class = np.bincount(np.concatenate([classes for _, _, classes in found]), minlength=3)
    assert (per_class >= 5).all()
    assert sum(len(scores) > 0 for _, scores, _ in found) >= 5
    assert kept_detections(found, found) == total
    converted = run(fp16(model), {"images": images})[0]
    assert kept_detections(found, detections(converted)) >= 0.95 * total  # FP16 is fine here


@pytest.mark.parametrize("symmetric", [False, True])
def test_naive_int8_loses_most_yolo_detections(
    yolo: tuple[onnx.ModelProto, np.ndarray, np.ndarray, list[Detections]], tmp_path: Path, symmetric: bool
) -> None:
    model, images, output, found = yolo
    total = sum(len(scores) for _, scores, _ in found)
    naive = run(quantize(model, images, tmp_path, symmetric=symmetric), {"images": images})[0]
    assert cosine(output, naive) > 0.9999  # a global metric hides it
    assert kept_detections(found, detections(naive)) < 0.5 * total
    excluded = quantize(model, images, tmp_path, symmetric=symmetric, exclude=[pm.YOLO_CONCAT_NODE])
    assert kept_detections(found, detections(run(excluded, {"images": images})[0])) >= 0.9 * total


def test_yolo_detector_other_shapes() -> None:
    model = pm.yolo_detector(classes=80, size=64)
    output = run(model, {"images": pm.yolo_inputs(1, size=64)})[0]
    assert output.shape == (1, 84, 4 * 4 + 2 * 2)
    with pytest.raises(ValueError, match="multiple of 32"):
        pm.yolo_detector(size=100)
