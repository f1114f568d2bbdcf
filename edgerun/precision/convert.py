"""FP16 conversion: FP16 weights and arithmetic, FP32 inputs and outputs, checked by running it.

GPUs (TensorRT, ONNX Runtime CUDA) run FP16 at about twice FP32's rate; TensorRT 11 only
builds FP16 engines from models whose weights are FP16 already. Inputs and outputs stay
FP32 so that callers and preprocessing do not change. Operators whose FP16 results drift or
overflow (exponentials, logarithms, powers, reductions over many elements) stay FP32 by
default; ``block`` adds more op types and ``keep`` names single nodes (mixed precision).

The rewrite itself is onnxconverter-common's ``convert_float_to_float16``; this module prepares
its input and repairs its output where the converter gets a graph wrong:

- it converts (and clamps, at 1e4 by default) weights held in Constant nodes even when their reader
  is blocked: Constants become initializers first, and an initializer read by an FP32 and an FP16
  node is duplicated, so that kept nodes keep their weights in FP32;
- it names casts after nodes (``_output_cast_0`` for every unnamed one: the SSA error), declares
  graph outputs of blocked nodes FP16 and feeds FP32 outputs to FP16 readers: nodes get unique
  names and graph outputs are detached while it runs, then joined back in FP32;
- its topological sort ignores the outer values that If/Loop subgraphs read;
- it pairs a model's ``Cast(to=FLOAT)`` with its own casts and drops both, and leaves float32 in
  ``dtype`` attributes: such Casts stay FP32 (readers get an FP16 copy), ``dtype`` attributes become FP16.

Control-flow nodes (If, Loop, Scan: any node with a subgraph) stay FP32 whole, subgraphs included:
the converter's subgraph handling does not type outer-scope values consistently. So do operators
whose schema has no FP16 type for an input or output the node uses, and random generators.
"""

from __future__ import annotations

import heapq
import os
import time
import warnings
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgerun.errors import ConfigError, ConversionError, EdgerunError, ModelError
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

FP16_MAX = 65504.0
"""The largest finite FP16 value; weights beyond it are clamped to it."""
FP16_TINY = 2.0**-24
"""The smallest positive (subnormal) FP16 value; non-zero weights below it are raised to it."""

_FLOAT = 1  # onnx.TensorProto.FLOAT
_FLOAT16 = 10  # onnx.TensorProto.FLOAT16
_INNER = "__fp16_inner"  # suffix of graph outputs' tensors while the converter runs


@dataclass(frozen=True)
class ConvertResult:
    output: Path
    fp16_tensors: int
    clamped_values: int
    """Weight values converted to FP16 that FP16 cannot hold (|w| < 5.96e-8, not 0, or > 65504), which
    the converter clamps to FP16's range; weights kept in FP32 are not counted."""
    blocked_ops: tuple[str, ...]
    kept_nodes: tuple[str, ...]
    """Names of the nodes that compute in FP32 (blocked op types, ``keep``, control flow, ops without FP16),
    in graph order; Casts to float32, which compute nothing, are not listed."""
    total_nodes: int
    """Nodes of the prepared graph (Constant nodes not counted)."""
    max_abs_error: float | None
    """Largest output difference to the FP32 model on seeded random inputs (None if not runnable)."""
    validated_shapes: dict[str, list[int]] | None
    seconds: float


def convert_fp16(
    model: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    block: Sequence[str] = SENSITIVE_OPS,
    keep: Sequence[str] = (),
    shapes: Mapping[str, Sequence[int]] | None = None,
) -> ConvertResult:
    """Write an FP16 version of ``model`` to ``output`` and check it against the FP32 model.

    ``keep`` names nodes of `prepare_fp16_source`'s graph to keep in FP32. ``shapes`` gives concrete
    input shapes for models with free dimensions (the validation run needs them); without them such
    a model is only loaded, not run.
    """
    import onnx

    started = time.perf_counter()
    source = ModelFile.open(model)
    if source.precision != "fp32":
        raise ConversionError(
            f"{source.path}: FP16 conversion starts from an fp32 model, this one is {source.precision}"
        )
    prepared = prepare_fp16_source(onnx.load(str(source.path)))
    try:
        converted = to_fp16(prepared, block=block, keep=keep)
    except ConversionError as exc:
        raise ConversionError(f"{source.path}: {exc}") from exc
    fp16_count = sum(1 for t in graph_tensors(converted.graph) if t.data_type == _FLOAT16)
    if fp16_count == 0:
        raise ConversionError(f"{source.path}: FP16 conversion changed no weights (no float tensors to convert)")
    blocked = tuple(sorted(_blocked_op_types(block)))
    kept = _kept_names(prepared, _blocked_op_types(block), set(keep))
    total = sum(1 for n in prepared.graph.node if n.op_type != "Constant")
    clamped = _clamped_count(prepared, converted)
    output = Path(output)
    with atomic_path(output) as temp:
        onnx.save(converted, str(temp))
        error, used = _validate(source, temp, output, shapes)
    return ConvertResult(output, fp16_count, clamped, blocked, kept, total, error, used, time.perf_counter() - started)


def prepare_fp16_source(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy ready for FP16 conversion: every node named, Constant nodes turned into initializers.

    Unnamed nodes (and repeats of a name) get f"{op_type}_{index}" (index in their graph; made unique),
    so the same input always gives the same names: `to_fp16`'s ``keep`` names nodes by them. Top-level
    Constant nodes become initializers, so that a blocked consumer keeps its weights FP32. Graph inputs
    that merely override an initializer are dropped (they would otherwise be cast like real inputs).
    Idempotent: preparing a prepared model changes nothing.
    """
    import onnx

    prepared = onnx.ModelProto()
    prepared.CopyFrom(proto)
    graph = prepared.graph
    _name_nodes(graph, _all_node_names(graph), "")
    if prepared.ir_version < 4:  # from IR 4 on, initializers need not be graph inputs
        prepared.ir_version = 4
    outputs = {o.name for o in graph.output}
    kept: list[onnx.NodeProto] = []
    for node in graph.node:
        tensor = _constant_tensor(node) if node.op_type == "Constant" and node.domain in ("", "ai.onnx") else None
        if tensor is None or node.output[0] in outputs:
            kept.append(node)
        else:
            graph.initializer.append(tensor)
    if len(kept) != len(graph.node):
        del graph.node[:]
        graph.node.extend(kept)
    overridden = {t.name for t in graph.initializer}
    if any(i.name in overridden for i in graph.input):
        inputs = [i for i in graph.input if i.name not in overridden]
        del graph.input[:]
        graph.input.extend(inputs)
    return prepared


def to_fp16(
    prepared: onnx.ModelProto, *, block: Sequence[str] = SENSITIVE_OPS, keep: Collection[str] = ()
) -> onnx.ModelProto:
    """The FP16 version of a `prepare_fp16_source` model, in memory: FP16 weights and arithmetic, FP32 I/O.

    Op types in ``block`` (plus the converter's own list) and node names in ``keep`` stay FP32 with
    their weights in FP32; so do control-flow nodes (If, Loop, Scan) with their subgraphs, whole.
    Weights converted to FP16 are clamped to +-65504. Raises `ConversionError` (complete message,
    no file path: the caller names the model) when the converter fails or makes an invalid graph.
    """
    import onnx
    from onnxconverter_common import float16

    model = prepare_fp16_source(prepared)
    graph = model.graph
    op_types = _blocked_op_types(block)
    keep = set(keep)
    unknown = sorted(keep - {n.name for n in graph.node})
    if unknown:
        raise ConfigError(f"nodes to keep in FP32 not found in the model: {', '.join(unknown)}")
    sort_topologically(graph)  # the converter's sort fails on cycles and ignores subgraphs' outer inputs
    _drop_dead_casts(graph)  # the converter fails on a Cast pair that nothing reads
    # Casts to float32 stay FP32 too (their readers get an FP16 copy): converted, the converter pairs them
    # with its own casts and drops both, handing FP32 tensors to FP16 nodes.
    casts = {n.name for n in graph.node if _cast_target(n) == _FLOAT}
    blocked = set(_kept_names(model, op_types, keep)) | casts
    original = {n.name for n in graph.node}
    _split_shared_initializers(graph, blocked)
    must_stay_fp32 = _fp32_initializers(graph, blocked)
    originals = {o.name: _copy_value_info(o) for o in graph.output}
    order = [o.name for o in graph.output]
    detached = _detach_float_outputs(graph)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the converter warns once per clamped tensor; ConvertResult counts them
        try:
            converted: onnx.ModelProto = float16.convert_float_to_float16(
                model,
                min_positive_val=FP16_TINY,
                max_finite_val=FP16_MAX,
                keep_io_types=True,
                op_block_list=sorted(op_types),
                node_block_list=sorted(blocked),
                check_fp16_ready=False,
            )
        except Exception as exc:
            raise ConversionError(f"FP16 conversion failed: {type(exc).__name__}: {exc}") from exc
    graph = converted.graph
    _restore_fp32_initializers(graph, must_stay_fp32)
    _retarget_float_outputs(graph, original - blocked)
    _reattach_outputs(graph, detached, originals, order, blocked)
    _cast_outer_values_of_subgraphs(graph, blocked)
    _collapse_round_trips(graph, original)
    _drop_dead_casts(graph)
    _drop_stale_value_info(graph)
    sort_topologically(graph)
    try:
        if converted.ByteSize() < 2**31:  # the checker cannot serialise larger protos
            onnx.checker.check_model(converted)
    except (onnx.checker.ValidationError, ValueError) as exc:
        raise ConversionError(f"FP16 conversion made an invalid model: {exc}") from exc
    return converted


# --- preparation ------------------------------------------------------------------------------


def _subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    from onnx import AttributeProto

    for attr in node.attribute:
        if attr.type == AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == AttributeProto.GRAPHS:
            yield from attr.graphs


def _all_node_names(graph: onnx.GraphProto) -> set[str]:
    names = {n.name for n in graph.node if n.name}
    for node in graph.node:
        for sub in _subgraphs(node):
            names |= _all_node_names(sub)
    return names


def _name_nodes(graph: onnx.GraphProto, taken: set[str], prefix: str) -> None:
    """Name unnamed and repeated nodes f"{prefix}{op_type}_{index}", unique in the whole model."""
    seen: set[str] = set()
    for index, node in enumerate(graph.node):
        if not node.name or node.name in seen:
            base = f"{prefix}{node.op_type}_{index}"
            name, suffix = base, 1
            while name in taken or name in seen:
                name, suffix = f"{base}_{suffix}", suffix + 1
            node.name = name
            taken.add(name)
        seen.add(node.name)
        for number, sub in enumerate(_subgraphs(node)):
            _name_nodes(sub, taken, f"{node.name}/{number}/")


def _constant_tensor(node: onnx.NodeProto) -> onnx.TensorProto | None:
    """The value of a Constant node as a tensor named like its output (None for sparse/string values)."""
    from onnx import TensorProto, helper

    if len(node.output) != 1 or len(node.attribute) != 1:
        return None
    attr = node.attribute[0]
    name = node.output[0]
    if attr.name == "value":
        tensor = TensorProto()
        tensor.CopyFrom(attr.t)
        tensor.name = name
        return tensor
    if attr.name == "value_float":
        return helper.make_tensor(name, TensorProto.FLOAT, [], [attr.f])
    if attr.name == "value_floats":
        return helper.make_tensor(name, TensorProto.FLOAT, [len(attr.floats)], list(attr.floats))
    if attr.name == "value_int":
        return helper.make_tensor(name, TensorProto.INT64, [], [attr.i])
    if attr.name == "value_ints":
        return helper.make_tensor(name, TensorProto.INT64, [len(attr.ints)], list(attr.ints))
    return None


# --- block lists and shared weights -----------------------------------------------------------


_RANDOM_OPS = ("RandomNormal", "RandomUniform", "RandomNormalLike", "Bernoulli", "Multinomial")
"""Random generators stay FP32 always: ONNX Runtime's CPU has no FP16 kernels for them."""


def _blocked_op_types(block: Sequence[str]) -> set[str]:
    """The op types kept in FP32: ``block``, the converter's own list (ML ops, Resize, TopK...) and `_RANDOM_OPS`."""
    from onnxconverter_common import float16

    return set(float16.DEFAULT_OP_BLOCK_LIST) | set(_RANDOM_OPS) | set(block)


def _kept_names(model: onnx.ModelProto, op_types: Collection[str], keep: Collection[str]) -> tuple[str, ...]:
    """Top-level nodes that stay FP32, in graph order: blocked op types, nodes named in ``keep``, control
    flow (any node with a subgraph) and nodes whose operator cannot take or make FP16 (`_no_fp16`)."""
    opsets = {o.domain or "": o.version for o in model.opset_import}
    return tuple(
        n.name
        for n in model.graph.node
        if n.op_type != "Constant"
        and (n.op_type in op_types or n.name in keep or any(True for _ in _subgraphs(n)) or _no_fp16(n, opsets))
    )


def _no_fp16(node: onnx.NodeProto, opsets: Mapping[str, int]) -> bool:
    """The operator's schema allows float32 but not float16 for an input or output the node uses.

    E.g. TfIdfVectorizer's output, LayerNormalization's Mean/InvStdDev outputs: the converter would
    declare them FP16 and ONNX Runtime would refuse the model.
    """
    from onnx import defs

    domain = "" if node.domain == "ai.onnx" else node.domain
    if domain not in opsets:
        return False
    try:
        schema = defs.get_schema(node.op_type, opsets[domain], domain)
    except defs.SchemaError:
        return False
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    for formals, names in ((schema.inputs, node.input), (schema.outputs, node.output)):
        for i, formal in enumerate(formals):
            variadic = formal.option == defs.OpSchema.FormalParameterOption.Variadic
            used = names[i:] if variadic else names[i : i + 1]
            types = allowed.get(formal.type_str, {formal.type_str})
            if any(used) and "tensor(float)" in types and "tensor(float16)" not in types:
                return True
    return False


def _outer_refs(graph: onnx.GraphProto) -> set[str]:
    """Names a (sub)graph uses without defining them: values of the enclosing scopes."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    defined |= {t.values.name for t in graph.sparse_initializer}
    refs: set[str] = set()
    for node in graph.node:
        refs.update(name for name in node.input if name and name not in defined)
        for sub in _subgraphs(node):
            refs |= _outer_refs(sub) - defined
        defined.update(node.output)
    refs.update(o.name for o in graph.output if o.name not in defined)
    return refs


def _node_inputs(node: onnx.NodeProto) -> set[str]:
    """Explicit inputs and the outer values its subgraphs use."""
    names = {name for name in node.input if name}
    for sub in _subgraphs(node):
        names |= _outer_refs(sub)
    return names


def _rename_uses(node: onnx.NodeProto, old: str, new: str) -> None:
    """Make ``node`` read ``new`` where it read ``old``, inside its subgraphs too."""
    for i, name in enumerate(node.input):
        if name == old:
            node.input[i] = new
    for sub in _subgraphs(node):
        _rename_outer(sub, old, new)


def _rename_outer(graph: onnx.GraphProto, old: str, new: str) -> None:
    if old in {i.name for i in graph.input} or old in {t.name for t in graph.initializer}:
        return  # shadowed here
    for node in graph.node:
        _rename_uses(node, old, new)
        if old in node.output:
            return
    for out in graph.output:
        if out.name == old:
            out.name = new


def _rename_everywhere(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename tensor ``old`` of the top-level graph: its producer's output and every use."""
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
        _rename_uses(node, old, new)


def _unique(base: str, taken: set[str]) -> str:
    name, suffix = base, 1
    while name in taken:
        name, suffix = f"{base}_{suffix}", suffix + 1
    taken.add(name)
    return name


def _tensor_names(graph: onnx.GraphProto) -> set[str]:
    names = {i.name for i in graph.input} | {o.name for o in graph.output} | {t.name for t in graph.initializer}
    names |= {v.name for v in graph.value_info}
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
        for sub in _subgraphs(node):
            names |= _tensor_names(sub)
    return names


def _split_shared_initializers(graph: onnx.GraphProto, blocked: set[str]) -> None:
    """Give FP32 nodes their own copy of a float initializer that FP16 nodes also read."""
    from onnx import TensorProto

    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in _node_inputs(node):
            users.setdefault(name, []).append(node)
    taken = _tensor_names(graph)
    for tensor in list(graph.initializer):
        if tensor.data_type != _FLOAT:
            continue
        readers = users.get(tensor.name, [])
        fp32 = [n for n in readers if n.name in blocked]
        if not fp32 or len(fp32) == len(readers):
            continue
        copy = TensorProto()
        copy.CopyFrom(tensor)
        copy.name = _unique(f"{tensor.name}_fp32", taken)
        graph.initializer.append(copy)
        for node in fp32:
            _rename_uses(node, tensor.name, copy.name)


def _fp32_initializers(graph: onnx.GraphProto, blocked: set[str]) -> dict[str, onnx.TensorProto]:
    """Float initializers read only by FP32 nodes (explicitly or inside a subgraph): they stay FP32."""
    from onnx import TensorProto

    readers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in _node_inputs(node):
            readers.setdefault(name, []).append(node.name)
    kept: dict[str, TensorProto] = {}
    for tensor in graph.initializer:
        names = readers.get(tensor.name, [])
        if tensor.data_type == _FLOAT and names and all(n in blocked for n in names):
            copy = TensorProto()
            copy.CopyFrom(tensor)
            kept[tensor.name] = copy
    return kept


def _copy_value_info(value: onnx.ValueInfoProto) -> onnx.ValueInfoProto:
    from onnx import ValueInfoProto

    copy = ValueInfoProto()
    copy.CopyFrom(value)
    return copy


@dataclass(frozen=True)
class _Detached:
    """A float graph output while the converter runs: renamed ``inner``, made by ``producer``'s output ``index``."""

    inner: str
    producer: str
    index: int


def _detach_float_outputs(graph: onnx.GraphProto) -> dict[str, _Detached]:
    """Rename each float graph output that a node produces to an inner tensor and drop it from the outputs.

    The converter mishandles graph outputs: it declares those of blocked nodes FP16, feeds the FP32 copy
    of an output to the FP16 nodes that also read it, and names the casts of unnamed nodes alike (the
    ``_output_cast_0`` SSA error); `_reattach_outputs` joins them back with FP32 types.
    """
    producers = {name: (node.name, i) for node in graph.node for i, name in enumerate(node.output) if name}
    taken = _tensor_names(graph)
    detached: dict[str, _Detached] = {}
    for out in graph.output:
        if out.type.tensor_type.elem_type == _FLOAT and out.name in producers and out.name not in detached:
            detached[out.name] = _Detached(_unique(out.name + _INNER, taken), *producers[out.name])
    for name, entry in detached.items():
        _rename_everywhere(graph, name, entry.inner)
    remaining = [o for o in graph.output if o.name not in detached]
    del graph.output[:]
    graph.output.extend(remaining)
    return detached


# --- repairs after the converter ---------------------------------------------------------------


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {name: node for node in graph.node for name in node.output if name}


def _attribute(node: onnx.NodeProto, name: str) -> onnx.AttributeProto | None:
    return next((a for a in node.attribute if a.name == name), None)


def _cast_target(node: onnx.NodeProto) -> int | None:
    attr = _attribute(node, "to") if node.op_type == "Cast" and node.domain in ("", "ai.onnx") else None
    return None if attr is None else int(attr.i)


def _elem_types(graph: onnx.GraphProto) -> dict[str, int]:
    """Element types of the top-level graph's tensors as the converted graph declares them."""
    types = {v.name: v.type.tensor_type.elem_type for v in graph.value_info}
    types |= {v.name: v.type.tensor_type.elem_type for v in graph.input}
    types |= {v.name: v.type.tensor_type.elem_type for v in graph.output}
    types |= {t.name: t.data_type for t in graph.initializer}
    for node in graph.node:
        target = _cast_target(node)
        if target is not None:
            types[node.output[0]] = target
    return types


def _restore_fp32_initializers(graph: onnx.GraphProto, originals: Mapping[str, onnx.TensorProto]) -> None:
    for tensor in graph.initializer:
        if tensor.name in originals and tensor.data_type != _FLOAT:
            tensor.CopyFrom(originals[tensor.name])


def _retarget_float_outputs(graph: onnx.GraphProto, converted: set[str]) -> None:
    """Converted nodes that name float32 as their output type (dtype=, ConstantOfShape's and SequenceEmpty's
    defaults) make FP16: the converter declares their outputs FP16 but leaves the attribute."""
    from onnx import TensorProto, helper

    for node in graph.node:
        if node.name not in converted or node.domain not in ("", "ai.onnx"):
            continue
        attr = _attribute(node, "dtype")
        if attr is not None and attr.i == _FLOAT:
            attr.i = _FLOAT16
        if node.op_type == "SequenceEmpty" and _attribute(node, "dtype") is None:  # float32 by default
            node.attribute.append(helper.make_attribute("dtype", _FLOAT16))
        if node.op_type == "ConstantOfShape" and _attribute(node, "value") is None:
            node.attribute.append(
                helper.make_attribute("value", helper.make_tensor("value", TensorProto.FLOAT16, [1], [0]))
            )


def _reattach_outputs(
    graph: onnx.GraphProto,
    detached: Mapping[str, _Detached],
    originals: Mapping[str, onnx.ValueInfoProto],
    order: Sequence[str],
    blocked: set[str],
) -> None:
    """Produce each detached graph output in FP32 again: an FP32 node's own output, or a Cast of an FP16 one."""
    from onnx import helper

    nodes = {n.name: n for n in graph.node}
    taken = {n.name for n in graph.node}
    for name, entry in detached.items():
        producer = nodes.get(entry.producer)
        if producer is None:
            raise ConversionError(f"FP16 conversion lost node {entry.producer}, which makes graph output {name}")
        if producer.name in blocked:
            # its own output (the converter renamed it if it cast it to FP16 for FP16 readers)
            _rename_everywhere(graph, producer.output[entry.index], name)
        else:
            cast = _unique(f"{producer.name}_cast_to_{name}", taken)
            graph.node.append(helper.make_node("Cast", [producer.output[entry.index]], [name], name=cast, to=_FLOAT))
    del graph.output[:]
    graph.output.extend(originals[name] for name in order)


def _cast_outer_values_of_subgraphs(graph: onnx.GraphProto, blocked: set[str]) -> None:
    """FP32 subgraphs read outer values in FP32: a Cast in front of the node for each FP16 one."""
    from onnx import helper

    types = _elem_types(graph)
    taken = _tensor_names(graph) | {n.name for n in graph.node}
    added = []
    for node in graph.node:
        if node.name not in blocked:
            continue
        refs = set()
        for sub in _subgraphs(node):
            refs |= _outer_refs(sub)
        for ref in sorted(refs):
            if types.get(ref) != _FLOAT16:
                continue
            cast = _unique(f"{node.name}_outer_cast_{ref}", taken)
            added.append(helper.make_node("Cast", [ref], [cast], name=cast, to=_FLOAT))
            for sub in _subgraphs(node):
                _rename_outer(sub, ref, cast)
    graph.node.extend(added)


def _collapse_round_trips(graph: onnx.GraphProto, original: set[str]) -> None:
    """Inserted Casts FP32 -> FP16 -> FP32 between FP32 nodes: read the FP32 tensor directly.

    The converter removes such pairs only when the FP16 tensor has one reader; otherwise values that
    two kept nodes pass between them would still be rounded to FP16, or overflow. The model's own
    Cast nodes are left as they are.
    """
    producers = _producers(graph)
    types = _elem_types(graph)
    outputs = {o.name for o in graph.output}
    for node in list(graph.node):
        if _cast_target(node) != _FLOAT:
            continue
        first = producers.get(node.input[0])
        if first is None or _cast_target(first) != _FLOAT16 or types.get(first.input[0]) != _FLOAT:
            continue
        if node.name in original or first.name in original:
            continue
        source, target = first.input[0], node.output[0]
        if target in outputs:
            node.input[0] = source
            continue
        for other in graph.node:
            _rename_uses(other, target, source)


def _used_names(graph: onnx.GraphProto) -> set[str]:
    used: set[str] = set()
    for node in graph.node:
        used |= _node_inputs(node)
    return used | {o.name for o in graph.output}


def _drop_dead_casts(graph: onnx.GraphProto) -> None:
    """Remove Cast nodes whose output nothing reads (left over by the repairs)."""
    while True:
        used = _used_names(graph)
        live = [n for n in graph.node if n.op_type != "Cast" or n.output[0] in used]
        if len(live) == len(graph.node):
            return
        del graph.node[:]
        graph.node.extend(live)


def _drop_stale_value_info(graph: onnx.GraphProto) -> None:
    """value_info only for tensors that still exist inside the graph (not for inputs or outputs).

    Sequence types are dropped too: the converter leaves their element type float32 (ORT infers them).
    """
    produced = {name for node in graph.node for name in node.output}
    io = {v.name for v in graph.input} | {v.name for v in graph.output}
    fresh = [v for v in graph.value_info if v.name in produced and v.name not in io and v.type.HasField("tensor_type")]
    if len(fresh) != len(graph.value_info):
        del graph.value_info[:]
        graph.value_info.extend(fresh)


def sort_topologically(graph: onnx.GraphProto) -> bool:
    """Order nodes so that each follows the producers of its inputs, the values its subgraphs use included.

    Stable (the current order breaks ties, so a sorted graph stays as it is); also sorts every subgraph.
    onnxconverter-common's sort and onnxruntime's quantizer (``ONNXModel.topological_sort``) both ignore
    subgraphs' outer values and can place an If before a node its branches read. True if anything moved.
    """
    changed = False
    for node in graph.node:
        for sub in _subgraphs(node):
            changed |= sort_topologically(sub)
    nodes = list(graph.node)
    producer = {name: i for i, node in enumerate(nodes) for name in node.output if name}
    waiting = [0] * len(nodes)
    readers: dict[int, list[int]] = {}
    for i, node in enumerate(nodes):
        needs = {producer[name] for name in _node_inputs(node) if name in producer} - {i}
        waiting[i] = len(needs)
        for j in needs:
            readers.setdefault(j, []).append(i)
    ready = [i for i, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in readers.get(i, []):
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(nodes):
        stuck = ", ".join(nodes[i].name for i in range(len(nodes)) if waiting[i] > 0)
        raise ConversionError(f"the graph has a cycle through nodes {stuck}")
    if order != list(range(len(nodes))):
        del graph.node[:]
        graph.node.extend(nodes[i] for i in order)
        changed = True
    return changed


# --- figures and validation --------------------------------------------------------------------


def _clamped_count(prepared: onnx.ModelProto, converted: onnx.ModelProto) -> int:
    """How many weight values that ended up in FP16 were outside FP16's range (and clamped)."""
    from onnx import numpy_helper

    fp16 = {t.name for t in converted.graph.initializer if t.data_type == _FLOAT16}
    count = 0
    for tensor in prepared.graph.initializer:
        if tensor.data_type == _FLOAT and tensor.name in fp16:
            count += _out_of_range(numpy_helper.to_array(tensor))
    converted_nodes = {n.name: n for n in converted.graph.node}
    for node in prepared.graph.node:
        after = converted_nodes.get(node.name)
        if after is None:
            continue
        for attr in node.attribute:
            new = _attribute(after, attr.name)
            if new is not None and attr.t.data_type == _FLOAT and new.t.data_type == _FLOAT16:
                count += _out_of_range(numpy_helper.to_array(attr.t))
    return count


def _out_of_range(values: np.ndarray) -> int:
    magnitude = np.abs(values)
    return int(np.count_nonzero((magnitude > FP16_MAX) | ((magnitude > 0) & (magnitude < FP16_TINY))))


def _validate(
    source: ModelFile, candidate: Path, output: Path, shapes: Mapping[str, Sequence[int]] | None
) -> tuple[float | None, dict[str, list[int]] | None]:
    """Load the converted model (fail = error) and, where shapes are known, compare it with FP32."""
    from edgerun.runtime.reference import open_on_cpu
    from edgerun.runtime.synthetic import random_feeds

    try:
        converted = open_on_cpu(candidate)
    except EdgerunError as exc:
        try:
            open_on_cpu(source.path).close()
        except EdgerunError as fp32:
            raise ConversionError(f"{source.path}: onnxruntime cannot load the FP32 model either: {fp32}") from exc
        raise ConversionError(
            f"{source.path}: the FP16 model does not load: {_without_paths(exc, source, candidate, output)} "
            "(an operator that has no FP16 implementation can stay FP32: add its type to block)"
        ) from exc
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
        want = reference.run(feeds)
        try:
            got = converted.run(feeds)
        except EdgerunError as exc:
            raise ConversionError(
                f"{source.path}: the FP16 model does not run: {_without_paths(exc, source, candidate, output)}"
            ) from exc
    error = max(float(np.max(np.abs(got[k].astype(np.float64) - want[k]))) if want[k].size else 0.0 for k in want)
    if not np.isfinite(error):
        raise ConversionError(f"{source.path}: the FP16 model produces non-finite outputs where FP32 does not")
    return error, {k: list(v.shape) for k, v in feeds.items()}


def _without_paths(exc: BaseException, source: ModelFile, temp: Path, output: Path) -> str:
    """The whole error text, with the temporary file's and the output's paths replaced by the source model's.

    An artifact converts into a temporary path of the cache, which means nothing to the user.
    """
    text = exc.problem if isinstance(exc, ModelError) else str(exc)  # without the "{temp}: " prefix
    spellings = {str(temp), str(temp.resolve()), os.path.abspath(temp), temp.name}
    spellings |= {str(output.resolve()), os.path.abspath(output)}
    for spelling in sorted(spellings, key=len, reverse=True):
        text = text.replace(spelling, f"{source.path} (FP16)")
    return text
