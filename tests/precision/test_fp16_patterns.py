"""FP16 conversion of the graph patterns onnxconverter-common gets wrong, each in a small model built here.

Every test shows the failure of the plain converter (as edgerun called it before) on the pattern, then
that `to_fp16` makes a model that ONNX Runtime loads and whose outputs track the FP32 model's.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgerun import models
from edgerun.data.preprocess import PreprocessSpec
from edgerun.data.samples import load_samples
from edgerun.precision.convert import SENSITIVE_OPS, convert_fp16, prepare_fp16_source, to_fp16
from edgerun.runtime.modelfile import ModelFile

from .. import onnx_factory
from ..precision_helpers import REPO

Feeds = Mapping[str, np.ndarray]


def _model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[onnx.ValueInfoProto],
    weights: Mapping[str, np.ndarray] = {},
    opset: int = 17,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        list(nodes), "pattern", list(inputs), list(outputs), [numpy_helper.from_array(v, k) for k, v in weights.items()]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgerun-tests")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _value(name: str, shape: Sequence[int | str] | None, kind: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, kind, shape)


def _constant(name: str, value: np.ndarray) -> onnx.NodeProto:
    """An unnamed Constant node, as exporters (paddle2onnx, torch) write weights."""
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))


def _run(model: onnx.ModelProto, feeds: Feeds) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [np.asarray(out) for out in session.run(None, dict(feeds))]


def _plain_converter_error(model: onnx.ModelProto) -> str | None:
    """What went wrong with onnxconverter-common alone (as edgerun called it before), or None."""
    from onnxconverter_common import float16

    blocked = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(SENSITIVE_OPS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            converted = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked)
            onnx.checker.check_model(converted)
            ort.InferenceSession(converted.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception as exc:
            return str(exc)
    return None


def _assert_tracks_fp32(source: onnx.ModelProto, converted: onnx.ModelProto, feeds: Feeds, tolerance: float) -> None:
    """FP32 graph inputs and outputs, and every output within ``tolerance`` x its FP32 range of the FP32 one."""
    onnx.checker.check_model(converted, full_check=True)
    assert [i.type.tensor_type.elem_type for i in converted.graph.input] == [
        i.type.tensor_type.elem_type for i in source.graph.input
    ]
    assert [(o.name, o.type.tensor_type.elem_type) for o in converted.graph.output] == [
        (o.name, o.type.tensor_type.elem_type) for o in source.graph.output
    ]
    for want, got in zip(_run(source, feeds), _run(converted, feeds), strict=True):
        assert got.dtype == want.dtype
        assert got.shape == want.shape
        scale = max(float(np.abs(want).max()), 1e-6)
        assert np.abs(got.astype(np.float64) - want).max() <= tolerance * scale


def _initializer_types(model: onnx.ModelProto) -> dict[str, int]:
    return {t.name: t.data_type for t in model.graph.initializer}


# --- 1. weights in Constant nodes of kept nodes: clamped to 1e4 by the converter ---------------------


def batchnorm_with_constants() -> onnx.ModelProto:
    """Conv -> BatchNormalization (running variance up to 1e8, as ppocr-det's DB head) -> Relu -> Add.

    All weights are unnamed Constant nodes; the BN bias ``B`` is also read by the final Add.
    """
    rng = np.random.default_rng(11)
    variance = np.array([9.79e7, 4e6, 2.5e-1], np.float32)
    scale = np.sqrt(variance).astype(np.float32)  # keeps the normalised values O(1)
    nodes = [
        _constant("W", (rng.standard_normal((3, 3, 3, 3)) * 0.3).astype(np.float32)),
        _constant("scale", scale),
        _constant("B", np.array([0.5, -0.25, 0.125], np.float32)),
        _constant("mean", np.array([0.1, -0.2, 0.3], np.float32)),
        _constant("var", variance),
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "scale", "B", "mean", "var"], ["n"], name="bn"),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        _constant("axes", np.array([1, 2], np.int64)),
        helper.make_node("Unsqueeze", ["B", "axes"], ["B4"], name="unsqueeze"),
        helper.make_node("Add", ["r", "B4"], ["y"], name="add"),
    ]
    return _model(nodes, [_value("x", [1, 3, 8, 8])], [_value("y", [1, 3, 8, 8])])


def _image_feeds() -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(2).standard_normal((1, 3, 8, 8)).astype(np.float32)}


def test_the_plain_converter_clamps_weights_of_blocked_nodes_held_in_constants() -> None:
    from onnxconverter_common import float16

    model = batchnorm_with_constants()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=["bn"])
    var = next(n for n in plain.graph.node if n.output[0] == "var").attribute[0].t
    assert var.data_type == TensorProto.FLOAT16, "converted although its only reader is blocked"
    assert numpy_helper.to_array(var).max() == 1e4


def test_kept_nodes_keep_their_constant_weights_in_fp32() -> None:
    model = batchnorm_with_constants()
    prepared = prepare_fp16_source(model)
    assert [n.op_type for n in prepared.graph.node] == ["Conv", "BatchNormalization", "Relu", "Unsqueeze", "Add"]
    assert {"W", "scale", "B", "mean", "var", "axes"} <= set(_initializer_types(prepared))
    feeds = _image_feeds()

    mixed = to_fp16(prepared, keep={"bn"})
    _assert_tracks_fp32(model, mixed, feeds, tolerance=5e-3)
    types = _initializer_types(mixed)
    assert types["W"] == TensorProto.FLOAT16
    assert types["var"] == types["mean"] == types["scale"] == TensorProto.FLOAT
    var = next(t for t in mixed.graph.initializer if t.name == "var")
    assert numpy_helper.to_array(var)[0] == np.float32(9.79e7), "not clamped"
    # B is read by the kept BN and by the converted Unsqueeze/Add: one copy each
    copies = {name: kind for name, kind in types.items() if name.startswith("B")}
    assert sorted(copies.values()) == [TensorProto.FLOAT, TensorProto.FLOAT16]

    everything = to_fp16(prepared)  # the variance is clamped to 65504: the map is ~39x too large
    (want,), (got,) = _run(model, feeds), _run(everything, feeds)
    assert np.abs(got - want).max() > 0.5 * np.abs(want).max()


def test_convert_counts_only_weights_that_end_up_in_fp16_as_clamped(tmp_path: Path) -> None:
    path = onnx_factory.save(batchnorm_with_constants(), tmp_path / "bn.onnx")
    plain = convert_fp16(path, tmp_path / "bn16.onnx")
    assert plain.clamped_values == 2  # 9.79e7 and 4e6
    assert plain.kept_nodes == ()
    assert plain.total_nodes == 5
    mixed = convert_fp16(path, tmp_path / "bn16-mixed.onnx", keep=["bn"])
    assert mixed.clamped_values == 0
    assert mixed.kept_nodes == ("bn",)
    assert mixed.total_nodes == 5
    assert mixed.max_abs_error is not None
    assert plain.max_abs_error is not None
    assert mixed.max_abs_error < 0.05 < plain.max_abs_error


def test_prepared_names_are_deterministic_and_unique() -> None:
    relu = helper.make_node("Relu", ["x"], ["a"])
    named = helper.make_node("Relu", ["a"], ["b"], name="Relu_0")  # takes the name the first would get
    again = helper.make_node("Neg", ["b"], ["c"], name="Relu_0")
    model = _model([relu, named, again], [_value("x", [2])], [_value("c", [2])])
    first = prepare_fp16_source(model)
    names = [n.name for n in first.graph.node]
    assert names == ["Relu_0_1", "Relu_0", "Neg_2"]
    assert [n.name for n in prepare_fp16_source(model).graph.node] == names
    assert prepare_fp16_source(first) == first, "idempotent"
    assert [n.name for n in model.graph.node] == ["", "Relu_0", "Relu_0"], "the input is not changed"


def _ppocr_det_maps(size: int, keeps: Sequence[Sequence[str]]) -> tuple[np.ndarray, list[np.ndarray]]:
    card = models.card("ppocr-det")
    path = models.path("ppocr-det")
    spec = PreprocessSpec.from_dict({**card.preprocessing, "height": size, "width": size})
    images = load_samples(REPO / "calibration" / "photos", ModelFile.open(path).inputs, preprocess=spec, samples=4)
    feeds = {"x": images.inputs["x"]}
    prepared = prepare_fp16_source(onnx.load(str(path)))
    (reference,) = _run(prepared, feeds)
    return reference, [_run(to_fp16(prepared, keep=keep), feeds)[0] for keep in keeps]


def _mask_iou(reference: np.ndarray, candidate: np.ndarray, threshold: float = 0.3) -> float:
    want, got = reference > threshold, candidate > threshold
    return float((want & got).sum() / max((want | got).sum(), 1))


def test_ppocr_det_is_right_in_fp16_with_its_large_variance_batchnorm_kept() -> None:
    """The bundled detector: `p2o.BatchNormalization.1`'s running variance reaches 9.79e7."""
    reference, (everything, kept) = _ppocr_det_maps(224, [(), ("p2o.BatchNormalization.1",)])
    assert reference.max() > 0.9, "the photos contain text"
    assert _mask_iou(reference, kept) >= 0.95  # measured 0.9945
    assert _mask_iou(reference, everything) < 0.8  # measured 0.655: keep is what fixes it


# --- 2. graph outputs of blocked / kept nodes: the `_output_cast_0` SSA error ------------------------------


def l2_normalised_mlp(outputs: Sequence[str] = ("y",)) -> onnx.ModelProto:
    """x -> MatMul -> Relu -> r / sqrt(ReduceSumSquare(r)) -> MatMul -> y, nodes unnamed (as torch exports)."""
    rng = np.random.default_rng(4)
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("ReduceSumSquare", ["r"], ["ss"], axes=[1], keepdims=1),
        helper.make_node("Sqrt", ["ss"], ["norm"]),
        helper.make_node("Div", ["r", "norm"], ["u"]),
        helper.make_node("MatMul", ["u", "W2"], ["y"]),
    ]
    shapes = {"y": ["batch", 3], "norm": ["batch", 1], "r": ["batch", 8], "ss": ["batch", 1]}
    weights = {
        "W1": rng.standard_normal((4, 8)).astype(np.float32),
        "W2": rng.standard_normal((8, 3)).astype(np.float32),
    }
    return _model(nodes, [_value("x", ["batch", 4])], [_value(name, shapes[name]) for name in outputs], weights)


def _vector_feeds() -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(5).standard_normal((6, 4)).astype(np.float32)}


def test_the_plain_converter_breaks_ssa_on_an_l2_normalised_mlp() -> None:
    error = _plain_converter_error(l2_normalised_mlp())
    assert error is not None
    assert "_output_cast_0" in error


@pytest.mark.parametrize(
    ("outputs", "keep"),
    [
        (("y",), ()),
        (("y",), ("MatMul_5",)),  # the output comes from a kept node
        (("norm", "y"), ()),  # ... from a blocked one (Sqrt)
        (("ss", "norm", "y"), ("MatMul_5",)),  # ... a blocked one whose output a blocked one reads
        (("r", "y"), ("Relu_1",)),  # an output that other nodes read as well
        (("r", "norm"), ()),  # no float node after the outputs
    ],
)
def test_outputs_of_blocked_and_kept_nodes_convert(outputs: tuple[str, ...], keep: tuple[str, ...]) -> None:
    model = l2_normalised_mlp(outputs)
    converted = to_fp16(prepare_fp16_source(model), keep=keep)
    _assert_tracks_fp32(model, converted, _vector_feeds(), tolerance=5e-3)
    assert _initializer_types(converted)["W1"] == TensorProto.FLOAT16
    if keep == ("MatMul_5",):
        assert _initializer_types(converted)["W2"] == TensorProto.FLOAT


def test_a_kept_node_writes_its_graph_output_itself() -> None:
    """No FP16 round trip between a kept node and the graph output (nor between two kept nodes)."""
    model = l2_normalised_mlp(("ss", "norm", "y"))
    converted = to_fp16(prepare_fp16_source(model), keep={"MatMul_5"})
    producer = {out: node for node in converted.graph.node for out in node.output}
    assert producer["y"].name == "MatMul_5"
    assert producer["norm"].name == "Sqrt_3"
    assert producer["ss"].name == "ReduceSumSquare_2"
    assert producer["norm"].input[0] == "ss", "Sqrt reads ReduceSumSquare's FP32 output"
    plain = to_fp16(prepare_fp16_source(model))
    cast = {out: node for node in plain.graph.node for out in node.output}["y"]
    assert cast.op_type == "Cast"


# --- 3. If / Loop subgraphs reading outer values: "Nodes in a graph must be topologically sorted" ----------


def _float_branch(name: str, node: onnx.NodeProto, output: str) -> onnx.GraphProto:
    return helper.make_graph([node], name, [], [_value(output, None)])


def with_if(constant_condition: bool) -> onnx.ModelProto:
    """h = x @ W1, a = Relu(h); If(cond): then a * S, else h + a (outer values); then @ W2."""
    rng = np.random.default_rng(8)
    weights: dict[str, np.ndarray] = {
        "W1": rng.standard_normal((4, 8)).astype(np.float32),
        "W2": rng.standard_normal((8, 3)).astype(np.float32),
        "S": np.array([2.0], np.float32),
    }
    condition: list[onnx.NodeProto] = []
    if constant_condition:
        weights["cond"] = np.array(False)
    else:
        condition = [
            helper.make_node("ReduceMax", ["x"], ["top"], name="top", keepdims=0),
            helper.make_node("Greater", ["top", "zero"], ["cond"], name="positive"),
        ]
        weights["zero"] = np.array(1.0, np.float32)
    then = _float_branch("then", helper.make_node("Mul", ["a", "S"], ["t"], name="then_mul"), "t")
    other = _float_branch("else", helper.make_node("Add", ["h", "a"], ["e"], name="else_add"), "e")
    nodes = [
        *condition,
        helper.make_node("MatMul", ["x", "W1"], ["h"], name="mm"),
        helper.make_node("Relu", ["h"], ["a"], name="relu"),
        helper.make_node("If", ["cond"], ["o"], name="branch", then_branch=then, else_branch=other),
        helper.make_node("MatMul", ["o", "W2"], ["y"], name="mm2"),
    ]
    return _model(nodes, [_value("x", [2, 4])], [_value("y", [2, 3])], weights)


def with_loop() -> onnx.ModelProto:
    """v = v + h three times in a Loop body that reads the outer h; then @ W2."""
    rng = np.random.default_rng(9)
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going"),
            helper.make_node("Add", ["v_in", "h"], ["v_out"], name="accumulate"),
        ],
        "body",
        [_value("i", [], TensorProto.INT64), _value("cond_in", [], TensorProto.BOOL), _value("v_in", None)],
        [_value("cond_out", [], TensorProto.BOOL), _value("v_out", None)],
    )
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h"], name="mm"),
        helper.make_node("Loop", ["trips", "", "v0"], ["v"], name="loop", body=body),
        helper.make_node("MatMul", ["v", "W2"], ["y"], name="mm2"),
    ]
    weights = {
        "W1": rng.standard_normal((4, 8)).astype(np.float32),
        "W2": rng.standard_normal((8, 3)).astype(np.float32),
        "trips": np.array(3, np.int64),
        "v0": np.full((2, 8), 0.5, np.float32),
    }
    return _model(nodes, [_value("x", [2, 4])], [_value("y", [2, 3])], weights)


CONTROL_FLOW = {"if-constant": lambda: with_if(True), "if": lambda: with_if(False), "loop": with_loop}


@pytest.mark.parametrize("name", sorted(CONTROL_FLOW))
def test_the_plain_converter_sorts_control_flow_before_its_outer_inputs(name: str) -> None:
    error = _plain_converter_error(CONTROL_FLOW[name]())
    assert error is not None
    assert "must be topologically sorted" in error


@pytest.mark.parametrize("name", sorted(CONTROL_FLOW))
def test_control_flow_stays_fp32_and_the_rest_converts(name: str) -> None:
    model = CONTROL_FLOW[name]()
    converted = to_fp16(prepare_fp16_source(model))
    feeds = {"x": np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)}
    _assert_tracks_fp32(model, converted, feeds, tolerance=5e-3)
    feeds = {"x": -np.abs(feeds["x"])}  # the other branch of the computed condition
    _assert_tracks_fp32(model, converted, feeds, tolerance=5e-3)
    types = _initializer_types(converted)
    assert types["W1"] == types["W2"] == TensorProto.FLOAT16
    assert types.get("S", TensorProto.FLOAT) == types.get("v0", TensorProto.FLOAT) == TensorProto.FLOAT
    node = next(n for n in converted.graph.node if n.op_type in ("If", "Loop"))
    for attr in node.attribute:  # the subgraphs are untouched
        for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else []:
            assert all(v.type.tensor_type.elem_type != TensorProto.FLOAT16 for v in [*sub.input, *sub.output])


# --- 4. Cast(to=FLOAT) in exported detectors: "Type (tensor(float16)) of output arg ... does not match" ----


def yolo_like_head() -> onnx.ModelProto:
    """A YOLOv8-style head: Conv -> boxes scaled by a stride from Shape -> Cast(FLOAT) -> Div, sigmoid scores,
    Casts to float on float tensors, Concat along the feature axis; a second output is a Cast."""
    rng = np.random.default_rng(3)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["f"], name="/model.22/cv2/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Shape", ["x"], ["shape"], name="/model.22/Shape"),
        helper.make_node("Gather", ["shape", "three"], ["width"], name="/model.22/Gather", axis=0),
        helper.make_node("Cast", ["width"], ["width_f"], name="/model.22/Cast_5", to=TensorProto.FLOAT),
        helper.make_node("Div", ["size", "width_f"], ["stride"], name="/model.22/Div"),
        helper.make_node("Reshape", ["f", "flat"], ["anchors"], name="/model.22/Reshape"),
        helper.make_node("Split", ["anchors", "split"], ["box", "cls"], name="/model.22/Split", axis=1),
        helper.make_node("Mul", ["box", "stride"], ["box_px"], name="/model.22/Mul"),
        helper.make_node("Cast", ["box_px"], ["box_f"], name="/model.22/Cast_6", to=TensorProto.FLOAT),
        helper.make_node("Sigmoid", ["cls"], ["scores"], name="/model.22/Sigmoid"),
        helper.make_node("Concat", ["box_f", "scores"], ["output0"], name="/model.22/Concat", axis=1),
        helper.make_node("Cast", ["stride"], ["stride_out"], name="/model.22/Cast_7", to=TensorProto.FLOAT),
    ]
    weights = {
        "W": (rng.standard_normal((6, 3, 3, 3)) * 0.5).astype(np.float32),
        "three": np.array(3, np.int64),
        "size": np.array(320.0, np.float32),
        "flat": np.array([1, 6, -1], np.int64),
        "split": np.array([4, 2], np.int64),
    }
    outputs = [_value("output0", [1, 6, 64]), _value("stride_out", [])]
    return _model(nodes, [_value("x", [1, 3, 8, 8])], outputs, weights)


def test_the_plain_converter_mistypes_casts_to_float() -> None:
    error = _plain_converter_error(yolo_like_head())
    assert error is not None
    assert "does not match expected type (tensor(float))" in error


def test_casts_to_float_in_a_detector_head_convert() -> None:
    model = yolo_like_head()
    converted = to_fp16(prepare_fp16_source(model))
    _assert_tracks_fp32(model, converted, _image_feeds(), tolerance=5e-3)
    assert _initializer_types(converted)["W"] == TensorProto.FLOAT16
    kinds = {n.name: n.op_type for n in converted.graph.node}
    assert kinds["/model.22/Cast_5"] == "Cast"


def test_other_float32_typed_nodes_convert() -> None:
    """Scalar Constants (value_float), ConstantOfShape without a value, and a sequence of FP16 tensors."""
    rng = np.random.default_rng(6)
    nodes = [
        helper.make_node("Constant", [], ["k"], value_float=2.5),
        helper.make_node("MatMul", ["x", "W"], ["h"]),
        helper.make_node("Mul", ["h", "k"], ["hk"]),
        helper.make_node("Shape", ["hk"], ["s"]),
        helper.make_node("ConstantOfShape", ["s"], ["zeros"]),
        helper.make_node("Add", ["hk", "zeros"], ["z"]),
        helper.make_node("SequenceEmpty", [], ["s0"]),
        helper.make_node("SequenceInsert", ["s0", "z"], ["s1"]),
        helper.make_node("SequenceInsert", ["s1", "h"], ["s2"]),
        helper.make_node("ConcatFromSequence", ["s2"], ["y"], axis=0),
    ]
    weights = {"W": rng.standard_normal((4, 3)).astype(np.float32)}
    model = _model(nodes, [_value("x", [2, 4])], [_value("y", [4, 3])], weights)
    assert _plain_converter_error(model) is not None
    converted = to_fp16(prepare_fp16_source(model))
    _assert_tracks_fp32(model, converted, {"x": rng.standard_normal((2, 4)).astype(np.float32)}, tolerance=5e-3)


def test_ops_without_an_fp16_type_stay_fp32() -> None:
    """TfIdfVectorizer makes float32 only, LayerNormalization's Mean/InvStdDev outputs too."""
    rng = np.random.default_rng(7)
    nodes = [
        helper.make_node(
            "TfIdfVectorizer",
            ["tokens"],
            ["tf"],
            name="tfidf",
            mode="TF",
            min_gram_length=1,
            max_gram_length=1,
            max_skip_count=0,
            ngram_counts=[0],
            ngram_indexes=[0, 1, 2, 3],
            pool_int64s=[2, 3, 5, 7],
        ),
        helper.make_node("MatMul", ["tf", "W"], ["h"], name="mm"),
        helper.make_node("LayerNormalization", ["h", "g", "b"], ["y", "mean", "inv"], name="ln"),
        helper.make_node("Mul", ["mean", "inv"], ["z"], name="mul"),
    ]
    weights = {
        "W": rng.standard_normal((4, 3)).astype(np.float32),
        "g": np.ones(3, np.float32),
        "b": np.zeros(3, np.float32),
    }
    tokens = _value("tokens", [2, 6], TensorProto.INT64)
    model = _model(nodes, [tokens], [_value("y", [2, 3]), _value("z", [2, 1])], weights)
    assert _plain_converter_error(model) is not None
    converted = to_fp16(prepare_fp16_source(model))
    feeds = {"tokens": np.array([[2, 3, 3, 1, 2, 7], [5, 5, 5, 2, 0, 0]], np.int64)}
    _assert_tracks_fp32(model, converted, feeds, tolerance=5e-3)
    assert _initializer_types(converted)["W"] == TensorProto.FLOAT16
