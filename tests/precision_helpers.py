"""Shared helpers of the precision-pipeline tests: data paths, small models, Q/DQ inspection."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import edgerun
from edgerun import models

REPO = Path(__file__).resolve().parents[1]
DIGITS_FOLDER = REPO / "calibration" / "digits"
TEXTLINES_FOLDER = REPO / "calibration" / "textlines"
DIGITS_DIR = models.card("digits-student").folder
DIGITS_CALIB = DIGITS_DIR / "digits-calib.npz"
DIGITS_TEST = DIGITS_DIR / "digits-test.npz"
COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def digits_test() -> tuple[np.ndarray, np.ndarray]:
    """The held-out test split: images [360, 1, 8, 8] float32 and labels [360]."""
    with np.load(DIGITS_TEST) as data:
        return data["images"], data["labels"]


def correct_on_digits_test(model: str | Path) -> int:
    """How many of the 360 test images ``model`` classifies right (never used for calibration)."""
    images, labels = digits_test()
    with edgerun.load(model) as session:
        predicted = session.run(images)["logits"].argmax(axis=1)
    return int((predicted == labels).sum())


def model_proto(graph: onnx.GraphProto, opset: int = 17) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgerun-tests")
    model.ir_version = 8
    return model


def scaled_matmul(scale: float, classes: int = 6, named: bool = True) -> onnx.ModelProto:
    """y = (x @ W) * scale: x [batch, 4], y [batch, classes], W fixed and seeded."""
    weight = np.random.default_rng(7).standard_normal((4, classes)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="matmul" if named else ""),
        helper.make_node("Mul", ["h", "s"], ["y"], name="scale" if named else ""),
    ]
    graph = helper.make_graph(
        nodes,
        "scaled_matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(np.array(scale, np.float32), "s")],
    )
    return model_proto(graph)


def offset_map(offset: float) -> onnx.ModelProto:
    """A probability-map-like model: y = x + offset, both [batch, 1, 8, 8] (not a classifier)."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["m", "o"], ["y"], name="add")],
        "offset_map",
        [helper.make_tensor_value_info("m", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [numpy_helper.from_array(np.array(offset, np.float32), "o")],
    )
    return model_proto(graph)


def two_matmuls(named: bool = True) -> onnx.ModelProto:
    """x [batch, 4] -> MatMul -> Relu -> MatMul -> y [batch, 3]; nodes unnamed if ``named`` is False."""
    rng = np.random.default_rng(3)
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h"], name="first" if named else ""),
        helper.make_node("Relu", ["h"], ["r"], name="relu" if named else ""),
        helper.make_node("MatMul", ["r", "W2"], ["y"], name="second" if named else ""),
    ]
    graph = helper.make_graph(
        nodes,
        "two_matmuls",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [
            numpy_helper.from_array(rng.standard_normal((4, 5)).astype(np.float32), "W1"),
            numpy_helper.from_array(rng.standard_normal((5, 3)).astype(np.float32), "W2"),
        ],
    )
    return model_proto(graph)


def conv_map() -> onnx.ModelProto:
    """A one-Conv model with a 4-D output: x [batch, 1, 8, 8] -> y [batch, 2, 8, 8] (no classifier output)."""
    weight = np.random.default_rng(5).standard_normal((2, 1, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "W"], ["y"], name="conv", pads=[1, 1, 1, 1])],
        "conv_map",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2, 8, 8])],
        [numpy_helper.from_array(weight, "W")],
    )
    return model_proto(graph)


def relu_only(batch: str | int = "batch") -> onnx.ModelProto:
    """y = Relu(x), [batch, 4]: nothing for INT8 or FP16 to convert."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        "relu_only",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])],
    )
    return model_proto(graph)


@dataclass(frozen=True)
class QdqReport:
    """What a Q/DQ model holds, read straight from the ONNX file."""

    compute_ops: Counter[str]
    """Conv/MatMul/Gemm nodes by type."""
    int8_weight_ops: list[str]
    """Names of compute nodes whose weight input is a DequantizeLinear of an INT8 initializer."""
    float_weight_ops: list[str]
    """Names of compute nodes whose weight input is a plain float initializer."""
    quantized_activation_ops: list[str]
    """Compute nodes whose data input comes out of a DequantizeLinear."""
    activation_zero_points: list[np.ndarray]
    """Zero points of every QuantizeLinear (activations)."""
    weight_zero_points: list[np.ndarray]
    weight_scales: dict[str, np.ndarray]
    """Scale of each quantized compute node's weight, by node name."""
    weight_dtypes: set[int]
    qdq_nodes: int
    opset: int


def inspect_qdq(path: str | Path) -> QdqReport:
    proto = onnx.load(str(path))
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    for node in graph.node:  # Constant nodes hold tensors too
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    inits[node.output[0]] = attribute.t
    producer = {out: node for node in graph.node for out in node.output}
    compute = [n for n in graph.node if n.op_type in COMPUTE_OPS]
    int8_ops, float_ops, act_ops = [], [], []
    weight_zps, weight_scales, weight_dtypes = [], {}, set()
    for node in compute:
        weight = node.input[1]
        source = producer.get(weight)
        if source is not None and source.op_type == "DequantizeLinear" and source.input[0] in inits:
            stored = inits[source.input[0]]
            weight_dtypes.add(stored.data_type)
            if stored.data_type in (TensorProto.INT8, TensorProto.UINT8):
                int8_ops.append(node.name)
                weight_scales[node.name] = numpy_helper.to_array(inits[source.input[1]])
                if len(source.input) > 2:
                    weight_zps.append(numpy_helper.to_array(inits[source.input[2]]))
        elif weight in inits and inits[weight].data_type == TensorProto.FLOAT:
            float_ops.append(node.name)
        data = producer.get(node.input[0])
        if data is not None and data.op_type == "DequantizeLinear":
            act_ops.append(node.name)
    activation_zps = [
        numpy_helper.to_array(inits[n.input[2]])
        for n in graph.node
        if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits
    ]
    return QdqReport(
        compute_ops=Counter(n.op_type for n in compute),
        int8_weight_ops=int8_ops,
        float_weight_ops=float_ops,
        quantized_activation_ops=act_ops,
        activation_zero_points=activation_zps,
        weight_zero_points=weight_zps,
        weight_scales=weight_scales,
        weight_dtypes=weight_dtypes,
        qdq_nodes=sum(1 for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")),
        opset=next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
    )


def compute_ops_of(path: str | Path) -> Counter[str]:
    """Conv/MatMul/Gemm nodes of a float model (for comparison with its quantized version)."""
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node if n.op_type in COMPUTE_OPS)


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
