"""Input roles read from an ONNX graph: token ids and their vocabulary, masks, state pairs, constants.

`edgerun.roles.shape_roles` gives batch axes from shared symbols; this module adds what the
graph itself says: an integer input used as the indices of a ``Gather`` on an embedding table
holds token ids in ``[0, rows)``; a rank-0 input compared with a constant (``Equal(sr, 16000)``
choosing an ``If`` branch) is that constant; an input whose partner output follows a recurrent
naming pattern (``state``/``stateN``, ``h``/``hn``, ``past_*``/``present_*``) with a compatible
shape is a state; an input named like a mask is a 0/1 mask.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from edgerun.roles import InputRole, ModelRoles, shape_roles
from edgerun.specs import TensorSpec

if TYPE_CHECKING:
    from onnx import GraphProto, NodeProto

_PASS_THROUGH = frozenset({"Cast", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity"})
_COMPARISONS = frozenset({"Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual"})
_MASK_NAME = re.compile(r"(^|[_.\-])(attention_)?mask($|[_.\-])|^mask|mask$", re.IGNORECASE)


def infer_roles(graph: GraphProto, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> ModelRoles:
    """Every input's role from the shapes, the graph's use of it, and its name."""
    roles = shape_roles(inputs, outputs)
    consumers = _consumers(graph)
    constants = _constant_values(graph)
    updated: list[InputRole] = []
    for spec, role in zip(inputs, roles.inputs, strict=True):
        updated.append(_refine(spec, role, graph, consumers, constants, outputs))
    return replace(roles, inputs=tuple(updated))


def _refine(
    spec: TensorSpec,
    role: InputRole,
    graph: GraphProto,
    consumers: dict[str, list[NodeProto]],
    constants: dict[str, _Constant],
    outputs: Sequence[TensorSpec],
) -> InputRole:
    if role.role == "constant":
        compared = _compared_with(spec.name, consumers, constants)
        if compared is not None:
            return replace(role, value=compared, origin="graph", evidence=f"compared with {compared:g}")
        return role
    if spec.dtype.kind in "iu":
        table = _embedding_table(spec.name, consumers, constants)
        if table is not None:
            name, rows, width = table
            return replace(role, role="token_ids", low=0, high=rows, origin="graph",
                           evidence=f"embedding '{name}' [{rows}, {width}]")  # fmt: skip
    if _MASK_NAME.search(spec.name) and spec.dtype.kind in "iufb":
        return replace(role, role="mask", low=0, high=1, origin="name", evidence=f"named '{spec.name}'")
    partner = state_partner(spec, outputs)
    if partner is not None:
        return replace(role, role="state", state_output=partner, origin="name", evidence=f"next state in '{partner}'")
    return role


def _consumers(graph: GraphProto) -> dict[str, list[NodeProto]]:
    found: dict[str, list[NodeProto]] = {}
    for node in all_nodes(graph):
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


def all_nodes(graph: GraphProto) -> Iterator[NodeProto]:
    """Nodes of a graph and of its subgraphs (If, Loop, Scan): they read outer names too."""
    from onnx import AttributeProto

    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                yield from all_nodes(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from all_nodes(sub)


def _constant_values(graph: GraphProto) -> dict[str, _Constant]:
    """Shapes of initializers and Constant outputs, with values for the small ones (scalars)."""
    from onnx import numpy_helper

    values: dict[str, _Constant] = {}
    for init in graph.initializer:
        dims = tuple(int(d) for d in init.dims)
        small = _small(dims) and init.data_location != 1  # external data is not loaded here
        values[init.name] = _Constant(dims, numpy_helper.to_array(init) if small else None)
    for node in all_nodes(graph):
        if node.op_type == "Constant" and node.output:
            for attribute in node.attribute:
                if attribute.name == "value":
                    dims = tuple(int(d) for d in attribute.t.dims)
                    small = _small(dims)
                    values[node.output[0]] = _Constant(dims, numpy_helper.to_array(attribute.t) if small else None)
    return values


@dataclass(frozen=True)
class _Constant:
    dims: tuple[int, ...]
    value: np.ndarray | None


def _small(dims: Sequence[int]) -> bool:
    return int(np.prod(dims)) <= 16 if len(dims) else True


def _through(name: str, consumers: dict[str, list[NodeProto]], depth: int = 4) -> Iterator[tuple[str, NodeProto]]:
    """(the name as this node reads it, node) for nodes reading ``name`` directly or through casts/reshapes."""
    for node in consumers.get(name, []):
        yield name, node
        if node.op_type in _PASS_THROUGH and depth > 0 and node.output:
            yield from _through(node.output[0], consumers, depth - 1)


def _compared_with(name: str, consumers: dict[str, list[NodeProto]], constants: dict[str, _Constant]) -> float | None:
    for read_as, node in _through(name, consumers):
        if node.op_type in _COMPARISONS and len(node.input) == 2:
            other = node.input[1] if node.input[0] == read_as else node.input[0]
            known = constants.get(other)
            if known is not None and known.value is not None and known.value.size == 1:
                return float(known.value.reshape(()))
    return None


def _embedding_table(
    name: str, consumers: dict[str, list[NodeProto]], constants: dict[str, _Constant]
) -> tuple[str, int, int] | None:
    for read_as, node in _through(name, consumers):
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[1] == read_as:
            table = constants.get(node.input[0])
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            if table is not None and len(table.dims) == 2 and axis == 0:
                return node.input[0], table.dims[0], table.dims[1]
    return None


def _state_names(name: str) -> list[str]:
    """Output names that would hold the next value of a state input called ``name``."""
    names = [name + suffix for suffix in ("N", "n", "_n", "_out", "_next", "_new", ".out", "_output", "_1")]
    names += [f"next_{name}", f"new_{name}", f"out_{name}"]
    for old, new in (("past", "present"), ("_in", "_out"), ("in_", "out_"), ("input_", "output_"), ("_0", "_1"),
                     ("h0", "hn"), ("c0", "cn"), ("prev", "next"), ("init", "final")):  # fmt: skip
        if old in name:
            names.append(name.replace(old, new, 1))
    return names


def state_partner(spec: TensorSpec, outputs: Sequence[TensorSpec]) -> str | None:
    """The output following a recurrent naming pattern for ``spec`` with a compatible shape, if any."""
    by_name = {o.name: o for o in outputs}
    for candidate in _state_names(spec.name):
        output = by_name.get(candidate)
        if output is not None and compatible_shapes(spec, output):
            return candidate
    return None


def compatible_shapes(state: TensorSpec, output: TensorSpec) -> bool:
    """Same dtype and rank, and no axis where both are fixed and differ."""
    if state.dtype != output.dtype or state.rank != output.rank:
        return False
    return all(not (isinstance(a, int) and isinstance(b, int) and a != b)
               for a, b in zip(state.shape, output.shape, strict=True))  # fmt: skip
