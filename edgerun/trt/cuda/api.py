"""cuda-python's runtime API for the CUDA layer: import on first use, error checks, device count and properties.

Everything goes through cuda-python's runtime API (``cuda.bindings.runtime``, or ``cuda.cudart`` before
cuda-python 12.6.1), imported on first use so that the CPU path never loads it. Absence (no cuda-python,
no driver, no device) raises :class:`CudaUnavailableError` with the reason; a failing call raises
:class:`CudaError` naming the call and CUDA's error. Every resource frees itself on ``close()``
(idempotent), as a context manager, or when garbage collected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from edgerun.errors import CudaError, CudaUnavailableError

NOT_INSTALLED = "cuda-python is not installed (pip install 'edgerun[tensorrt]')"

_runtime: Any = None  # the cudart module once imported
_usable = False  # a device answered once in this process; later objects skip the check


def runtime() -> Any:
    """The cuda-python runtime module (``cudart``), imported on first use; CudaUnavailableError without it."""
    global _runtime
    if _runtime is None:
        _runtime = _import_runtime()
    return _runtime


_MISSING = {"cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"}


def _import_runtime() -> Any:
    """``cuda.bindings.runtime`` (cuda-python >= 12.6.1), else ``cuda.cudart`` (older 12.x, as on JetPack 6)."""
    try:
        from cuda.bindings import runtime as module

        return module
    except ImportError as exc:
        if not (isinstance(exc, ModuleNotFoundError) and exc.name in _MISSING):
            raise CudaUnavailableError(f"cuda-python cannot be loaded: {exc}") from exc
    except Exception as exc:  # e.g. a CUDA library missing while the bindings load
        raise CudaUnavailableError(f"cuda-python cannot be loaded: {type(exc).__name__}: {exc}") from exc
    try:
        from cuda import cudart

        return cudart
    except ImportError as exc:
        if exc.name in _MISSING:
            raise CudaUnavailableError(NOT_INSTALLED) from exc
        raise CudaUnavailableError(f"cuda-python cannot be loaded: {exc}") from exc
    except Exception as exc:
        raise CudaUnavailableError(f"cuda-python cannot be loaded: {type(exc).__name__}: {exc}") from exc


def check(call: str, result: Any) -> Any:
    """Unwrap cuda-python's ``(err, *values)``: CudaError unless cudaSuccess, else None, the value, or a tuple."""
    if not isinstance(result, tuple):
        result = (result,)
    err = result[0]
    if err:  # cudaSuccess is 0; the error enums are ints
        raise _cuda_error(call, err)
    if len(result) == 1:
        return None
    if len(result) == 2:
        return result[1]
    return result[1:]


def _cuda_error(call: str, err: Any) -> CudaError:
    name, description = _describe(err)
    try:
        code = int(err)
    except (TypeError, ValueError):
        code = None
    return CudaError(call, name, description, code)


def _describe(err: Any) -> tuple[str, str | None]:
    """CUDA's name and sentence for an error code (``cudaErrorMemoryAllocation``, ``out of memory``)."""
    name = getattr(err, "name", None) or str(err)
    try:
        description = runtime().cudaGetErrorString(err)[1].decode(errors="replace")
    except Exception:  # a code from another binding, or no runtime: the name alone still says it
        description = None
    return name, description


def _version(encoded: int) -> str:
    return f"{encoded // 1000}.{encoded % 1000 // 10}"


def _count_or_reason() -> tuple[int, str | None]:
    """Device count, and why CUDA is unusable when it is 0; never raises."""
    try:
        rt = runtime()
    except CudaUnavailableError as exc:
        return 0, exc.reason
    try:
        err, count = rt.cudaGetDeviceCount()
    except Exception as exc:  # a binding that raises instead of returning an error code
        return 0, f"the CUDA driver cannot be loaded: {type(exc).__name__}: {exc}"
    if not err and count:
        return int(count), None
    if not err:
        return 0, "no CUDA device (cudaGetDeviceCount found none)"
    name, description = _describe(err)
    if name == "cudaErrorInsufficientDriver":
        try:
            driver = int(check("cudaDriverGetVersion", rt.cudaDriverGetVersion()))
            needed = int(check("cudaRuntimeGetVersion", rt.cudaRuntimeGetVersion()))
        except Exception:
            driver = needed = 0
        if driver:
            return 0, (
                f"the NVIDIA driver supports CUDA {_version(driver)} but cuda-python's runtime needs CUDA "
                f"{_version(needed)}: {name} (update the driver or install a cuda-python that matches it)"
            )
        return 0, f"no NVIDIA driver: {name}"
    if name == "cudaErrorNoDevice":
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return 0, f"no CUDA device: {name}" + (f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else "")
    if name == "cudaErrorStubLibrary":
        return 0, f"the CUDA driver found is a stub library, not an NVIDIA driver: {name}"
    return 0, f"CUDA cannot be initialised: {name}" + (f" ({description})" if description else "")


def device_count() -> int:
    """Number of usable CUDA devices; 0 without cuda-python, driver or device (absence never raises)."""
    return _count_or_reason()[0]


def unavailable_reason() -> str | None:
    """Why CUDA cannot be used on this machine, or None when a device is usable."""
    return _count_or_reason()[1]


def usable_runtime() -> Any:
    """The runtime module, after checking once per process that a device is usable (CudaUnavailableError if not)."""
    global _usable
    if _usable and _runtime is not None:
        return _runtime
    _, reason = _count_or_reason()
    if reason is not None:
        raise CudaUnavailableError(reason)
    _usable = True
    return runtime()


def closed_error(what: str) -> CudaError:
    """The error for a CUDA object used after ``close()``."""
    return CudaError(what, "closed", "used after close()")


# --- devices ----------------------------------------------------------------------------------


def set_device(index: int) -> None:
    """Make device ``index`` current for the calling host thread (``cudaSetDevice``).

    CUDA's current device is per host thread and defaults to 0: streams, buffers, TensorRT's
    builder, runtime and execution contexts all use the device current when they are made or
    called, so code that runs on ``cuda:N`` sets it first in every thread that calls CUDA (as
    trtexec does for its inference threads).
    """
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise CudaUnavailableError(f"a CUDA device index is an int >= 0, got {index!r}")
    check("cudaSetDevice", usable_runtime().cudaSetDevice(index))


def current_device() -> int:
    """The device current for the calling host thread (``cudaGetDevice``)."""
    return int(check("cudaGetDevice", usable_runtime().cudaGetDevice()))


@dataclass(frozen=True)
class DeviceInfo:
    """One CUDA device as the planner and reports show it."""

    index: int
    name: str
    compute_capability: str  # "8.7"
    total_memory: int  # bytes (shared with the CPU on Jetson)
    multiprocessors: int


def device_info(index: int = 0) -> DeviceInfo:
    """Name, compute capability, memory and SM count of device ``index``; CudaUnavailableError when absent."""
    count, reason = _count_or_reason()
    if reason is not None:
        raise CudaUnavailableError(reason)
    if not 0 <= index < count:
        raise CudaUnavailableError(f"no CUDA device {index}: this machine has {count} (0..{count - 1})")
    props = check("cudaGetDeviceProperties", runtime().cudaGetDeviceProperties(index))
    name = props.name
    if isinstance(name, bytes):
        name = name.split(b"\0", 1)[0].decode(errors="replace")
    return DeviceInfo(
        index=index,
        name=str(name),
        compute_capability=f"{props.major}.{props.minor}",
        total_memory=int(props.totalGlobalMem),
        multiprocessors=int(props.multiProcessorCount),
    )
