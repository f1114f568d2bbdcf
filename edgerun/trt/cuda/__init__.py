"""The thin CUDA layer under the TensorRT backend: streams, events, device and pinned buffers, copies, CUDA graphs.

Everything goes through cuda-python's runtime API (``cuda.bindings.runtime``, or ``cuda.cudart`` before
cuda-python 12.6.1), imported on first use so that the CPU path never loads it (`api`). Absence (no
cuda-python, no driver, no device) raises :class:`CudaUnavailableError` with the reason; a failing call
raises :class:`CudaError` naming the call and CUDA's error. Every resource (`memory`, `graph`) frees
itself on ``close()`` (idempotent), as a context manager, or when garbage collected.
"""

from edgerun.trt.cuda.api import (
    NOT_INSTALLED,
    DeviceInfo,
    check,
    current_device,
    device_count,
    device_info,
    runtime,
    set_device,
    unavailable_reason,
)
from edgerun.trt.cuda.graph import CudaGraph
from edgerun.trt.cuda.memory import (
    DeviceBuffer,
    Event,
    PinnedArray,
    Stream,
    copy_device_to_device,
    copy_to_device,
    copy_to_host,
    elapsed_ms,
)

__all__ = [
    "NOT_INSTALLED",
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
    "current_device",
    "device_count",
    "device_info",
    "elapsed_ms",
    "runtime",
    "set_device",
    "unavailable_reason",
]
