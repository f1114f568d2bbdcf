"""The thin CUDA layer under the TensorRT backend: streams, events, device and pinned buffers, copies, CUDA graphs.

Everything goes through cuda-python's runtime API (``cuda.bindings.runtime``, or ``cuda.cudart`` before
cuda-python 12.6.1), imported on first use so that the CPU path never loads it. Absence (no cuda-python,
no driver, no device) raises :class:`CudaUnavailableError` with the reason; a failing call raises
:class:`CudaError` naming the call and CUDA's error. Every resource frees itself on ``close()``
(idempotent), as a context manager, or when garbage collected.
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from edgerun.errors import CudaError, CudaUnavailableError, InputError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "CudaGraph",
    "DeviceBuffer",
    "DeviceInfo",
    "Event",
    "PinnedArray",
    "Stream",
    "check",
    "copy_device_to_device",
    "copy_to_device",
    "copy_to_host",
    "device_count",
    "device_info",
    "elapsed_ms",
    "runtime",
    "unavailable_reason",
]

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


def _usable_runtime() -> Any:
    """The runtime module, after checking once per process that a device is usable (CudaUnavailableError if not)."""
    global _usable
    if _usable and _runtime is not None:
        return _runtime
    _, reason = _count_or_reason()
    if reason is not None:
        raise CudaUnavailableError(reason)
    _usable = True
    return runtime()


def _closed(what: str) -> CudaError:
    return CudaError(what, "closed", "used after close()")


# --- devices ----------------------------------------------------------------------------------


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


# --- streams and events -----------------------------------------------------------------------


_R = TypeVar("_R", bound="_Resource")


class _Resource:
    """Context-manager and finaliser plumbing shared by every CUDA object: ``close()`` frees it."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _R) -> _R:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:  # noqa: SIM105 - no contextlib: module globals may be gone at interpreter shutdown
            self.close()
        except Exception:  # interpreter shutdown or a dead context: nothing left to free
            pass


class Stream(_Resource):
    """A non-blocking CUDA stream (no implicit sync with the legacy default stream, so it can be graph-captured)."""

    def __init__(self) -> None:
        self._handle: Any = None
        self._rt = _usable_runtime()
        self._handle = check(
            "cudaStreamCreateWithFlags", self._rt.cudaStreamCreateWithFlags(self._rt.cudaStreamNonBlocking)
        )
        self._ptr = int(self._handle)

    @property
    def handle(self) -> Any:
        """The cuda-python ``cudaStream_t``."""
        if self._handle is None:
            raise _closed("Stream.handle")
        return self._handle

    @property
    def ptr(self) -> int:
        """The stream as an integer address (what TensorRT's ``execute_async_v3`` takes)."""
        if self._handle is None:
            raise _closed("Stream.ptr")
        return self._ptr

    def synchronize(self) -> None:
        """Wait until all work queued on this stream has finished."""
        check("cudaStreamSynchronize", self._rt.cudaStreamSynchronize(self.handle))

    def close(self) -> None:
        """Destroy the stream (queued work still completes); later calls do nothing."""
        handle, self._handle = self._handle, None
        if handle is not None:
            check("cudaStreamDestroy", self._rt.cudaStreamDestroy(handle))


class Event(_Resource):
    """A CUDA event: marks a point in a stream to wait on or to time (``timing=False`` makes it cheaper)."""

    def __init__(self, timing: bool = True) -> None:
        self._handle: Any = None
        self._rt = _usable_runtime()
        flags = self._rt.cudaEventDefault if timing else self._rt.cudaEventDisableTiming
        self._handle = check("cudaEventCreateWithFlags", self._rt.cudaEventCreateWithFlags(flags))

    @property
    def handle(self) -> Any:
        """The cuda-python ``cudaEvent_t``."""
        if self._handle is None:
            raise _closed("Event.handle")
        return self._handle

    def record(self, stream: Stream) -> None:
        """Mark the current end of ``stream``'s queue."""
        check("cudaEventRecord", self._rt.cudaEventRecord(self.handle, stream.handle))

    def synchronize(self) -> None:
        """Wait until the work before the recorded point has finished."""
        check("cudaEventSynchronize", self._rt.cudaEventSynchronize(self.handle))

    @staticmethod
    def elapsed_ms(start: Event, end: Event) -> float:
        """GPU time between two recorded, completed timing events, in milliseconds (~0.5 µs resolution)."""
        return float(check("cudaEventElapsedTime", start._rt.cudaEventElapsedTime(start.handle, end.handle)))

    def close(self) -> None:
        """Destroy the event; later calls do nothing."""
        handle, self._handle = self._handle, None
        if handle is not None:
            check("cudaEventDestroy", self._rt.cudaEventDestroy(handle))


def elapsed_ms(start: Event, end: Event) -> float:
    """Same as :meth:`Event.elapsed_ms`."""
    return Event.elapsed_ms(start, end)


# --- memory -----------------------------------------------------------------------------------


def _check_nbytes(nbytes: int) -> int:
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
        raise InputError(f"a byte count must be an int >= 0, got {nbytes!r}", expected="int >= 0", got=repr(nbytes))
    return nbytes


class DeviceBuffer(_Resource):
    """``cudaMalloc``'d device bytes, grown on demand and otherwise reused (TensorRT binds one address across calls)."""

    def __init__(self, nbytes: int = 0) -> None:
        self._ptr = 0
        self._nbytes = 0
        self._closed = True
        self._rt = _usable_runtime()
        self._closed = False
        if _check_nbytes(nbytes):
            self.ensure(nbytes)

    @property
    def ptr(self) -> int:
        """Device address (0 while the buffer is empty)."""
        if self._closed:
            raise _closed("DeviceBuffer.ptr")
        return self._ptr

    @property
    def nbytes(self) -> int:
        """Bytes allocated now."""
        return self._nbytes

    def ensure(self, nbytes: int) -> bool:
        """Make room for ``nbytes``; True when it reallocated (the address changed: re-bind it), False otherwise.

        The old block is freed before the new one is allocated (edge devices are short of memory), so if
        the allocation fails the buffer is left empty.
        """
        if self._closed:
            raise _closed("DeviceBuffer.ensure")
        if _check_nbytes(nbytes) <= self._nbytes:
            return False
        self._free()
        self._ptr = int(check("cudaMalloc", self._rt.cudaMalloc(nbytes)))
        self._nbytes = nbytes
        return True

    def _free(self) -> None:
        ptr, self._ptr, self._nbytes = self._ptr, 0, 0
        if ptr:
            check("cudaFree", self._rt.cudaFree(ptr))

    def close(self) -> None:
        """Free the device memory; later calls do nothing."""
        if not self._closed:
            self._closed = True
            self._free()


class _HostBlock:
    """One ``cudaMallocHost`` block, exposed to numpy; freed when the last array viewing it is gone."""

    def __init__(self, rt: Any, nbytes: int) -> None:
        self._rt = rt
        self.ptr = 0
        self.ptr = int(check("cudaMallocHost", rt.cudaMallocHost(nbytes)))
        self.__array_interface__ = {"data": (self.ptr, False), "shape": (nbytes,), "typestr": "|u1", "version": 3}

    def __del__(self) -> None:
        ptr, self.ptr = self.ptr, 0
        if ptr:
            try:  # noqa: SIM105 - no contextlib: module globals may be gone at interpreter shutdown
                self._rt.cudaFreeHost(ptr)
            except Exception:  # interpreter shutdown: the process is releasing it anyway
                pass


class PinnedArray(_Resource):
    """Page-locked host memory (``cudaMallocHost``) seen as a numpy array: async copies need pinned memory.

    ``close()`` frees the block at once unless a view of ``array`` is still referenced somewhere; then
    the block lives until the last such view is gone, so a stray view never reads freed memory.
    """

    def __init__(self, shape: int | Sequence[int], dtype: npt.DTypeLike) -> None:
        import numpy as np

        self._block: _HostBlock | None = None
        self._array: np.ndarray[Any, Any] | None = None
        try:
            dims = (operator.index(shape),) if not isinstance(shape, Iterable) else tuple(map(operator.index, shape))
        except TypeError:
            dims = (-1,)
        if any(d < 0 for d in dims):
            raise InputError(f"PinnedArray shape must be ints >= 0, got {shape!r}", got=repr(shape))
        kind = np.dtype(dtype)
        if kind.hasobject:
            raise InputError(f"PinnedArray cannot hold Python objects (dtype {kind})", got=str(kind))
        nbytes = math.prod(dims) * kind.itemsize
        rt = _usable_runtime()
        if nbytes == 0:
            self._array = np.empty(dims, kind)
            return
        self._block = _HostBlock(rt, nbytes)
        self._array = np.asarray(self._block).view(kind).reshape(dims)

    @property
    def array(self) -> np.ndarray[Any, Any]:
        """The numpy view on the pinned memory (C-contiguous, writeable)."""
        if self._array is None:
            raise _closed("PinnedArray.array")
        return self._array

    @property
    def ptr(self) -> int:
        """Host address of the pinned block (0 for an empty array)."""
        if self._array is None:
            raise _closed("PinnedArray.ptr")
        return 0 if self._block is None else self._block.ptr

    @property
    def nbytes(self) -> int:
        """Size in bytes (0 after close)."""
        return 0 if self._array is None else int(self._array.nbytes)

    def close(self) -> None:
        """Drop this object's hold on the block: freed now, or when the last outside view goes."""
        self._array = None
        self._block = None


# --- copies -----------------------------------------------------------------------------------


def _require_contiguous(array: np.ndarray[Any, Any], role: str, writeable: bool = False) -> None:
    if not array.flags.c_contiguous:
        raise InputError(f"{role} must be C-contiguous for a raw CUDA copy", expected="C-contiguous", got="strided")
    if writeable and not array.flags.writeable:
        raise InputError(f"{role} must be writeable", expected="writeable", got="read-only")


def copy_to_device(dst_ptr: int, src: np.ndarray[Any, Any], stream: Stream) -> None:
    """Queue ``src.nbytes`` from host ``src`` (C-contiguous; pinned for a truly async copy) to ``dst_ptr``."""
    _require_contiguous(src, "copy_to_device source")
    if src.nbytes:
        rt = stream._rt
        check(
            "cudaMemcpyAsync",
            rt.cudaMemcpyAsync(
                dst_ptr, src.ctypes.data, src.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream.handle
            ),
        )


def copy_to_host(dst: np.ndarray[Any, Any], src_ptr: int, stream: Stream) -> None:
    """Queue ``dst.nbytes`` from device ``src_ptr`` into host ``dst`` (C-contiguous, writeable); read after a sync."""
    _require_contiguous(dst, "copy_to_host destination", writeable=True)
    if dst.nbytes:
        rt = stream._rt
        check(
            "cudaMemcpyAsync",
            rt.cudaMemcpyAsync(
                dst.ctypes.data, src_ptr, dst.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream.handle
            ),
        )


def copy_device_to_device(dst_ptr: int, src_ptr: int, nbytes: int, stream: Stream) -> None:
    """Queue a device-to-device copy of ``nbytes``."""
    if _check_nbytes(nbytes):
        rt = stream._rt
        check(
            "cudaMemcpyAsync",
            rt.cudaMemcpyAsync(dst_ptr, src_ptr, nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream.handle),
        )


# --- CUDA graphs ------------------------------------------------------------------------------


class CudaGraph(_Resource):
    """An instantiated CUDA graph: work captured once from a stream, replayed with one launch.

    A graph replays the recorded addresses: refill the same buffers between launches, never new ones.
    """

    def __init__(self, rt: Any, graph_exec: Any) -> None:
        self._rt = rt
        self._exec = graph_exec

    @classmethod
    def capture(cls, stream: Stream, enqueue: Callable[[], object]) -> CudaGraph:
        """Record what ``enqueue()`` queues on ``stream`` into a graph (thread-local capture mode).

        ``enqueue`` must only queue async work on ``stream`` (copies from pinned memory, TensorRT's
        ``execute_async_v3``); returning ``False`` counts as failure. On any failure the capture is ended,
        CUDA's last error cleared, partial objects destroyed, and CudaError raised so that the caller can
        fall back to plain enqueue; the stream stays usable.
        """
        rt = stream._rt
        handle = stream.handle
        check(
            "cudaStreamBeginCapture",
            _clearing(rt, rt.cudaStreamBeginCapture(handle, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal)),
        )
        try:
            returned = enqueue()
        except CudaError:
            _abort_capture(rt, handle)
            raise
        except Exception as exc:
            _abort_capture(rt, handle)
            raise CudaError("CudaGraph.capture enqueue", type(exc).__name__, str(exc)) from exc
        except BaseException:  # KeyboardInterrupt: end the capture, keep the interrupt
            _abort_capture(rt, handle)
            raise
        if returned is False:
            _abort_capture(rt, handle)
            raise CudaError("CudaGraph.capture enqueue", "returned False", "the enqueue callable reported failure")
        graph = check("cudaStreamEndCapture", _clearing(rt, rt.cudaStreamEndCapture(handle)))
        try:
            graph_exec = check("cudaGraphInstantiate", _clearing(rt, rt.cudaGraphInstantiate(graph, 0)))
        finally:
            rt.cudaGraphDestroy(graph)  # the executable graph does not need it
        return cls(rt, graph_exec)

    def launch(self, stream: Stream) -> None:
        """Queue one replay of the graph on ``stream``."""
        if self._exec is None:
            raise _closed("CudaGraph.launch")
        check("cudaGraphLaunch", self._rt.cudaGraphLaunch(self._exec, stream.handle))

    def close(self) -> None:
        """Destroy the executable graph (synchronize its stream first); later calls do nothing."""
        graph_exec, self._exec = self._exec, None
        if graph_exec is not None:
            check("cudaGraphExecDestroy", self._rt.cudaGraphExecDestroy(graph_exec))


def _clearing(rt: Any, result: Any) -> Any:
    """Pass ``result`` through, clearing CUDA's last-error state when it is a failure (so it does not linger)."""
    if result[0]:
        rt.cudaGetLastError()
    return result


def _abort_capture(rt: Any, handle: Any) -> None:
    """End a capture that failed midway (if still capturing), destroy any partial graph, clear the last error."""
    try:
        err, status = rt.cudaStreamIsCapturing(handle)
        if err or status != rt.cudaStreamCaptureStatus.cudaStreamCaptureStatusNone:
            err, graph = rt.cudaStreamEndCapture(handle)
            if not err and graph is not None and int(graph):
                rt.cudaGraphDestroy(graph)
        rt.cudaGetLastError()
    except Exception:  # never let the clean-up hide the failure being reported
        pass
