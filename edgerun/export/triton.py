"""`edgerun export triton`: a ready Triton Inference Server model repository for one model.

Writes ``DIR/<name>/config.pbtxt`` and ``DIR/<name>/1/model.onnx`` (ONNX Runtime platform) or
``model.plan`` (TensorRT platform: an engine from edgerun's cache, whose manifest records the
TensorRT version it was built with, so a fleet cannot load it on another version). The config is
Triton's text protobuf: I/O without the batch axis when batching, dynamic batching, instance
groups, CUDA graphs for TensorRT. Batch axes come from the model's roles (Triton batches only on axis 0 of
every tensor), output dims from running the model once (declarations can lie), and a stateful model gets
Triton's sequence batcher with implicit state.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgerun.errors import ConfigError, InputError
from edgerun.runtime.modelfile import ModelFile
from edgerun.specs import Dim, TensorSpec

if TYPE_CHECKING:
    from edgerun.roles import ModelRoles

_log = logging.getLogger("edgerun")

_TRITON_DTYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "float64": "TYPE_FP64",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "uint8": "TYPE_UINT8",
    "uint16": "TYPE_UINT16",
    "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64",
    "bool": "TYPE_BOOL",
}


@dataclass(frozen=True)
class TritonExport:
    """What was written: the model folder, its config text, the platform and why the config is as it is."""

    folder: Path
    config: str
    platform: str
    tensorrt_version: str | None
    notes: tuple[str, ...] = ()
    """Why batching is off, which declared output shapes were replaced by observed ones, and the like."""


def export_triton(
    model_path: str | os.PathLike[str],  # a file or a bundled model name
    repository: str | os.PathLike[str],
    *,
    name: str | None = None,
    max_batch_size: int | None = None,
    preferred_batch_sizes: Sequence[int] = (),
    max_queue_delay_us: int = 1000,
    instances: int = 1,
    kind: str = "gpu",
    engine: str | os.PathLike[str] | None = None,
    force: bool = False,
    inputs: Mapping[str, Any] | None = None,
    observe: bool = True,
) -> TritonExport:
    """Write a Triton model folder for ``model_path`` under ``repository`` (``engine``: TensorRT plan).

    ``max_batch_size`` None: 8 when every input and output has its batch on axis 0, else 0 (the reason is in
    ``notes``). Output dims come from running the model once on CPU (``observe``), not its declaration.
    ``inputs``: role overrides as ``load(inputs=...)``.
    """
    from edgerun.loading import model_roles
    from edgerun.models import resolve
    from edgerun.runtime.outputshapes import Observation, observe_model

    path, card = resolve(model_path)
    model = ModelFile.open(path)
    if name is None:
        name = card.name if card is not None else model.path.stem
    roles = model_roles(model, card, inputs)
    observation = observe_model(model, roles, card.input_shapes if card else None) if observe else Observation(None)
    notes: list[str] = []
    outputs: Sequence[TensorSpec] = model.outputs
    if observation.specs is not None:
        observed = {s.name: s for s in observation.specs}
        outputs = [replace(observed.get(s.name, s), dtype=s.dtype) for s in model.outputs]
        for mismatch in observation.mismatches(model.outputs):
            notes.append(f"{mismatch.describe()}: the config uses the returned shape")
    elif observation.note:
        notes.append(f"output shapes as declared, {observation.note}")
    blocker = _batch_blocker(model.inputs, outputs, roles, observed=observation.specs is not None)
    if max_batch_size is None:
        max_batch_size = 8 if blocker is None else 0
        if blocker is not None:
            notes.append(f"max_batch_size 0: Triton batches on axis 0 of every input and output, but {blocker}; "
                         f"{_REEXPORT}")  # fmt: skip
    _check(model, name, max_batch_size, preferred_batch_sizes, max_queue_delay_us, instances, kind, blocker)
    trt_version = _engine_version(Path(engine)) if engine is not None else None
    folder = Path(repository) / name
    if folder.exists() and any(folder.iterdir()):
        if not force:
            raise ConfigError(f"{folder} exists and holds a model already; pass --force to replace it")
        shutil.rmtree(folder)
    platform = "tensorrt_plan" if engine is not None else "onnxruntime_onnx"
    states = _states(model.inputs, outputs, roles, max_batch_size > 0)
    if states:
        notes.append("stateful: Triton's sequence batcher keeps " + ", ".join(f"'{s.input}' (from '{s.output}')"
                     for s in states) + " per sequence; clients send a sequence id, not the state")  # fmt: skip
    config = config_text(
        name, platform, model.inputs, outputs, max_batch_size, preferred_batch_sizes,
        max_queue_delay_us, instances, kind, states,
    )  # fmt: skip
    (folder / "1").mkdir(parents=True)
    if engine is not None:
        shutil.copyfile(engine, folder / "1" / "model.plan")
    else:
        shutil.copyfile(model.path, folder / "1" / "model.onnx")
    (folder / "config.pbtxt").write_text(config)
    for note in notes:
        _log.info("%s: %s", name, note)
    return TritonExport(folder, config, platform, trt_version, tuple(notes))


_REEXPORT = (
    "re-export the model with the batch first in every input and output (state as [batch, ...]) "
    "and constants as [batch] inputs to let Triton batch requests"
)


def _batch_blocker(
    inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], roles: ModelRoles, observed: bool
) -> str | None:
    """Why Triton cannot batch this model on axis 0 (None: it can)."""
    for spec in inputs:
        axis = roles[spec.name].batch_axis
        if axis is None:
            return f"input '{spec.name}' ({spec.describe()}) is {roles[spec.name].describe()} with no batch axis"
        problem = _not_on_axis0("input", spec, axis)
        if problem:
            return problem
    from edgerun.runtime.outputshapes import batch_name

    label = batch_name(inputs, roles)
    for spec in outputs:
        out_axis = (spec.shape.index(label) if label in spec.shape else None) if observed else roles.output_axes.get(
            spec.name, 0)  # fmt: skip
        if out_axis is None:
            return f"output {spec.describe()} has no batch axis"
        problem = _not_on_axis0("output", spec, out_axis)
        if problem:
            return problem
    return None


def _not_on_axis0(what: str, spec: TensorSpec, axis: int) -> str | None:
    """Why Triton cannot batch this input or output whose batch is on ``axis`` (None: a free axis 0)."""
    if axis != 0:
        return f"{what} {spec.describe()} keeps its batch on axis {axis}"
    if not spec.has_dynamic_batch:
        return f"{what} {spec.describe()} fixes its batch at {spec.shape[0]}"
    return None


def _check(
    model: ModelFile,
    name: str,
    max_batch_size: int,
    preferred: Sequence[int],
    delay_us: int,
    instances: int,
    kind: str,
    blocker: str | None,
) -> None:
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"model name {name!r} is not a folder name")
    if kind not in ("gpu", "cpu"):
        raise ConfigError(f"--kind must be gpu or cpu, got {kind!r}")
    if max_batch_size < 0 or instances < 1 or delay_us < 0:
        raise ConfigError("max batch size must be >= 0, instances >= 1 and the queue delay >= 0")
    if max_batch_size > 0 and blocker is not None:
        raise ConfigError(
            f"{model.path}: Triton batches on axis 0 of every input and output, but {blocker}; "
            f"export with --max-batch-size 0 (or {_REEXPORT})"
        )
    wrong = [b for b in preferred if not 1 <= b <= max_batch_size]
    if wrong:
        raise ConfigError(f"preferred batch sizes {wrong} are outside 1..{max_batch_size} (the max batch size)")


@dataclass(frozen=True)
class _State:
    input: str
    output: str
    data_type: str
    dims: tuple[int, ...]


def _states(
    inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], roles: ModelRoles, batching: bool
) -> tuple[_State, ...]:
    """Implicit-state entries for each state input and its output: one sequence per batch slot (batch 1)."""
    by_name = {s.name: s for s in outputs}
    states = []
    for spec in inputs:
        role = roles[spec.name]
        if role.role != "state" or not role.state_output:
            continue
        output = by_name.get(role.state_output)
        source = output if output is not None and output.rank == spec.rank else spec
        dims = [
            1 if axis == role.batch_axis else (d if isinstance(d, int) else s if isinstance(s, int) else -1)
            for axis, (d, s) in enumerate(zip(spec.shape, source.shape, strict=True))
        ]
        if batching and role.batch_axis == 0:
            dims = dims[1:]
        states.append(_State(spec.name, role.state_output, _triton_dtype(spec), tuple(dims)))
    return tuple(states)


def _engine_version(engine: Path) -> str:
    """The TensorRT version an engine from edgerun's cache was built with, checked against this one."""
    if not engine.is_file():
        raise InputError(f"{engine}: engine file not found")
    manifest_path = engine.with_suffix(".json")
    try:
        manifest = json.loads(manifest_path.read_text())
        built_with = str(manifest["key"]["tensorrt"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{engine}: no readable edgerun manifest beside it ({manifest_path}): {exc}") from exc
    from edgerun.runtime.device import _tensorrt_version

    installed = _tensorrt_version()
    if installed is not None and installed != built_with:
        raise ConfigError(
            f"{engine} was built with TensorRT {built_with}, this machine has {installed}: "
            "engines only load on the version that built them; rebuild it (edgerun build)"
        )
    return built_with


def _triton_dtype(spec: TensorSpec) -> str:
    dtype = _TRITON_DTYPES.get(np.dtype(spec.dtype).name)
    if dtype is None:
        raise ConfigError(f"tensor '{spec.name}' has dtype {spec.dtype}, which Triton configs cannot declare")
    return dtype


def _dims(shape: Sequence[Dim]) -> str:
    return ", ".join(str(d) if isinstance(d, int) else "-1" for d in shape)


def _tensor(spec: TensorSpec, batching: bool) -> str:
    shape = spec.shape[1:] if batching else spec.shape
    if not shape:  # Triton needs non-empty dims: a scalar travels as [1] (reshaped back when batching)
        reshape = "\n    reshape: { shape: [ ] }" if batching else ""
        scalar = "    # a scalar: Triton sends [1]; ONNX Runtime's backend feeds it as rank 0\n" if not batching else ""
        return (f'  {{\n{scalar}    name: "{spec.name}"\n    data_type: {_triton_dtype(spec)}\n    dims: [ 1 ]'
                f"{reshape}\n  }}")  # fmt: skip
    return f'  {{\n    name: "{spec.name}"\n    data_type: {_triton_dtype(spec)}\n    dims: [ {_dims(shape)} ]\n  }}'


def _sequence_batching(states: Sequence[_State]) -> str:
    entries = []
    for state in states:
        initial = ""
        if all(d > 0 for d in state.dims):
            initial = (
                f"\n      initial_state: {{\n        data_type: {state.data_type}\n"
                f"        dims: [ {_dims(state.dims)} ]\n"
                '        zero_data: true\n        name: "zeros"\n      }'
            )
        entries.append(
            f'    {{\n      input_name: "{state.input}"\n      output_name: "{state.output}"\n'
            f"      data_type: {state.data_type}\n      dims: [ {_dims(state.dims)} ]{initial}\n    }}"
        )
    return (
        "# implicit state (Triton's sequence batcher): each request's state input is the previous\n"
        "# request's state output in the same sequence; the first starts at zeros\n"
        "sequence_batching {\n  state [\n" + ",\n".join(entries) + "\n  ]\n}"
    )


def config_text(
    name: str,
    platform: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    max_batch_size: int,
    preferred: Sequence[int],
    delay_us: int,
    instances: int,
    kind: str,
    states: Sequence[_State] = (),
) -> str:
    """Triton's ``config.pbtxt`` (text protobuf of ``inference.ModelConfig``); state inputs are kept by the
    sequence batcher, not sent by clients."""
    batching = max_batch_size > 0
    kept = {state.input for state in states}
    lines = [
        f'name: "{name}"',
        f'platform: "{platform}"',
        f"max_batch_size: {max_batch_size}",
        "input [\n" + ",\n".join(_tensor(s, batching) for s in inputs if s.name not in kept) + "\n]",
        "output [\n" + ",\n".join(_tensor(s, batching) for s in outputs) + "\n]",
    ]
    if states:
        lines.append(_sequence_batching(states))
    elif batching:
        sizes = ", ".join(str(b) for b in sorted(set(preferred)))
        lines.append(
            "dynamic_batching {\n"
            + (f"  preferred_batch_size: [ {sizes} ]\n" if preferred else "")
            + f"  max_queue_delay_microseconds: {delay_us}\n"
            + "  default_queue_policy {\n    timeout_action: REJECT\n    allow_timeout_override: true\n  }\n"
            + "}"
        )
    lines.append(f"instance_group [\n  {{\n    count: {instances}\n    kind: KIND_{kind.upper()}\n  }}\n]")
    if platform == "tensorrt_plan":
        lines.append("optimization {\n  cuda {\n    graphs: true\n  }\n}")
    return "\n".join(lines) + "\n"
