"""Multiply-accumulates per inference of the bundled models, for the Raspberry Pi 4B estimate in docker/README.md.

    python docker/macs.py [MODEL[@HxW]...]

Counts Conv, ConvTranspose, Gemm and MatMul (the layers that carry a CNN's arithmetic) from ONNX shape
inference at batch 1; element-wise layers, pooling and activations are left out, as published MAC counts of
MobileNets leave them out. Default: every bundled model at its card shape, plus ppocr-det at 224x224.
"""

from __future__ import annotations

import math
import sys

import onnx
from onnx import shape_inference

import edgerun


def _dims(value: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value for d in value.type.tensor_type.shape.dim]


def count_macs(model: onnx.ModelProto, input_shapes: dict[str, list[int]]) -> int:
    """MACs of one inference with the graph inputs fixed to ``input_shapes`` (name -> shape)."""
    graph = model.graph
    for value in graph.input:
        if value.name in input_shapes:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, input_shapes[value.name], strict=True):
                dim.ClearField("dim_param")
                dim.dim_value = size
    inferred = shape_inference.infer_shapes(model).graph
    shapes = {v.name: _dims(v) for v in [*inferred.value_info, *inferred.input, *inferred.output]}
    shapes.update({t.name: list(t.dims) for t in graph.initializer})
    total = 0
    for node in inferred.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            weight = shapes[node.input[1]]  # Conv [M, C/g, kh, kw]; ConvTranspose [C, M/g, kh, kw]
            big = node.output[0] if node.op_type == "Conv" else node.input[0]
            spatial = math.prod(shapes[big][2:])
            total += spatial * math.prod(weight)
        elif node.op_type in ("Gemm", "MatMul"):
            a, b = shapes[node.input[0]], shapes[node.input[1]]
            trans_b = any(att.name == "transB" and att.i for att in node.attribute)
            n = b[-2] if trans_b else b[-1]
            total += math.prod(a) * n
    return total


def main(argv: list[str]) -> None:
    specs = argv or [*edgerun.models.names(), "ppocr-det@224x224"]
    for spec in specs:
        name, _, size = spec.partition("@")
        card = edgerun.models.card(name)
        model = onnx.load(str(edgerun.models.path(name)))
        first = model.graph.input[0]
        card_shape = (card.input_shapes or {}).get(first.name)
        shape = list(card_shape) if card_shape else [d.dim_value or 1 for d in first.type.tensor_type.shape.dim]
        shape[0] = 1
        if size:
            shape[-2:] = [int(v) for v in size.split("x")]
        macs = count_macs(model, {first.name: shape})
        print(f"{spec:<22} input {'x'.join(map(str, shape)):<14} {macs / 1e6:10.2f} M MACs")


if __name__ == "__main__":
    main(sys.argv[1:])
