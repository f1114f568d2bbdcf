"""The TensorRT Python API as edgerun uses it, across 10.x (JetPack 6) and 11.x.

Differences handled here and nowhere else: TensorRT 11 makes every network strongly typed and
removed the FP16/INT8 builder flags and ``EXPLICIT_BATCH``; surviving flags were renumbered, so
flags are always named, never stored as numbers. Every name used from ``tensorrt`` is checked
against the API surface of each supported version by ``tests/test_trt_api_surface.py``;
names that not all versions have sit under a ``hasattr`` guard.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
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


class BuildErrors:
    """The TensorRT errors logged while one build (or load) runs: ``with api.collect_errors(trt) as errors``."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def detail(self, last: int = 3) -> str:
        """The last ``last`` errors, or a pointer to the debug log when TensorRT logged none."""
        return "; ".join(self.messages[-last:]) or "see the log with --debug"


_LOGGERS: dict[int, tuple[Any, Any]] = {}
_LOGGERS_LOCK = threading.Lock()


def make_logger(trt: Any) -> Any:
    """The process-wide ILogger: forwards to the ``edgerun`` logger and feeds :func:`collect_errors`.

    TensorRT keeps the first logger given to a ``Runtime`` or ``Builder`` for the whole process and
    ignores later ones, so a fresh logger per build would never see the build's errors. Every
    ``Runtime``, ``Builder`` and ``OnnxParser`` edgerun makes gets this one object instead.
    """
    with _LOGGERS_LOCK:
        known = _LOGGERS.get(id(trt))
        if known is not None and known[0] is trt:
            return known[1]
        logger = _new_logger(trt)
        _LOGGERS[id(trt)] = (trt, logger)
        return logger


@contextlib.contextmanager
def collect_errors(trt: Any) -> Iterator[BuildErrors]:
    """The errors TensorRT logs (through :func:`make_logger`'s logger) while the block runs.

    Builds running at the same time in other threads may add their errors too; each collection
    still holds every error of its own build.
    """
    logger = make_logger(trt)
    errors = BuildErrors()
    with logger.lock:
        logger.collectors.append(errors)
    try:
        yield errors
    finally:
        with logger.lock:
            logger.collectors.remove(errors)


def _new_logger(trt: Any) -> Any:
    class Logger(trt.ILogger):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.lock = threading.Lock()
            self.collectors: list[BuildErrors] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR):
                with self.lock:
                    for collector in self.collectors:
                        collector.messages.append(msg)
                _log.error("TensorRT: %s", msg)
            elif severity == trt.ILogger.WARNING:
                _log.warning("TensorRT: %s", msg)
            else:
                _log.debug("TensorRT: %s", msg)

    return Logger()


def make_runtime(trt: Any, logger: Any, *, version_compatible: bool, dla_core: int | None) -> Any:
    """A ``trt.Runtime`` ready to deserialize an engine built with these settings.

    ``version_compatible``: the plan embeds a lean runtime, which TensorRT runs only where the
    deserializing runtime allows host code (``engine_host_code_allowed``, as trtexec's
    ``--versionCompatible`` and Polygraphy's ``load_runtime``/version-compatible loading do);
    without it ``deserialize_cuda_engine`` returns None.
    ``dla_core``: the DLA core an engine built for DLA runs on; TensorRT reads the runtime's
    ``DLA_core`` when deserializing (default core 0, and -1 means none), as trtexec's ``--useDLACore``.
    """
    runtime = trt.Runtime(logger)
    if runtime is None:
        raise BackendUnavailableError("TensorRT could not create a runtime (see the log with --debug)")
    if version_compatible:
        runtime.engine_host_code_allowed = True
    if dla_core is not None:
        runtime.DLA_core = dla_core
    return runtime


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
