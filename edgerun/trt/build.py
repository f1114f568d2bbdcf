"""Building a TensorRT engine from an ONNX model: parser, profile, precision, memory, DLA.

Precision comes from the ONNX variant (FP16 weights from `edgerun.precision.convert`, Q/DQ from
`edgerun.precision.quantize` with ``target="tensorrt"``), so one strongly typed build serves TensorRT
10.x and 11.x alike. The exception is DLA on 10.x, which does not take strongly typed
networks: there the FP32 model is built with the FP16 flag (a flag 11.x no longer has).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
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
    dla_core: int | None = None
    low_memory: bool = False
    version_compatible: bool = False

    def flag_names(self, trt_major: int) -> tuple[str, ...]:
        """Builder flags by name (never by number: 11.x renumbered them)."""
        flags = []
        if self.dla_core is not None:
            flags.append("GPU_FALLBACK")
            if trt_major < 11 and self.precision == "fp16":
                flags.append("FP16")  # 10.x DLA builds are weakly typed: precision by flag
        if self.version_compatible:
            flags.append("VERSION_COMPATIBLE")
        return tuple(sorted(flags))

    def key(self) -> dict[str, Any]:
        return {
            "workspace_mb": self.effective_workspace_mb(),
            "opt_level": self.opt_level,
            "dla_core": self.dla_core,
            "low_memory": self.low_memory,
            "version_compatible": self.version_compatible,
        }

    def effective_workspace_mb(self) -> int | None:
        if self.low_memory:
            return min(self.workspace_mb or LOW_MEMORY_WORKSPACE_MB, LOW_MEMORY_WORKSPACE_MB)
        return self.workspace_mb

    def strongly_typed(self, trt_major: int) -> bool:
        return trt_major >= 11 or self.dla_core is None


def build_engine(model_path: Path, settings: BuildSettings, *, progress: Progress | None = None) -> bytes:
    """Parse ``model_path`` and build a serialized engine; errors name the nodes TensorRT rejects."""
    trt = api.tensorrt()
    major = api.version_tuple(trt)[0]
    if settings.dla_core is not None and major < 11 and settings.precision == "int8":
        raise UnsupportedPrecisionError(
            "INT8 on DLA with TensorRT 10.x needs implicit calibration, which TensorRT deprecated; "
            "build INT8 for the GPU, or FP16 for DLA"
        )
    logger = api.make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(api.network_flags(trt, settings.strongly_typed(major)))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(model_path)):
        problems = []
        for index in range(parser.num_errors):
            error = parser.get_error(index)
            problems.append(f"node '{error.node_name()}' ({error.node_operator()}): {error.desc()}")
        raise UnsupportedModelError(model_path, "TensorRT's ONNX parser rejects it: " + "; ".join(problems))
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
            raise BackendUnavailableError("DLA requested, but this GPU has no DLA cores (only Jetson Xavier/Orin do)")
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
    timing_cache = _load_timing_cache(config, settings.timing_cache)
    monitor = api.make_progress_monitor(trt, progress) if progress else None
    if monitor is not None:
        config.progress_monitor = monitor
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        detail = "; ".join(logger.errors[-3:]) or "see the log with --debug"
        raise BackendError(f"TensorRT could not build an engine for {model_path.name}: {detail}")
    if timing_cache is not None and settings.timing_cache is not None:
        _save_timing_cache(config, settings.timing_cache)
    return bytes(serialized)


def _load_timing_cache(config: Any, path: Path | None) -> Any:
    """A timing cache from ``path`` (empty if missing) set on ``config``; timings persist between builds."""
    if path is None:
        return None
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, False)
    return cache


def _save_timing_cache(config: Any, path: Path) -> None:
    serialized = config.get_timing_cache().serialize()
    with atomic_path(path) as temp:
        temp.write_bytes(bytes(serialized))
    _log.info("timing cache saved to %s", path)
