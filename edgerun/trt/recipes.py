"""Engine build recipes: a small TOML file per model and target, kept in the repo's ``engines/``.

A recipe pins what an engine is built from, so a fleet builds the same engine on every device::

    model = "ppocr-det"              # bundled name, or a path relative to the recipe
    precision = "fp16"               # fp32 | fp16 | int8
    batch = "1:1:4"                  # or [shapes] x = "1x3x480x480:1x3x480x480:4x3x480x480"
    calibration = "../calibration/photos"   # int8: image folder or .npy/.npz, relative to the recipe
    workspace_mb = 1024
    opt_level = 3
    dla_core = 0                     # Jetson DLA (Xavier, Orin NX / AGX), GPU fallback; needs batch = "1"
    low_memory = false
    sparse_weights = false           # 2:4-pruned weights: TensorRT's sparse tactics (Ampere+)
    target = "Jetson Orin, JetPack 6.1 (TensorRT 10.3)"   # for people: where it was validated
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgerun.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PRECISIONS = ("fp32", "fp16", "int8")
_KNOWN = {
    "model",
    "precision",
    "batch",
    "shapes",
    "calibration",
    "workspace_mb",
    "opt_level",
    "dla_core",
    "low_memory",
    "version_compatible",
    "sparse_weights",
    "target",
    "notes",
}


@dataclass(frozen=True)
class Recipe:
    path: Path
    model: str
    precision: str
    batch: str | None = None
    shapes: dict[str, str] = field(default_factory=dict)
    calibration: Path | None = None
    workspace_mb: int | None = None
    opt_level: int | None = None
    dla_core: int | None = None
    low_memory: bool = False
    version_compatible: bool = False
    sparse_weights: bool = False
    target: str = ""

    def load_options(self) -> dict[str, Any]:
        """The ``edgerun.load`` options this recipe stands for (TensorRT backend options)."""
        options: dict[str, Any] = {}
        for name in ("batch", "workspace_mb", "opt_level", "dla_core"):
            value = getattr(self, name)
            if value is not None:
                options[name] = value
        if self.shapes:
            options["shapes"] = dict(self.shapes)
        if self.low_memory:
            options["low_memory"] = True
        if self.version_compatible:
            options["version_compatible"] = True
        if self.sparse_weights:
            options["sparse_weights"] = True
        if self.calibration is not None:
            options["calibration"] = str(self.calibration)
        return options


def read_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Parse and check a recipe; relative paths are taken from the recipe's folder."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read recipe: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: recipe is not UTF-8 text ({exc.reason})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: recipe is not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - _KNOWN)
    if unknown:
        raise ConfigError(f"{path}: unknown recipe keys {', '.join(unknown)}; known: {', '.join(sorted(_KNOWN))}")
    for required in ("model", "precision"):
        if required not in data:
            raise ConfigError(f"{path}: recipe needs '{required}'")
    if data["precision"] not in PRECISIONS:
        raise ConfigError(f"{path}: precision {data['precision']!r} is not one of {', '.join(PRECISIONS)}")
    if data["precision"] == "int8" and "calibration" not in data:
        raise ConfigError(f"{path}: an int8 recipe needs 'calibration' (an image folder or array file)")
    if "batch" in data and "shapes" in data:
        raise ConfigError(f"{path}: give 'batch' or 'shapes', not both")
    model = str(data["model"])
    if "/" in model or model.endswith(".onnx"):
        model = str((path.parent / model).resolve())
    calibration = (path.parent / str(data["calibration"])).resolve() if "calibration" in data else None
    _check_ranges(data, path)
    try:
        recipe = Recipe(
            path=path,
            model=model,
            precision=str(data["precision"]),
            batch=str(data["batch"]) if "batch" in data else None,
            shapes={str(k): str(v) for k, v in dict(data.get("shapes", {})).items()},
            calibration=calibration,
            workspace_mb=_int(data, "workspace_mb", path, minimum=1),
            opt_level=_int(data, "opt_level", path, maximum=5),
            dla_core=_int(data, "dla_core", path),
            low_memory=_bool(data, "low_memory", path),
            version_compatible=_bool(data, "version_compatible", path),
            sparse_weights=_bool(data, "sparse_weights", path),
            target=str(data.get("target", "")),
        )
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    _check_dla(data, path)
    return recipe


def _int(data: dict[str, Any], key: str, path: Path, minimum: int = 0, maximum: int | None = None) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    bounded = isinstance(value, int) and value >= minimum and (maximum is None or value <= maximum)
    if isinstance(value, bool) or not bounded:
        limits = f">= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
        raise ConfigError(f"{path}: '{key}' must be an integer {limits}, got {value!r}")
    return int(value)


def _bool(data: dict[str, Any], key: str, path: Path) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{path}: '{key}' must be true or false, got {value!r}")
    return value


def _check_dla(data: dict[str, Any], path: Path) -> None:
    """A DLA recipe fixes every shape: DLA runs no layer with a dynamic dimension (they would all fall back)."""
    from edgerun.trt.profiles import parse_batch_range, parse_shape_range

    if data.get("dla_core") is None:
        return
    dynamic = []
    if "batch" in data:
        low, _, high = parse_batch_range(str(data["batch"]))
        if low != high:
            dynamic.append(f"batch {data['batch']}")
    for name, text in dict(data.get("shapes", {})).items():
        shapes = parse_shape_range(f"{name}={text}")[1]
        if not shapes.min == shapes.opt == shapes.max:
            dynamic.append(f"{name} {text}")
    if "batch" not in data and "shapes" not in data:
        dynamic.append("no batch or shapes given (the default batch range is 1:1:8)")
    if dynamic:
        raise ConfigError(
            f'{path}: a DLA recipe (dla_core) needs static shapes, e.g. batch = "1"; dynamic: {"; ".join(dynamic)}'
        )


def _check_ranges(data: dict[str, Any], path: Path) -> None:
    """Batch and shape ranges are checked when the recipe is read, naming the recipe."""
    from edgerun.trt.profiles import parse_batch_range, parse_shape_range

    try:
        if "batch" in data:
            parse_batch_range(str(data["batch"]))
        for name, text in dict(data.get("shapes", {})).items():
            parse_shape_range(f"{name}={text}")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
