"""Run FP32 and candidate models on check samples, and measure every intermediate tensor's range.

The guard needs both: model outputs to compare (`run_model`), and each node's measured output
range (`activation_stats`) to name the nodes FP16 or INT8 cannot represent before it falls back
to bisection. Models run in ONNX Runtime on the CPU from memory, one sample at a time for the
range pass so that a large model's intermediate tensors never all sit in memory at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgerun.errors import ConversionError

if TYPE_CHECKING:
    import onnx
    import onnxruntime


RANGE_SAMPLES = 4
"""Samples the range pass runs: peaks settle within a few, and each run keeps every intermediate tensor."""


@dataclass(frozen=True)
class TensorStats:
    """The largest magnitude a float tensor reached, overall and per slice of its feature axis."""

    name: str
    max_abs: float
    slice_max: tuple[float, ...] = ()
    """Max |value| per slice of the feature axis (axis 1; the last of [N, anchors, features]); empty below rank 3."""


def feature_axis(shape: tuple[int, ...]) -> int | None:
    """The axis whose slices mean different things (channels, box coordinates vs class scores)."""
    if len(shape) < 3:
        return None
    if len(shape) == 3 and shape[2] < shape[1]:
        return 2
    return 1


def open_session(model: onnx.ModelProto | bytes, label: str) -> onnxruntime.InferenceSession:
    """An ONNX Runtime CPU session on a model held in memory; a model ORT rejects raises `ConversionError`."""
    import onnxruntime

    data = model if isinstance(model, bytes) else model.SerializeToString()
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    try:
        return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ConversionError(f"{label}: the converted model does not load in ONNX Runtime: {exc}") from exc


def run_model(
    session: onnxruntime.InferenceSession,
    inputs: Mapping[str, np.ndarray],
    label: str,
    axes: Mapping[str, int | None] | None = None,
    output_axes: Mapping[str, int | None] | None = None,
) -> dict[str, np.ndarray]:
    """All outputs for every sample: the whole batch at once, or one sample per call for models that fix
    their batch; samples lie along each input's batch axis (``axes``; default 0, None for constants), and
    along axis 0 of every output (each ``output_axes`` batch axis moved first)."""
    from edgerun.data.samples import run_in_chunks, sample_count

    axes = axes or {}
    names = [o.name for o in session.get_outputs()]
    count = sample_count(inputs, axes, label)
    batched = [i for i in session.get_inputs() if axes.get(i.name, 0) is not None and i.shape]
    step = count if all(not isinstance(i.shape[axes.get(i.name, 0) or 0], int) for i in batched) else 1

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return dict(zip(names, session.run(names, feed), strict=True))
        except Exception as exc:
            raise ConversionError(f"{label}: running the model on the check samples failed: {exc}") from exc

    return run_in_chunks(run, inputs, axes, step, label, output_axes)


def activation_stats(
    model: onnx.ModelProto,
    inputs: Mapping[str, np.ndarray],
    label: str,
    axes: Mapping[str, int | None] | None = None,
) -> dict[str, TensorStats]:
    """Measured ranges of every node output of the (FP32) ``model``'s top-level graph, over `RANGE_SAMPLES` samples."""
    import onnx

    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    present = {o.name for o in exposed.graph.output}
    for node in exposed.graph.node:
        for name in node.output:
            if name and name not in present:
                exposed.graph.output.append(onnx.ValueInfoProto(name=name))
                present.add(name)
    session = open_session(exposed, label)
    names = [o.name for o in session.get_outputs()]
    from edgerun.data.samples import sample_count, take

    axes = axes or {}
    count = min(RANGE_SAMPLES, sample_count(inputs, axes, label))
    overall: dict[str, float] = {}
    slices: dict[str, np.ndarray] = {}
    for index in range(count):
        try:
            values = session.run(names, take(inputs, axes, slice(index, index + 1)))
        except Exception as exc:
            raise ConversionError(f"{label}: measuring activation ranges failed: {exc}") from exc
        for name, value in zip(names, values, strict=True):
            array = np.asarray(value)
            if array.dtype.kind != "f" or array.size == 0:
                continue
            magnitude = np.abs(array.astype(np.float32))
            overall[name] = max(overall.get(name, 0.0), float(np.nanmax(magnitude)))
            axis = feature_axis(array.shape)
            if axis is not None:
                other = tuple(a for a in range(array.ndim) if a != axis)
                per_slice = np.nanmax(magnitude, axis=other)
                previous = slices.get(name)
                slices[name] = per_slice if previous is None or previous.shape != per_slice.shape else (
                    np.maximum(previous, per_slice)
                )  # fmt: skip
    return {
        name: TensorStats(name, value, tuple(float(v) for v in slices.get(name, ()))) for name, value in overall.items()
    }
