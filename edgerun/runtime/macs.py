"""Multiply-accumulates of an ONNX graph at given input shapes, counted from the graph itself.

What a pruning or distillation step buys in compute, measured on the file a device runs (not on
the PyTorch module it came from). Counted: Conv / ConvTranspose / ConvInteger / QLinearConv
(output elements x input channels per group x kernel), Gemm and MatMul and their integer forms
(output elements x the reduced dimension). Element-wise ops, pooling and normalisation are not
multiply-accumulates of weights and are left out, as in the usual MAC counts of CNNs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import onnx

from edgerun.errors import InputError, ModelError

_CONV = {"Conv", "ConvInteger", "QLinearConv"}
_MATMUL = {"MatMul", "MatMulInteger", "QLinearMatMul", "Gemm"}
_WEIGHT_INPUT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3, "ConvTranspose": 1}


def count_macs(path: str | Path, shapes: Mapping[str, Sequence[int]]) -> int:
    """MACs of one run of the model at ``path`` with inputs of ``shapes`` (every input of the graph)."""
    model = onnx.load(str(path), load_external_data=False)  # dims are in the graph; weights are not needed
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    for value in graph.input:
        if value.name in initializers:
            continue
        if value.name not in shapes:
            raise InputError(f"{path}: no shape given for input {value.name}", tensor=value.name,
                             expected="a shape for every input", got=", ".join(shapes) or "none")  # fmt: skip
        dims = value.type.tensor_type.shape.dim
        del dims[:]
        for size in shapes[value.name]:
            dims.add().dim_value = int(size)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
    except Exception as exc:  # onnx raises its own InferenceError, or ValueError past 2 GB
        raise ModelError(Path(path), f"shape inference failed, so its MACs cannot be counted: {exc}") from exc
    known = {v.name: _dims(v) for v in (*inferred.value_info, *inferred.input, *inferred.output)}
    for init in graph.initializer:
        known[init.name] = [int(d) for d in init.dims]
    total = 0
    for node in graph.node:
        out = _sized(known, node.output[0]) if node.output else None
        if out is None:
            continue
        if node.op_type in _CONV or node.op_type == "ConvTranspose":
            weight = _sized(known, node.input[_WEIGHT_INPUT[node.op_type]])
            source = _sized(known, node.input[0])
            if weight is None or source is None:
                continue
            # per output element: in/group x kernel; ConvTranspose: per input element, out/group x kernel
            total += math.prod(source if node.op_type == "ConvTranspose" else out) * math.prod(weight[1:])
        elif node.op_type in _MATMUL:
            first = _sized(known, node.input[0])
            if first is None:
                continue
            reduced = first[0] if node.op_type == "Gemm" and _attribute(node, "transA") else first[-1]
            total += math.prod(out) * reduced
    return int(total)


def _sized(known: Mapping[str, list[int | None]], name: str) -> list[int] | None:
    """The shape of ``name`` when shape inference knows every dimension, else None."""
    dims = known.get(name)
    if not dims or any(d is None for d in dims):
        return None
    return [int(d) for d in dims if d is not None]


def _dims(value: onnx.ValueInfoProto) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def _attribute(node: onnx.NodeProto, name: str) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), 0)
