"""Building a TensorRT engine from an ONNX model: parser, profile, precision, memory, DLA.

Precision comes from the ONNX variant (FP16 weights from `edgerun.precision.convert`, Q/DQ from
`edgerun.precision.quantize` with ``target="tensorrt"``), so one strongly typed build serves TensorRT
10.x and 11.x alike. The exception is DLA on 10.x, which does not take strongly typed
networks: there the model is built with the FP16 flag (a flag 11.x no longer has).

DLA support is narrow, on purpose (Jetson Xavier / Orin NX / Orin AGX; Orin Nano and Thor have no
DLA): the profile must be static (min = opt = max for every input), because a dynamic dimension
keeps layers off DLA; every layer DLA cannot run falls back to the GPU (``GPU_FALLBACK``). The model
parsed is the one the loader converted for the precision, so an FP16-converted ONNX brings its
FP32<->FP16 ``Cast`` layers at the inputs and outputs, which run on the GPU around the DLA part;
where the parser has ``ADJUST_FOR_DLA`` (10.16 and later) it is set for DLA builds.

The timing cache file given by the user is one per TensorRT version and GPU (`timing_cache_file`):
a cache TensorRT refuses (another GPU, another version, damaged) is replaced by a fresh one and
logged, never a failed build.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgerun.errors import BackendError, BackendUnavailableError, UnsupportedModelError, UnsupportedPrecisionError
from edgerun.storage import atomic_path
from edgerun.trt import api
from edgerun.trt.profiles import Profile

_log = logging.getLogger("edgerun")

LOW_MEMORY_WORKSPACE_MB = 256
"""Workspace cap of ``low_memory`` builds: 4-8 GB Jetsons run out of memory with the default."""

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BuildSettings:
    """What the builder is asked for, besides the model (part of the engine cache key)."""

    precision: str
    profile: Profile
    workspace_mb: int | None = None
    opt_level: int | None = None
    timing_cache: Path | None = None
    """Where timing caches are kept: a folder, or a file name that `timing_cache_file` tags per GPU and version."""
    dla_core: int | None = None
    low_memory: bool = False
    sparse_weights: bool = False
    """Let TensorRT pick sparse tactics for weights already in the 2:4 pattern (`edgerun.distill.prune.
    semi_structured_prune`): Ampere and newer GPUs. Unverified on a device here; the engine says whether any
    layer took a sparse tactic only in TensorRT's verbose build log."""
    version_compatible: bool = False
    """Embed a lean runtime so later TensorRT versions of the same major can load the engine.

    The engine cache key pins the exact TensorRT version, so an upgrade still rebuilds the cached
    engine; what this buys is an engine file that can be copied out of the cache (``edgerun cache
    list`` shows where) and loaded elsewhere by a newer TensorRT 10.x / 11.x runtime. Loading one needs
    a runtime that allows host code (`edgerun.trt.api.make_runtime`). Engines are slower to build and
    may run slightly slower."""

    def __post_init__(self) -> None:
        given: object = self.timing_cache  # options arrive as str or any path-like, whatever the annotation says
        if given is not None and not isinstance(given, Path):
            object.__setattr__(self, "timing_cache", Path(os.fspath(given)))  # type: ignore[call-overload]

    def flag_names(self, trt_major: int) -> tuple[str, ...]:
        """Builder flags by name (never by number: 11.x renumbered them)."""
        flags = []
        if self.dla_core is not None:
            flags.append("GPU_FALLBACK")
            if trt_major < 11 and self.precision == "fp16":
                flags.append("FP16")  # 10.x DLA builds are weakly typed: precision by flag
        if self.version_compatible:
            flags.append("VERSION_COMPATIBLE")
        if self.sparse_weights:
            flags.append("SPARSE_WEIGHTS")
        return tuple(sorted(flags))

    def key(self) -> dict[str, Any]:
        return {
            "workspace_mb": self.effective_workspace_mb(),
            "opt_level": self.opt_level,
            "dla_core": self.dla_core,
            "low_memory": self.low_memory,
            "version_compatible": self.version_compatible,
        }  # sparse_weights: in the key through its builder flag (EngineKey.flags), so older keys stay valid

    def effective_workspace_mb(self) -> int | None:
        if self.low_memory:
            return min(self.workspace_mb or LOW_MEMORY_WORKSPACE_MB, LOW_MEMORY_WORKSPACE_MB)
        return self.workspace_mb

    def strongly_typed(self, trt_major: int) -> bool:
        return trt_major >= 11 or self.dla_core is None

    def dla_problem(self) -> str | None:
        """Why these settings cannot build a DLA engine, or None (also None when no DLA core is asked for)."""
        if self.dla_core is None:
            return None
        dynamic = [f"{name} {r.describe()}" for name, r in self.profile.ranges if not r.min == r.opt == r.max]
        if dynamic:
            return (
                "DLA engines need a static shape profile (min = opt = max), since DLA runs no layer with a "
                f"dynamic dimension; give one batch size (batch = '1') or fixed shapes: {', '.join(dynamic)}"
            )
        return None


def timing_cache_file(path: Path | str | os.PathLike[str], tensorrt: str, device: Mapping[str, Any] | None) -> Path:
    """The timing cache file for this TensorRT version and GPU, from the user's ``timing_cache`` option.

    An existing folder (or a path ending in a separator) holds ``timing-<tag>.cache`` files; any other
    path is a file name that gets the tag before its suffix (``trt.cache`` -> ``trt-<tag>.cache``). The
    tag names the TensorRT version and GPU (name, compute capability, SM count, memory) readably, with a
    short hash of all of them, so caches of two Jetson variants never overwrite each other.
    """
    text = os.fspath(path)
    base = Path(text)
    identity = {"tensorrt": tensorrt, **dict(device or {})}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:8]
    gpu = str((device or {}).get("gpu", "gpu"))
    tag = re.sub(r"[^A-Za-z0-9.]+", "-", f"trt{tensorrt}-{gpu}").strip("-").lower() + f"-{digest}"
    if base.is_dir() or text.endswith((os.sep, "/")):
        return base / f"timing-{tag}.cache"
    return base.with_name(f"{base.stem}-{tag}{base.suffix or '.cache'}")


def build_engine(
    model_path: Path,
    settings: BuildSettings,
    *,
    progress: Progress | None = None,
    device: Mapping[str, Any] | None = None,
) -> bytes:
    """Parse ``model_path`` and build a serialized engine; errors name the nodes TensorRT rejects.

    ``device`` identifies the GPU (`edgerun.trt.cache.device_fields`) for the timing cache's file name.
    Build failures carry the errors TensorRT logged during this build (`edgerun.trt.api.collect_errors`).
    """
    trt = api.tensorrt()
    major = api.version_tuple(trt)[0]
    if settings.dla_core is not None and major < 11 and settings.precision == "int8":
        raise UnsupportedPrecisionError(
            "INT8 on DLA with TensorRT 10.x needs implicit calibration, which TensorRT deprecated; "
            "build INT8 for the GPU, or FP16 for DLA"
        )
    problem = settings.dla_problem()
    if problem is not None:
        raise UnsupportedModelError(model_path, problem)
    logger = api.make_logger(trt)
    with api.collect_errors(trt) as errors:
        return _build(trt, major, logger, errors, model_path, settings, progress, device)


def _build(
    trt: Any,
    major: int,
    logger: Any,
    errors: api.BuildErrors,
    model_path: Path,
    settings: BuildSettings,
    progress: Progress | None,
    device: Mapping[str, Any] | None,
) -> bytes:
    builder = trt.Builder(logger)
    network = builder.create_network(api.network_flags(trt, settings.strongly_typed(major)))
    parser = trt.OnnxParser(network, logger)
    if settings.dla_core is not None and hasattr(trt.OnnxParserFlag, "ADJUST_FOR_DLA"):
        parser.set_flag(trt.OnnxParserFlag.ADJUST_FOR_DLA)  # 10.16+: ONNX parsed to suit DLA
    if not parser.parse_from_file(str(model_path)):
        problems = []
        for index in range(parser.num_errors):
            error = parser.get_error(index)
            problems.append(f"node '{error.node_name()}' ({error.node_operator()}): {error.desc()}")
        detail = "; ".join(problems) or errors.detail()
        raise UnsupportedModelError(model_path, "TensorRT's ONNX parser rejects it: " + detail)
    config = builder.create_builder_config()
    workspace = settings.effective_workspace_mb()
    if workspace is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace << 20)
    if settings.opt_level is not None:
        config.builder_optimization_level = settings.opt_level
    if settings.low_memory:
        config.max_aux_streams = 0
    for name in settings.flag_names(major):
        config.set_flag(api.builder_flag(trt, name))
    if settings.dla_core is not None:
        if builder.num_DLA_cores == 0:
            raise BackendUnavailableError(
                "DLA requested, but this GPU has no DLA cores (Jetson Xavier, Orin NX and Orin AGX have them; "
                "Orin Nano and Thor do not)"
            )
        if settings.dla_core >= builder.num_DLA_cores:
            raise BackendUnavailableError(
                f"DLA core {settings.dla_core} requested, this device has {builder.num_DLA_cores}"
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = settings.dla_core
    profile = builder.create_optimization_profile()
    for name, shapes in settings.profile.ranges:
        profile.set_shape(name, shapes.min, shapes.opt, shapes.max)
    config.add_optimization_profile(profile)
    cache_path = None
    if settings.timing_cache is not None:
        cache_path = timing_cache_file(settings.timing_cache, str(trt.__version__), device)
    timing_cache = _load_timing_cache(config, cache_path)
    monitor = api.make_progress_monitor(trt, progress) if progress else None
    if monitor is not None:
        config.progress_monitor = monitor
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT could not build an engine for {model_path.name}: {errors.detail()}")
    if timing_cache is not None and cache_path is not None:
        _save_timing_cache(timing_cache, cache_path)
    return bytes(serialized)


def _load_timing_cache(config: Any, path: Path | None) -> Any:
    """A timing cache from ``path`` set on ``config``, or a fresh one where TensorRT refuses the file.

    ``set_timing_cache(cache, ignore_mismatch=False)`` returns False for a cache made on another GPU
    or TensorRT version; the build then starts from an empty cache (logged) rather than using it.
    None where even an empty cache cannot be set (the build goes on without one).
    """
    if path is None:
        return None
    data = b""
    if path.is_file():
        try:
            data = path.read_bytes()
        except OSError as exc:
            _log.warning("timing cache %s cannot be read (%s): starting a fresh one", path, exc)
    if data:
        cache = _timing_cache_from(config, data)
        if cache is not None and config.set_timing_cache(cache, False):
            return cache
        _log.warning(
            "timing cache %s was made for another GPU or TensorRT version, or is damaged: starting a fresh one",
            path,
        )
    cache = _timing_cache_from(config, b"")
    if cache is None or not config.set_timing_cache(cache, False):
        _log.warning("TensorRT refused an empty timing cache: building without one")
        return None
    return cache


def _timing_cache_from(config: Any, data: bytes) -> Any:
    try:
        return config.create_timing_cache(data)
    except Exception as exc:  # TensorRT raises for bytes it cannot parse at all
        _log.debug("create_timing_cache failed: %s", exc)
        return None


def _save_timing_cache(timing_cache: Any, path: Path) -> None:
    """Write the timing cache the build used (updated in place by the builder), atomically."""
    serialized = timing_cache.serialize()
    if serialized is None:
        _log.warning("TensorRT could not serialize the timing cache; %s left as it was", path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temp:
        temp.write_bytes(bytes(serialized))
    _log.info("timing cache saved to %s", path)
