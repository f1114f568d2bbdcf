"""FP16 conversion: FP16 weights and arithmetic, FP32 inputs and outputs, checked by running it.

GPUs (TensorRT, ONNX Runtime CUDA) run FP16 at about twice FP32's rate; TensorRT 11 only
builds FP16 engines from models whose weights are FP16 already. Inputs and outputs stay
FP32 so that callers and preprocessing do not change. Operators whose FP16 results drift or
overflow (exponentials, logarithms, powers, reductions over many elements) stay FP32 by
default; ``block`` adds more.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgerun.errors import ConfigError, ConversionError, EdgerunError
from edgerun.runtime.modelfile import ModelFile, graph_tensors
from edgerun.storage import atomic_path

if TYPE_CHECKING:
    import onnx

SENSITIVE_OPS = (
    "Exp",
    "Log",
    "Pow",
    "Reciprocal",
    "Sqrt",
    "Erf",
    "Softplus",
    "ReduceSum",
    "ReduceMean",
    "ReduceProd",
    "ReduceSumSquare",
    "ReduceLogSumExp",
)
"""Kept in FP32 unless the caller says otherwise: where FP16 overflows or loses most precision."""


@dataclass(frozen=True)
class ConvertResult:
    output: Path
    fp16_tensors: int
    clamped_values: int
    """Weight values too small (|w| < 5.96e-8, not 0) or too large (> 65504) for FP16, which the
    converter clamps to FP16's range."""
    blocked_ops: tuple[str, ...]
    max_abs_error: float | None
    """Largest output difference to the FP32 model on seeded random inputs (None if not runnable)."""
    validated_shapes: dict[str, list[int]] | None
    seconds: float


def convert_fp16(
    model: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    block: Sequence[str] = SENSITIVE_OPS,
    shapes: Mapping[str, Sequence[int]] | None = None,
) -> ConvertResult:
    """Write an FP16 version of ``model`` to ``output`` and check it against the FP32 model.

    ``shapes`` gives concrete input shapes for models with free dimensions (the validation run
    needs them); without them such a model is only loaded, not run.
    """
    import onnx
    from onnxconverter_common import float16

    started = time.perf_counter()
    source = ModelFile.open(model)
    if source.precision != "fp32":
        raise ConversionError(
            f"{source.path}: FP16 conversion starts from an fp32 model, this one is {source.precision}"
        )
    proto = onnx.load(str(source.path))
    blocked = tuple(sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(block)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            converted = float16.convert_float_to_float16(proto, keep_io_types=True, op_block_list=list(blocked))
        except Exception as exc:
            raise ConversionError(f"{source.path}: FP16 conversion failed: {exc}") from exc
    del caught  # the converter warns once per tensor; the count below is per value
    clamped = _out_of_fp16_range(proto)
    fp16_count = sum(1 for t in graph_tensors(converted.graph) if t.data_type == onnx.TensorProto.FLOAT16)
    if fp16_count == 0:
        raise ConversionError(f"{source.path}: FP16 conversion changed no weights (no float tensors to convert)")
    output = Path(output)
    with atomic_path(output) as temp:
        onnx.save(converted, str(temp))
        error, used = _validate(source, temp, shapes)
    return ConvertResult(output, fp16_count, clamped, blocked, error, used, time.perf_counter() - started)


def _validate(
    source: ModelFile, candidate: Path, shapes: Mapping[str, Sequence[int]] | None
) -> tuple[float | None, dict[str, list[int]] | None]:
    """Load the converted model (fail = error) and, where shapes are known, compare it with FP32."""
    from edgerun.data.synthetic import random_feeds
    from edgerun.runtime.reference import open_on_cpu

    try:
        converted = open_on_cpu(candidate)
    except EdgerunError as exc:
        raise ConversionError(f"{source.path}: the FP16 model does not load: {exc}") from exc
    try:
        feeds = random_feeds(source.inputs, None, shapes, seed=0)
    except EdgerunError as exc:
        converted.close()
        if shapes is None:  # free dimensions and no shapes: loading is all that can be checked
            return None, None
        raise ConfigError(f"{source.path}: the shapes given for the validation run do not fit: {exc}") from exc
    unknown = sorted(set(shapes or {}) - {s.name for s in source.inputs})
    if unknown:
        converted.close()
        raise ConfigError(f"{source.path}: shapes given for unknown input(s) {', '.join(unknown)}")
    with converted, open_on_cpu(source.path) as reference:
        got, want = converted.run(feeds), reference.run(feeds)
    error = max(float(np.max(np.abs(got[k].astype(np.float64) - want[k]))) if want[k].size else 0.0 for k in want)
    if not np.isfinite(error):
        raise ConversionError(f"{source.path}: the FP16 model produces non-finite outputs where FP32 does not")
    return error, {k: list(v.shape) for k, v in feeds.items()}


def _out_of_fp16_range(proto: onnx.ModelProto) -> int:
    """How many float32 weight values FP16 cannot hold (they get clamped)."""
    from onnx import TensorProto, numpy_helper

    count = 0
    for tensor in graph_tensors(proto.graph):
        if tensor.data_type != TensorProto.FLOAT:
            continue
        magnitude = np.abs(numpy_helper.to_array(tensor))
        count += int(np.count_nonzero((magnitude > 65504) | ((magnitude > 0) & (magnitude < 5.96e-8))))
    return count
