"""`edgerun export triton`: a ready Triton Inference Server model repository for one model.

Writes ``DIR/<name>/config.pbtxt`` and ``DIR/<name>/1/model.onnx`` (ONNX Runtime platform) or
``model.plan`` (TensorRT platform: an engine from edgerun's cache, whose manifest records the
TensorRT version it was built with, so a fleet cannot load it on another version). The config is
Triton's text protobuf: I/O without the batch axis when batching, dynamic batching, instance
groups, CUDA graphs for TensorRT.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgerun.errors import ConfigError, InputError
from edgerun.runtime.modelfile import ModelFile
from edgerun.specs import TensorSpec

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
    """What was written: the model folder, its config text and the platform."""

    folder: Path
    config: str
    platform: str
    tensorrt_version: str | None


def export_triton(
    model_path: str | os.PathLike[str],  # a file or a bundled model name
    repository: str | os.PathLike[str],
    *,
    name: str | None = None,
    max_batch_size: int = 8,
    preferred_batch_sizes: Sequence[int] = (),
    max_queue_delay_us: int = 1000,
    instances: int = 1,
    kind: str = "gpu",
    engine: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> TritonExport:
    """Write a Triton model folder for ``model_path`` under ``repository`` (``engine``: TensorRT plan)."""
    from edgerun.models import resolve

    path, card = resolve(model_path)
    model = ModelFile.open(path)
    if name is None:
        name = card.name if card is not None else model.path.stem
    _check(model, name, max_batch_size, preferred_batch_sizes, max_queue_delay_us, instances, kind)
    trt_version = _engine_version(Path(engine)) if engine is not None else None
    folder = Path(repository) / name
    if folder.exists() and any(folder.iterdir()):
        if not force:
            raise ConfigError(f"{folder} exists and holds a model already; pass --force to replace it")
        shutil.rmtree(folder)
    platform = "tensorrt_plan" if engine is not None else "onnxruntime_onnx"
    config = config_text(
        name, platform, model.inputs, model.outputs, max_batch_size, preferred_batch_sizes,
        max_queue_delay_us, instances, kind,
    )  # fmt: skip
    (folder / "1").mkdir(parents=True)
    if engine is not None:
        shutil.copyfile(engine, folder / "1" / "model.plan")
    else:
        shutil.copyfile(model.path, folder / "1" / "model.onnx")
    (folder / "config.pbtxt").write_text(config)
    return TritonExport(folder, config, platform, trt_version)


def _check(
    model: ModelFile,
    name: str,
    max_batch_size: int,
    preferred: Sequence[int],
    delay_us: int,
    instances: int,
    kind: str,
) -> None:
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"model name {name!r} is not a folder name")
    if kind not in ("gpu", "cpu"):
        raise ConfigError(f"--kind must be gpu or cpu, got {kind!r}")
    if max_batch_size < 0 or instances < 1 or delay_us < 0:
        raise ConfigError("max batch size must be >= 0, instances >= 1 and the queue delay >= 0")
    fixed = [s for s in (*model.inputs, *model.outputs) if not s.has_dynamic_batch]
    if max_batch_size > 0 and fixed:
        raise ConfigError(
            f"{model.path}: batching needs a dynamic batch axis, but {fixed[0].describe()} fixes it; "
            "export with --max-batch-size 0"
        )
    wrong = [b for b in preferred if not 1 <= b <= max_batch_size]
    if wrong:
        raise ConfigError(f"preferred batch sizes {wrong} are outside 1..{max_batch_size} (the max batch size)")


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


def _dims(spec: TensorSpec, batching: bool) -> str:
    dims = spec.shape[1:] if batching else spec.shape
    return ", ".join(str(d) if isinstance(d, int) else "-1" for d in dims)


def _tensor(spec: TensorSpec, batching: bool) -> str:
    dtype = _TRITON_DTYPES.get(np.dtype(spec.dtype).name)
    if dtype is None:
        raise ConfigError(f"tensor '{spec.name}' has dtype {spec.dtype}, which Triton configs cannot declare")
    return f'  {{\n    name: "{spec.name}"\n    data_type: {dtype}\n    dims: [ {_dims(spec, batching)} ]\n  }}'


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
) -> str:
    """Triton's ``config.pbtxt`` (text protobuf of ``inference.ModelConfig``)."""
    batching = max_batch_size > 0
    lines = [
        f'name: "{name}"',
        f'platform: "{platform}"',
        f"max_batch_size: {max_batch_size}",
        "input [\n" + ",\n".join(_tensor(s, batching) for s in inputs) + "\n]",
        "output [\n" + ",\n".join(_tensor(s, batching) for s in outputs) + "\n]",
    ]
    if batching:
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
