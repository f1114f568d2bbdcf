"""FP16 as a GPU computes it, checked on a CPU: FP32 arithmetic with every FP16 tensor rounded to FP16.

ONNX Runtime's x86 kernels have no FP16 version of most operators: it computes them in FP32 and
drops the casts between neighbours, so an FP16 model run there never rounds (or overflows) its
activations the way TensorRT, which stores them in FP16, does. The guard therefore checks a twin
of the FP16 model: the same graph with FP32 weights holding the FP16 values, and a lossy
FP32 -> FP16 -> FP32 cast pair after every tensor the FP16 model stores in FP16 (ONNX Runtime keeps
lossy pairs). Overflow becomes inf and every stored value is rounded, as on the device; only the
accumulation inside one operator stays FP32 (TensorRT accumulates convolutions and GEMMs in FP32 too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx


def rounded_twin(fp16: onnx.ModelProto) -> onnx.ModelProto:
    """The FP32-arithmetic twin of ``fp16`` that rounds every FP16-stored tensor (see the module doc)."""
    import onnx
    from onnx import TensorProto, helper

    half, single = TensorProto.FLOAT16, TensorProto.FLOAT
    model = onnx.ModelProto()
    model.CopyFrom(fp16)
    graph = model.graph
    stored = _half_tensors(model)
    for index, tensor in enumerate(graph.initializer):
        if tensor.data_type == half:
            graph.initializer[index].CopyFrom(_as_single(tensor))
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == half:
                attribute.t.CopyFrom(_as_single(attribute.t))
            elif attribute.name in ("to", "dtype") and attribute.i == half:
                attribute.i = single  # a Cast to FP16 now rounds through the pair added below
        nodes.append(node)
        for position, name in enumerate(node.output):
            if name in stored:
                raw = f"{name}__fp32"
                node.output[position] = raw
                nodes.append(helper.make_node("Cast", [raw], [f"{name}__fp16"], to=half, name=f"{raw}__round"))
                nodes.append(helper.make_node("Cast", [f"{name}__fp16"], [name], to=single, name=f"{name}__back"))
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # retyped throughout: let ONNX Runtime infer them again
    for value in [*graph.input, *graph.output]:
        if value.type.tensor_type.elem_type == half:
            value.type.tensor_type.elem_type = single
    return model


def _half_tensors(model: onnx.ModelProto) -> set[str]:
    """Names of the node outputs the FP16 model stores in FP16 (from ONNX's shape inference)."""
    import onnx
    from onnx import TensorProto

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a graph ONNX cannot infer: fall back to what the model declares
        inferred = model
    types = {
        value.name: value.type.tensor_type.elem_type
        for value in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]
    }
    return {
        name for node in model.graph.node for name in node.output if name and types.get(name) == TensorProto.FLOAT16
    }


def _as_single(tensor: onnx.TensorProto) -> onnx.TensorProto:
    from onnx import numpy_helper

    return numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32), tensor.name)
