"""Small ONNX models built in code for tests: multi-input, broken, unsafe or unsupported ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def _model(graph: onnx.GraphProto, opset: int = 17, extra_domains: tuple[str, ...] = ()) -> onnx.ModelProto:
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in extra_domains]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="edgerun-tests")
    model.ir_version = 8
    return model


def two_input_add(batch: str | int = "batch") -> onnx.ModelProto:
    """y = a + b, both [batch, 4] float32, plus n = shape-independent int64 passthrough of c [batch]."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"]), helper.make_node("Identity", ["c"], ["n"])],
        "two_input_add",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [batch, 4]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [batch, 4]),
            helper.make_tensor_value_info("c", TensorProto.INT64, [batch]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4]),
            helper.make_tensor_value_info("n", TensorProto.INT64, [batch]),
        ],
    )
    return _model(graph)


def single_op(op: str, domain: str = "", opset: int = 17, extra_domains: tuple[str, ...] = ()) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], domain=domain)],
        f"single_{op}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    return _model(graph, opset=opset, extra_domains=extra_domains)


def matmul_with_weight(dtype: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """y = x @ W with W stored as ``dtype`` (FLOAT or FLOAT16), x/y in the same type."""
    np_type = np.float16 if dtype == TensorProto.FLOAT16 else np.float32
    weight = numpy_helper.from_array(np.arange(16, dtype=np_type).reshape(4, 4) / 16, "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "matmul",
        [helper.make_tensor_value_info("x", dtype, ["batch", 4])],
        [helper.make_tensor_value_info("y", dtype, ["batch", 4])],
        [weight],
    )
    return _model(graph)


def with_external_weight(folder: Path, location: str) -> Path:
    """A MatMul model whose weight lives in an external file at ``location`` (relative to ``folder``)."""
    model = matmul_with_weight()
    weight = model.graph.initializer[0]
    data = numpy_helper.to_array(weight)
    weight.ClearField("raw_data")
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    entry = weight.external_data.add()
    entry.key, entry.value = "location", location
    target = (folder / location).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data.astype(np.float32).tobytes())
    return save(model, folder / "external.onnx")
