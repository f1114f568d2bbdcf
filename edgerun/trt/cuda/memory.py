"""CUDA streams, events, device buffers, pinned host arrays and async copies: each frees itself on ``close()``."""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from edgerun.errors import InputError
from edgerun.trt.cuda.api import check, closed_error, usable_runtime

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# --- streams and events -----------------------------------------------------------------------


_R = TypeVar("_R", bound="Resource")


class Resource:
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


class Stream(Resource):
    """A non-blocking CUDA stream (no implicit sync with the legacy default stream, so it can be graph-captured)."""

    def __init__(self) -> None:
        self._handle: Any = None
        self.rt = usable_runtime()
        self._handle = check(
            "cudaStreamCreateWithFlags", self.rt.cudaStreamCreateWithFlags(self.rt.cudaStreamNonBlocking)
        )
        self._ptr = int(self._handle)

    @property
    def handle(self) -> Any:
        """The cuda-python ``cudaStream_t``."""
        if self._handle is None:
            raise closed_error("Stream.handle")
        return self._handle

    @property
    def ptr(self) -> int:
        """The stream as an integer address (what TensorRT's ``execute_async_v3`` takes)."""
        if self._handle is None:
            raise closed_error("Stream.ptr")
        return self._ptr

    def synchronize(self) -> None:
        """Wait until all work queued on this stream has finished."""
        check("cudaStreamSynchronize", self.rt.cudaStreamSynchronize(self.handle))

    def close(self) -> None:
        """Destroy the stream (queued work still completes); later calls do nothing."""
        handle, self._handle = self._handle, None
        if handle is not None:
            check("cudaStreamDestroy", self.rt.cudaStreamDestroy(handle))


class Event(Resource):
    """A CUDA event: marks a point in a stream to wait on or to time (``timing=False`` makes it cheaper)."""

    def __init__(self, timing: bool = True) -> None:
        self._handle: Any = None
        self.rt = usable_runtime()
        flags = self.rt.cudaEventDefault if timing else self.rt.cudaEventDisableTiming
        self._handle = check("cudaEventCreateWithFlags", self.rt.cudaEventCreateWithFlags(flags))

    @property
    def handle(self) -> Any:
        """The cuda-python ``cudaEvent_t``."""
        if self._handle is None:
            raise closed_error("Event.handle")
        return self._handle

    def record(self, stream: Stream) -> None:
        """Mark the current end of ``stream``'s queue."""
        check("cudaEventRecord", self.rt.cudaEventRecord(self.handle, stream.handle))

    def synchronize(self) -> None:
        """Wait until the work before the recorded point has finished."""
        check("cudaEventSynchronize", self.rt.cudaEventSynchronize(self.handle))

    @staticmethod
    def elapsed_ms(start: Event, end: Event) -> float:
        """GPU time between two recorded, completed timing events, in milliseconds (~0.5 µs resolution)."""
        return float(check("cudaEventElapsedTime", start.rt.cudaEventElapsedTime(start.handle, end.handle)))

    def close(self) -> None:
        """Destroy the event; later calls do nothing."""
        handle, self._handle = self._handle, None
        if handle is not None:
            check("cudaEventDestroy", self.rt.cudaEventDestroy(handle))


def elapsed_ms(start: Event, end: Event) -> float:
    """Same as :meth:`Event.elapsed_ms`."""
    return Event.elapsed_ms(start, end)


# --- memory -----------------------------------------------------------------------------------


def _check_nbytes(nbytes: int) -> int:
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
        raise InputError(f"a byte count must be an int >= 0, got {nbytes!r}", expected="int >= 0", got=repr(nbytes))
    return nbytes


class DeviceBuffer(Resource):
    """``cudaMalloc``'d device bytes, grown on demand and otherwise reused (TensorRT binds one address across calls)."""

    def __init__(self, nbytes: int = 0) -> None:
        self._ptr = 0
        self._nbytes = 0
        self._closed = True
        self.rt = usable_runtime()
        self._closed = False
        if _check_nbytes(nbytes):
            self.ensure(nbytes)

    @property
    def ptr(self) -> int:
        """Device address (0 while the buffer is empty)."""
        if self._closed:
            raise closed_error("DeviceBuffer.ptr")
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
            raise closed_error("DeviceBuffer.ensure")
        if _check_nbytes(nbytes) <= self._nbytes:
            return False
        self._free()
        self._ptr = int(check("cudaMalloc", self.rt.cudaMalloc(nbytes)))
        self._nbytes = nbytes
        return True

    def _free(self) -> None:
        ptr, self._ptr, self._nbytes = self._ptr, 0, 0
        if ptr:
            check("cudaFree", self.rt.cudaFree(ptr))

    def close(self) -> None:
        """Free the device memory; later calls do nothing."""
        if not self._closed:
            self._closed = True
            self._free()


class _HostBlock:
    """One ``cudaMallocHost`` block, exposed to numpy; freed when the last array viewing it is gone."""

    def __init__(self, rt: Any, nbytes: int) -> None:
        self.rt = rt
        self.ptr = 0
        self.ptr = int(check("cudaMallocHost", rt.cudaMallocHost(nbytes)))
        self.__array_interface__ = {"data": (self.ptr, False), "shape": (nbytes,), "typestr": "|u1", "version": 3}

    def __del__(self) -> None:
        ptr, self.ptr = self.ptr, 0
        if ptr:
            try:  # noqa: SIM105 - no contextlib: module globals may be gone at interpreter shutdown
                self.rt.cudaFreeHost(ptr)
            except Exception:  # interpreter shutdown: the process is releasing it anyway
                pass


class PinnedArray(Resource):
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
        rt = usable_runtime()
        if nbytes == 0:
            self._array = np.empty(dims, kind)
            return
        self._block = _HostBlock(rt, nbytes)
        self._array = np.asarray(self._block).view(kind).reshape(dims)

    @property
    def array(self) -> np.ndarray[Any, Any]:
        """The numpy view on the pinned memory (C-contiguous, writeable)."""
        if self._array is None:
            raise closed_error("PinnedArray.array")
        return self._array

    @property
    def ptr(self) -> int:
        """Host address of the pinned block (0 for an empty array)."""
        if self._array is None:
            raise closed_error("PinnedArray.ptr")
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
        rt = stream.rt
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
        rt = stream.rt
        check(
            "cudaMemcpyAsync",
            rt.cudaMemcpyAsync(
                dst.ctypes.data, src_ptr, dst.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream.handle
            ),
        )


def copy_device_to_device(dst_ptr: int, src_ptr: int, nbytes: int, stream: Stream) -> None:
    """Queue a device-to-device copy of ``nbytes``."""
    if _check_nbytes(nbytes):
        rt = stream.rt
        check(
            "cudaMemcpyAsync",
            rt.cudaMemcpyAsync(dst_ptr, src_ptr, nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream.handle),
        )
