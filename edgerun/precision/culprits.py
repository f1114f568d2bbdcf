"""Nodes a lower precision cannot represent, named from measured ranges before any bisection.

FP16 (largest finite value 65504, 11 significant bits): a node whose weights exceed the range
(the converter would clamp them), a node whose output exceeds it (inf downstream; its consumers
must read it in FP32 too), and a subtraction or normalisation whose input is so large that
FP16's step there is a visible share of the result. INT8 (one scale per tensor for
activations): a Concat joining inputs whose ranges differ so much that the smaller gets a
handful of the 255 levels, and an output whose feature slices differ that much (YOLO heads
concatenate pixel boxes, 0..640, with class scores, 0..1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgerun.precision.activations import TensorStats

if TYPE_CHECKING:
    import onnx

FP16_MAX = 65504.0
FP16_STEP = 2.0**-11
"""Half the spacing of FP16 values relative to their magnitude: the rounding error of one value."""
CANCELLATION_SHARE = 0.01
"""A subtraction/normalisation is a culprit when FP16 rounding of its input is this share of its output's range."""
INT8_RANGE_RATIO = 32.0
"""Inputs (or slices) of one INT8 tensor whose ranges differ more than this: the small one gets < 4 of 127 steps."""
_CANCELLING_OPS = ("Sub", "BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization")


@dataclass(frozen=True)
class Culprit:
    """A node to keep in higher precision, and the measured reason."""

    node: str
    op_type: str
    why: str


def fp16_culprits(model: onnx.ModelProto, stats: Mapping[str, TensorStats]) -> list[Culprit]:
    """Nodes of ``model`` (FP32, prepared for conversion) that FP16 cannot carry, in graph order."""
    weights = _weights(model)
    consumers = _consumers(model)
    found: dict[str, Culprit] = {}

    def add(node: onnx.NodeProto, why: str) -> None:
        found.setdefault(node.name, Culprit(node.name, node.op_type, why))

    for node in model.graph.node:
        for name in node.input:
            if name in weights and (peak := float(np.max(np.abs(weights[name])))) > FP16_MAX:
                add(node, f"weight '{name}' reaches {peak:.3g} > {FP16_MAX:g}, FP16's largest value")
        for name in node.output:
            peak = stats[name].max_abs if name in stats else 0.0
            if peak > FP16_MAX:
                add(node, f"output '{name}' reaches {peak:.3g} > {FP16_MAX:g}, FP16's largest value")
                for consumer in consumers.get(name, []):
                    add(consumer, f"reads '{name}', which reaches {peak:.3g} (FP16 would make it inf)")
        if node.op_type in _CANCELLING_OPS and node.input and node.output[0] in stats and node.input[0] in stats:
            size_in, size_out = stats[node.input[0]].max_abs, stats[node.output[0]].max_abs
            gain = _normalisation_gain(node, weights)
            error = size_in * FP16_STEP * gain
            if size_out > 0 and error > CANCELLATION_SHARE * size_out:
                add(
                    node,
                    f"input '{node.input[0]}' reaches {size_in:.3g}, where FP16 rounds by {size_in * FP16_STEP:.3g}; "
                    f"after the {node.op_type} that is {error / size_out:.1%} of its output's range {size_out:.3g}",
                )
    return _in_graph_order(model, found.values())


def int8_culprits(model: onnx.ModelProto, stats: Mapping[str, TensorStats]) -> list[Culprit]:
    """Nodes of ``model`` (FP32, prepared for quantization) whose tensors one INT8 scale cannot represent."""
    found: dict[str, Culprit] = {}
    outputs = {o.name for o in model.graph.output}
    for node in model.graph.node:
        if node.op_type == "Concat":
            ranges = [(name, stats[name].max_abs) for name in node.input if name in stats and stats[name].max_abs > 0]
            if len(ranges) > 1:
                (small, low), (large, high) = min(ranges, key=lambda r: r[1]), max(ranges, key=lambda r: r[1])
                if high > INT8_RANGE_RATIO * low:
                    found[node.name] = Culprit(
                        node.name,
                        node.op_type,
                        f"joins '{large}' (range {high:.3g}) and '{small}' (range {low:.3g}): one INT8 scale "
                        f"leaves the smaller {127 * low / high:.1f} of 127 steps",
                    )
        for name in node.output:
            if name in outputs and name in stats and node.name not in found:
                spread = [v for v in stats[name].slice_max if v > 0]
                if len(spread) > 1 and max(spread) > INT8_RANGE_RATIO * min(spread):
                    found[node.name] = Culprit(
                        node.name,
                        node.op_type,
                        f"output '{name}' has feature slices ranging {min(spread):.3g} to {max(spread):.3g}: one "
                        f"INT8 scale leaves the smallest {127 * min(spread) / max(spread):.1f} of 127 steps",
                    )
    return _in_graph_order(model, found.values())


def _in_graph_order(model: onnx.ModelProto, culprits: Iterable[Culprit]) -> list[Culprit]:
    index = {node.name: i for i, node in enumerate(model.graph.node)}
    return sorted(culprits, key=lambda c: index.get(c.node, len(index)))


def _weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    from onnx import TensorProto, numpy_helper

    floats = (TensorProto.FLOAT, TensorProto.DOUBLE)
    arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type in floats}
    return {name: array for name, array in arrays.items() if array.size}  # empty tensors have no range


def _consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    found: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


def _normalisation_gain(node: onnx.NodeProto, weights: Mapping[str, np.ndarray]) -> float:
    """How much a node amplifies an absolute error of its first input (BatchNormalization: max |scale / std|)."""
    if node.op_type != "BatchNormalization" or len(node.input) < 5:
        return 1.0
    scale, variance = weights.get(node.input[1]), weights.get(node.input[4])
    if scale is None or variance is None:
        return 1.0
    epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
    return float(np.max(np.abs(scale) / np.sqrt(np.maximum(variance, 0) + epsilon)))
