"""Output shapes as the model returns them, checked against what the graph declares.

A graph may declare ``probs [1, seqlen]`` and return ``[T, batch, 8210]``; ONNX Runtime only logs a
warning when it opens such a model. `check_outputs` compares returned arrays with their declaration,
and `observed_output_specs` runs the model at two sizes of every free symbol to learn which output
dims follow which input symbol (exports use those, not the declaration).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgerun.errors import InputError
from edgerun.specs import UNNAMED_DIM, Dim, TensorSpec

if TYPE_CHECKING:
    from edgerun.roles import ModelRoles
    from edgerun.runtime.modelfile import ModelFile

_log = logging.getLogger("edgerun")

RunFn = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]

OBSERVE_MAX_BYTES = 64 * 2**20
"""Models larger than this are not run just to observe their output shapes (info, export)."""

_BATCH = "\0batch"


@dataclass(frozen=True)
class OutputMismatch:
    """An output whose returned (or observed) shape does not fit its declared shape."""

    name: str
    declared: tuple[Dim, ...]
    returned: tuple[Dim, ...]

    def describe(self) -> str:
        """``output 'probs' is declared [1, seqlen] but the model returned [3, 1, 10]``."""
        return f"output '{self.name}' is declared {_dims(self.declared)} but the model returned {_dims(self.returned)}"

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "declared": list(self.declared), "returned": list(self.returned)}


def _dims(shape: Sequence[Dim]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def shape_fits(declared: Sequence[Dim], returned: Sequence[Dim]) -> bool:
    """Same rank, and every fixed declared dim equals the returned one."""
    if len(declared) != len(returned):
        return False
    return all(not isinstance(d, int) or d == r for d, r in zip(declared, returned, strict=True))


def check_outputs(
    declared: Sequence[TensorSpec], outputs: Mapping[str, np.ndarray | TensorSpec]
) -> tuple[OutputMismatch, ...]:
    """Outputs (arrays or observed specs, by name) whose shape does not fit the declared spec."""
    found: list[OutputMismatch] = []
    for spec in declared:
        value = outputs.get(spec.name)
        if value is None:
            continue
        shape: tuple[Dim, ...] = tuple(d if isinstance(d, str) else int(d) for d in value.shape)
        if not shape_fits(spec.shape, shape):
            found.append(OutputMismatch(spec.name, spec.shape, shape))
    return tuple(found)


@dataclass(frozen=True)
class _Axis:
    key: str
    label: str


def _free_axes(inputs: Sequence[TensorSpec], roles: ModelRoles | None) -> dict[tuple[str, int], _Axis]:
    """Each symbolic input axis and the size group it belongs to (the batch, a named symbol, or its own)."""
    batch_symbols: set[str] = set()
    axes: dict[tuple[str, int], _Axis] = {}
    for spec in inputs:
        axis = _batch_axis(spec, roles)
        if axis is not None and axis < spec.rank and isinstance(spec.shape[axis], str):
            batch_symbols.add(str(spec.shape[axis]))
    batch_label = batch_name(inputs, roles)
    for spec in inputs:
        batch_axis = _batch_axis(spec, roles)
        for index, dim in enumerate(spec.shape):
            if not isinstance(dim, str):
                continue
            if index == batch_axis or (dim != UNNAMED_DIM and dim in batch_symbols):
                axes[(spec.name, index)] = _Axis(_BATCH, batch_label)
            elif dim != UNNAMED_DIM:
                axes[(spec.name, index)] = _Axis(dim, dim)
            else:
                axes[(spec.name, index)] = _Axis(f"{spec.name}:{index}", UNNAMED_DIM)
    return axes


def batch_name(inputs: Sequence[TensorSpec], roles: ModelRoles | None) -> str:
    """The name observed output specs give the batch: the first named symbol at an input's batch axis."""
    for spec in inputs:
        axis = _batch_axis(spec, roles)
        dim = spec.shape[axis] if axis is not None and axis < spec.rank else None
        if isinstance(dim, str) and dim != UNNAMED_DIM:
            return dim
    return "batch"


def _batch_axis(spec: TensorSpec, roles: ModelRoles | None) -> int | None:
    if roles is not None:
        try:
            return roles[spec.name].batch_axis
        except KeyError:
            pass
    return 0 if spec.shape else None


def _base_sizes(
    inputs: Sequence[TensorSpec],
    axes: Mapping[tuple[str, int], _Axis],
    shapes: Mapping[str, Sequence[int]] | None,
    default_size: int | None,
) -> dict[str, int]:
    sizes: dict[str, int] = {_BATCH: 1}
    shapes = shapes or {}
    for (name, index), axis in axes.items():
        if axis.key in sizes:
            continue
        given = shapes.get(name)
        spec = next(s for s in inputs if s.name == name)
        if given is not None and len(given) == spec.rank:
            sizes[axis.key] = int(given[index])
        elif axis.label != UNNAMED_DIM and len(shapes.get(axis.label, ())) == 1:
            sizes[axis.key] = int(shapes[axis.label][0])
        elif default_size is not None:
            sizes[axis.key] = default_size
        else:
            hint = f"--shape {axis.label}=N" if axis.label != UNNAMED_DIM else f"--shape {name}=..."
            raise InputError(
                f"input '{name}' ({spec.describe()}) has a free axis {index} of unknown size: give it, e.g. {hint}",
                tensor=name,
                expected="a concrete shape",
                got=str(spec.shape),
            )
    return sizes


def observed_output_specs(
    run: RunFn,
    inputs: Sequence[TensorSpec],
    roles: ModelRoles | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
    default_size: int | None = 8,
) -> tuple[TensorSpec, ...]:
    """Output specs as the model returns them: run on role-aware random feeds at two sizes of every free
    symbol (batch 1 and 2, others their ``shapes`` value and one more); dims that changed become the symbol
    they follow (``"?"`` if none), dims that stayed are fixed. A free axis of unknown size starts at
    ``default_size`` (None: raise InputError).
    """
    from edgerun.runtime.synthetic import random_feeds

    axes = _free_axes(inputs, roles)
    first = _base_sizes(inputs, axes, shapes, default_size)
    second = {key: size + 1 for key, size in first.items()}
    results = [run(random_feeds(inputs, shapes=_full_shapes(inputs, axes, first), seed=seed, roles=roles))]
    try:
        results.append(run(random_feeds(inputs, shapes=_full_shapes(inputs, axes, second), seed=seed, roles=roles)))
    except Exception as exc:  # a model that only takes its given sizes: vary the batch alone
        _log.info("output shapes: second run at other sizes failed (%s); varying the batch only", exc)
        second = {**first, _BATCH: 2}
        results.append(run(random_feeds(inputs, shapes=_full_shapes(inputs, axes, second), seed=seed, roles=roles)))
    labels = {axis.key: axis.label for axis in axes.values()}
    specs: list[TensorSpec] = []
    for name, a in results[0].items():
        b = results[1].get(name)
        shape_a = tuple(int(d) for d in np.shape(a))
        shape_b = tuple(int(d) for d in np.shape(b)) if b is not None else shape_a
        dims: list[Dim] = []
        for index, size in enumerate(shape_a):
            other = shape_b[index] if len(shape_b) == len(shape_a) else -1
            if other == size:
                dims.append(size)
                continue
            match = [k for k in first if (first[k], second[k]) == (size, other)]
            match.sort(key=lambda k: k != _BATCH)
            dims.append(labels.get(match[0], "batch") if match else UNNAMED_DIM)
        specs.append(TensorSpec(name, tuple(dims), np.dtype(np.asarray(a).dtype)))
    return tuple(specs)


def _full_shapes(
    inputs: Sequence[TensorSpec], axes: Mapping[tuple[str, int], _Axis], sizes: Mapping[str, int]
) -> dict[str, tuple[int, ...]]:
    return {
        spec.name: tuple(sizes[axes[(spec.name, i)].key] if isinstance(d, str) else d for i, d in enumerate(spec.shape))
        for spec in inputs
    }


@dataclass(frozen=True)
class Observation:
    """Observed output specs (None when not observed) and why not, or what differed."""

    specs: tuple[TensorSpec, ...] | None
    note: str = ""

    def mismatches(self, declared: Sequence[TensorSpec]) -> tuple[OutputMismatch, ...]:
        """Declared outputs the observation contradicts."""
        if self.specs is None:
            return ()
        return check_outputs(declared, {s.name: s for s in self.specs})


def observe_model(
    model: ModelFile,
    roles: ModelRoles | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    max_bytes: int = OBSERVE_MAX_BYTES,
) -> Observation:
    """`observed_output_specs` of ``model`` run by ONNX Runtime on CPU; skipped (with a note) when it is
    larger than ``max_bytes`` or cannot run here."""
    if model.size_bytes > max_bytes:
        return Observation(None, f"not run: {model.size_bytes / 2**20:.0f} MiB is over {max_bytes / 2**20:.0f} MiB")
    try:
        import onnxruntime as ort
    except ImportError:
        return Observation(None, "not run: onnxruntime is not installed")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the lenient shape merge is reported by edgerun instead
    options.intra_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(model.path), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        quiet = ort.RunOptions()
        quiet.log_severity_level = 3

        def run(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            return dict(zip(names, session.run(names, dict(feeds), quiet), strict=True))

        specs = observed_output_specs(run, model.inputs, roles or model.roles, shapes)
    except InputError as exc:
        return Observation(None, f"not run: {exc}")
    except Exception as exc:  # the declaration stays what the caller uses
        return Observation(None, f"not run: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    return Observation(specs)
