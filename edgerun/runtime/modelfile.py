"""`ModelFile`: an ONNX file checked, hashed and described before any backend sees it.

A model is parsed with ``onnx`` once, without its external weights, to read its I/O specs,
opsets and stored precision; the proto is dropped afterwards. Problems that would otherwise
surface as a protobuf or ONNX Runtime traceback (missing, empty, not ONNX, truncated,
external data pointing outside the model's folder) become one `ModelError` naming the file.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgerun.errors import ModelError, ModelNotFoundError
from edgerun.roles import ModelRoles
from edgerun.runtime.graphroles import all_nodes, infer_roles
from edgerun.specs import UNNAMED_DIM, Dim, TensorSpec
from edgerun.storage import file_sha256

if TYPE_CHECKING:
    from onnx import GraphProto, ModelProto, TensorProto, ValueInfoProto

_QUANTIZED_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "MatMulInteger",
        "ConvInteger",
        "DynamicQuantizeLinear",
    }
)


@dataclass(frozen=True)
class ModelFile:
    """A validated ONNX model on disk and what edgerun needs to know about it."""

    path: Path
    sha256: str
    size_bytes: int
    """Model file plus its external data files."""
    ir_version: int
    opsets: dict[str, int]
    producer: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    precision: str
    """Stored precision: ``fp32``, ``fp16``, ``bf16`` or ``int8`` (Q/DQ or integer ops)."""
    external_data: tuple[Path, ...] = ()
    parameters: int = 0
    """Weight elements: float tensors and quantized weights, not Q/DQ scales or zero points."""
    operators: dict[str, int] = field(default_factory=dict)
    """Nodes per operator type, subgraphs included: what INT8's automatic mode decides on (no second parse)."""
    activation_matmuls: int = 0
    """MatMuls with no weight among their inputs (attention's Q @ K^T), subgraphs included."""
    roles: ModelRoles = field(default_factory=lambda: ModelRoles((), {}))
    """What each input means (batch axis, token ids, mask, state, constant), as the graph says
    (`edgerun.runtime.graphroles`); cards and callers override it in `edgerun.loading.load`."""

    @property
    def opset(self) -> int:
        """Opset of the default ONNX domain."""
        return self.opsets.get("", self.opsets.get("ai.onnx", 0))

    @property
    def has_dynamic_batch(self) -> bool:
        """Every batched input takes any batch size on its own batch axis (constants have none)."""
        axes = self.roles.batch_axes
        batched = [(spec, axes.get(spec.name, 0)) for spec in self.inputs if axes.get(spec.name, 0) is not None]
        return bool(batched) and all(
            axis is not None and axis < spec.rank and isinstance(spec.shape[axis], str) for spec, axis in batched
        )

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> ModelFile:
        """Check and describe the ONNX file at ``path``; raise `ModelError` if unusable."""
        path = Path(path)
        _check_is_regular_nonempty_file(path)
        proto = _parse(path)
        external = _external_data_files(proto, path)
        _check_structure(proto, path, has_external_data=bool(external))
        inputs, outputs = _io_specs(proto.graph, path)
        return cls(
            path=path,
            sha256=file_sha256(path, *external),
            size_bytes=path.stat().st_size + sum(p.stat().st_size for p in external),
            ir_version=int(proto.ir_version),
            opsets={op.domain: int(op.version) for op in proto.opset_import},
            producer=" ".join(s for s in (proto.producer_name, proto.producer_version) if s),
            inputs=inputs,
            outputs=outputs,
            precision=_stored_precision(proto.graph),
            external_data=tuple(external),
            parameters=_parameter_count(proto.graph),
            **_operator_census(proto.graph),
            roles=infer_roles(proto.graph, inputs, outputs),
        )


def _check_is_regular_nonempty_file(path: Path) -> None:
    if not path.exists():
        raise ModelNotFoundError(path)
    if path.is_dir():
        raise ModelError(path, "is a directory, expected an .onnx model file")
    if not path.is_file():
        raise ModelError(path, "is not a regular file, expected an .onnx model file")
    if path.stat().st_size == 0:
        raise ModelError(path, "is empty (0 bytes), expected an ONNX model")
    if not os.access(path, os.R_OK):
        raise ModelError(path, "is not readable (permission denied)")


def _parse(path: Path) -> ModelProto:
    import onnx
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped,unused-ignore]

    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(
            path, f"not a readable ONNX model (corrupt, truncated or another file type): {_whole_message(exc)}"
        ) from exc
    except OSError as exc:
        raise ModelError(path, f"cannot be read: {exc.strerror or exc}") from exc
    if proto.ir_version < 1 or not proto.opset_import or not proto.graph.node:
        raise ModelError(
            path,
            "not a valid ONNX model (no IR version, opset or graph nodes); "
            "the file may be truncated or of another type",
        )
    return proto


def _check_structure(proto: ModelProto, path: Path, has_external_data: bool) -> None:
    """ONNX's own checker: operators known to their opset, graph well formed.

    With external data the checker must get the path, so it resolves weight files from the
    model's folder (only after edgerun has checked that they stay inside it).
    """
    import onnx

    try:
        onnx.checker.check_model(str(path) if has_external_data else proto)
    except onnx.checker.ValidationError as exc:
        raise ModelError(path, f"invalid ONNX model: {_whole_message(exc)}") from exc


def _whole_message(exc: BaseException) -> str:
    """The library's whole message on one line: a checker's node dump after "of node:" is the useful part."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def graph_tensors(graph: GraphProto) -> Iterator[TensorProto]:
    """Initializers and constant tensors of a graph and of its subgraphs (If, Loop, Scan)."""
    from onnx import AttributeProto

    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == AttributeProto.TENSOR:
                yield attr.t
            elif attr.type == AttributeProto.TENSORS:
                yield from attr.tensors
            elif attr.type == AttributeProto.GRAPH:
                yield from graph_tensors(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from graph_tensors(sub)


def _external_data_files(proto: ModelProto, path: Path) -> list[Path]:
    """External data files the model references, refusing any that leave its folder."""
    from onnx import TensorProto
    from onnx.external_data_helper import ExternalDataInfo

    folder = path.parent.resolve()
    files: dict[Path, None] = {}
    for tensor in graph_tensors(proto.graph):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        location = ExternalDataInfo(tensor).location
        if not location:
            raise ModelError(path, f"tensor '{tensor.name}' is stored externally but names no file")
        target = (folder / location).resolve()
        if os.path.isabs(location) or not target.is_relative_to(folder):
            raise ModelError(
                path,
                f"external data '{location}' of tensor '{tensor.name}' points outside the model's "
                f"folder {folder}; refusing to read it",
            )
        if not target.is_file():
            raise ModelError(path, f"external data file '{location}' of tensor '{tensor.name}' is missing")
        files[target] = None
    return sorted(files)


def _io_specs(graph: GraphProto, path: Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    initializer_names = {t.name for t in graph.initializer}
    inputs = tuple(_spec(v, path) for v in graph.input if v.name not in initializer_names)
    outputs = tuple(_spec(v, path) for v in graph.output)
    if not inputs:
        raise ModelError(path, "the model has no inputs")
    if not outputs:
        raise ModelError(path, "the model has no outputs")
    return inputs, outputs


def _spec(value: ValueInfoProto, path: Path) -> TensorSpec:
    from onnx import helper

    if not value.type.HasField("tensor_type"):
        kind = value.type.WhichOneof("value") or "untyped"
        raise ModelError(path, f"I/O '{value.name}' is a {kind}, edgerun handles tensors only")
    tensor_type = value.type.tensor_type
    try:
        dtype: np.dtype[Any] = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
    except (KeyError, TypeError) as exc:
        raise ModelError(path, f"I/O '{value.name}' has an unsupported element type {tensor_type.elem_type}") from exc
    dims: list[Dim] = []
    for d in tensor_type.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            dims.append(str(d.dim_param))
        else:  # unset, 0 or -1 (some exporters write -1 for "dynamic")
            dims.append(UNNAMED_DIM)
    return TensorSpec(value.name, tuple(dims), dtype)


def _stored_precision(graph: GraphProto) -> str:
    """The precision the weights are stored in, by element count of float tensors."""
    from onnx import TensorProto

    if any(node.op_type in _QUANTIZED_OPS for node in graph.node):
        return "int8"
    names: dict[int, str] = {TensorProto.FLOAT: "fp32", TensorProto.FLOAT16: "fp16", TensorProto.BFLOAT16: "bf16"}
    counts: Counter[str] = Counter()
    for tensor in graph_tensors(graph):
        if tensor.data_type in names:
            counts[names[tensor.data_type]] += int(np.prod(tensor.dims, dtype=np.int64))
    return counts.most_common(1)[0][0] if counts else "fp32"


_SCALE_AND_ZERO_POINT_INPUTS: dict[str, tuple[int, ...]] = {
    "QuantizeLinear": (1, 2),
    "DequantizeLinear": (1, 2),
    "MatMulInteger": (2, 3),
    "ConvInteger": (2, 3),
    "QLinearConv": (1, 2, 4, 5, 6, 7),
    "QLinearMatMul": (1, 2, 4, 5, 6, 7),
    "QGemm": (1, 2, 4, 5, 7, 8),
    "QLinearAdd": (1, 2, 4, 5, 6, 7),
    "QLinearMul": (1, 2, 4, 5, 6, 7),
    "DynamicQuantizeMatMul": (2, 3),
    "MatMulIntegerToFloat": (2, 3, 4, 5),
    "MatMulNBits": (2, 3),
}
"""Inputs that are quantization parameters, not weights, per operator (ONNX and com.microsoft)."""

_WEIGHT_INPUTS: dict[str, tuple[int, ...]] = {
    "DequantizeLinear": (0,),
    "MatMulInteger": (0, 1),
    "ConvInteger": (0, 1),
    "QLinearConv": (3, 8),
    "QLinearMatMul": (0, 3),
    "QGemm": (0, 3, 6),
    "DynamicQuantizeMatMul": (1, 4),
    "MatMulIntegerToFloat": (1, 6),
    "MatMulNBits": (1,),
}
"""Inputs that hold (quantized) weights or biases of any integer type, such as QLinearConv's int32 bias."""


def _operator_census(graph: GraphProto) -> dict[str, Any]:
    """``operators`` (nodes per type) and ``activation_matmuls`` (MatMuls reading no weight) of ``graph``."""
    weights = {name for name, _ in _named_tensors(graph)}
    nodes = list(all_nodes(graph))
    return {
        "operators": dict(Counter(node.op_type for node in nodes)),
        "activation_matmuls": sum(
            node.op_type == "MatMul" and len(node.input) == 2 and not set(node.input) & weights for node in nodes
        ),
    }


def _named_tensors(graph: GraphProto) -> Iterator[tuple[str, TensorProto]]:
    """Each initializer and constant tensor with the name the graph uses for it (a Constant's output)."""
    from onnx import AttributeProto

    for tensor in graph.initializer:
        yield tensor.name, tensor
    for node in all_nodes(graph):
        for attr in node.attribute:
            if attr.type == AttributeProto.TENSOR:
                name = node.output[0] if node.op_type == "Constant" and node.output else attr.t.name
                yield name, attr.t
            elif attr.type == AttributeProto.TENSORS:
                for tensor in attr.tensors:
                    yield tensor.name, tensor
            elif attr.type == AttributeProto.GRAPH:
                yield from ((t.name, t) for t in attr.g.initializer)
            elif attr.type == AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from ((t.name, t) for t in sub.initializer)


def _parameter_count(graph: GraphProto) -> int:
    """Elements of weight tensors, comparable between an fp32 model and its fp16, Q/DQ and dynamically quantized
    versions: float tensors and 8-bit (or narrower) integer tensors, wider integer tensors only where a quantized
    operator takes weights (an int32 bias), never the scales and zero points of quantization."""
    from onnx import TensorProto

    floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}
    narrow = {TensorProto.INT8, TensorProto.UINT8, TensorProto.INT4, TensorProto.UINT4}
    params: set[str] = set()
    weights: set[str] = set()
    for node in all_nodes(graph):
        for index in _SCALE_AND_ZERO_POINT_INPUTS.get(node.op_type, ()):
            if index < len(node.input):
                params.add(node.input[index])
        for index in _WEIGHT_INPUTS.get(node.op_type, ()):
            if index < len(node.input):
                weights.add(node.input[index])
    tensors = list(_named_tensors(graph))
    names = {name for name, _ in tensors}
    # ONNX Runtime's quantizers name a weight's parameters after it ("W_quantized", "W_scale", "W_zero_point");
    # dynamic quantization multiplies the scales in plain Mul nodes, where no operator table finds them.
    for name in names:
        if name.endswith("_quantized"):
            base = name[: -len("_quantized")]
            params.update((f"{base}_scale", f"{base}_zero_point"))
    total = 0
    for name, tensor in tensors:
        if name in params:
            continue
        if tensor.data_type in floats or tensor.data_type in narrow or name in weights:
            total += int(np.prod(tensor.dims, dtype=np.int64))
    return total
