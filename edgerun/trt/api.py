"""The TensorRT Python API as edgerun uses it, across 10.x (JetPack 6) and 11.x.

Differences handled here and nowhere else: TensorRT 11 makes every network strongly typed and
removed the FP16/INT8 builder flags and ``EXPLICIT_BATCH``; surviving flags were renumbered, so
flags are always named, never stored as numbers. Every name used from ``tensorrt`` is checked
against the API surface of each supported version by ``tests/test_trt_api_surface.py``;
names that not all versions have sit under a ``hasattr`` guard.
"""

from __future__ import annotations

import logging
from importlib import util
from typing import Any

import numpy as np

from edgerun.errors import BackendUnavailableError
from edgerun.trt import NOT_INSTALLED

_log = logging.getLogger("edgerun")

SUPPORTED_MAJORS = (10, 11)


def tensorrt() -> Any:
    """The ``tensorrt`` module, or BackendUnavailableError saying what is missing."""
    if util.find_spec("tensorrt") is None:
        raise BackendUnavailableError(NOT_INSTALLED)
    try:
        import tensorrt as trt
    except Exception as exc:  # a broken install fails with OSError/ImportError from its libraries
        raise BackendUnavailableError(f"tensorrt is installed but cannot be imported: {exc}") from exc
    major = version_tuple(trt)[0]
    if major not in SUPPORTED_MAJORS:
        raise BackendUnavailableError(
            f"TensorRT {trt.__version__} is not supported (supported: {', '.join(f'{m}.x' for m in SUPPORTED_MAJORS)})"
        )
    return trt


def version_tuple(trt: Any) -> tuple[int, ...]:
    parts = []
    for part in str(trt.__version__).split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts) or (0,)


def always_strongly_typed(trt: Any) -> bool:
    """TensorRT 11 types every network from its tensors; 10.x needs the creation flag."""
    return version_tuple(trt)[0] >= 11


def network_flags(trt: Any, strongly_typed: bool) -> int:
    """``create_network`` flags: STRONGLY_TYPED on 10.x when asked; 11.x ignores (and deprecates) it."""
    if strongly_typed and not always_strongly_typed(trt):
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def builder_flag(trt: Any, name: str) -> Any:
    """A ``BuilderFlag`` by name, or BackendUnavailableError naming the TensorRT version that lacks it."""
    flag = getattr(trt.BuilderFlag, name, None)
    if flag is None:
        raise BackendUnavailableError(f"TensorRT {trt.__version__} has no builder flag {name}")
    return flag


def numpy_dtype(trt: Any, dtype: Any) -> np.dtype[Any]:
    """The numpy dtype of a TensorRT ``DataType`` (TensorRT's own ``nptype``)."""
    result: np.dtype[Any] = np.dtype(trt.nptype(dtype))
    return result


def make_logger(trt: Any) -> Any:
    """An ILogger that forwards to the ``edgerun`` logger and keeps errors for error messages."""

    class Logger(trt.ILogger):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR):
                self.errors.append(msg)
                _log.error("TensorRT: %s", msg)
            elif severity == trt.ILogger.WARNING:
                _log.warning("TensorRT: %s", msg)
            else:
                _log.debug("TensorRT: %s", msg)

    return Logger()


def make_progress_monitor(trt: Any, report: Any) -> Any | None:
    """An IProgressMonitor calling ``report(phase, step, steps)``; None where TensorRT has none."""
    if not hasattr(trt, "IProgressMonitor"):
        return None

    class Monitor(trt.IProgressMonitor):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.steps: dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.steps[phase_name] = num_steps
            report(phase_name, 0, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            report(phase_name, step + 1, self.steps.get(phase_name, 0))
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            steps = self.steps.get(phase_name, 0)
            report(phase_name, steps, steps)

    return Monitor()
