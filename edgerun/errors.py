"""The one exception family edgerun raises.

Every error names what it is about (a file, a tensor, an option) and what was expected versus
what was found, so that an app or the CLI can show one line and the user knows what to fix.
Subclasses also derive from the matching builtin (``FileNotFoundError``, ``ValueError``, ...)
so that generic handlers in user code keep working.
"""

from __future__ import annotations

import errno as _errno
from functools import partial
from os import PathLike
from typing import Any


class EdgerunError(Exception):
    """Base of every error edgerun raises on purpose."""


# --- models -----------------------------------------------------------------------------------


class ModelError(EdgerunError):
    """A model file cannot be used: missing, not ONNX, corrupt, unsafe or unsupported."""

    def __init__(self, path: str | PathLike[str] | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class ModelNotFoundError(ModelError, FileNotFoundError):
    """The model path does not exist."""

    def __init__(self, path: str | PathLike[str]) -> None:
        ModelError.__init__(self, path, "model file not found")


class UnknownModelError(ModelError, KeyError):
    """A name that is neither an existing path nor a bundled model."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        ModelError.__init__(
            self,
            None,
            f"unknown model {name!r}: not a file, and not a bundled model (bundled: {', '.join(known)})",
        )

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.problem


class UnsupportedModelError(ModelError):
    """A well-formed ONNX model that the chosen backend cannot run (operator, opset, type)."""


# --- inputs -----------------------------------------------------------------------------------


class InputError(EdgerunError, ValueError):
    """Feeds that do not match the model's inputs, or input data that cannot be read."""

    def __init__(
        self,
        message: str,
        *,
        tensor: str | None = None,
        expected: str | None = None,
        got: str | None = None,
    ) -> None:
        self.tensor = tensor
        self.expected = expected
        self.got = got
        super().__init__(message)


class ImageError(InputError):
    """An image file that OpenCV cannot decode, or that does not fit the preprocessing."""

    def __init__(self, path: str | PathLike[str], problem: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: {problem}")


class CalibrationError(InputError):
    """Calibration data that is missing, empty, unreadable or does not fit the model."""


class ResultFileError(InputError):
    """A bench result file (``edgerun bench --json``) that is missing, not JSON, from another schema or incomplete."""

    def __init__(self, path: str | PathLike[str], problem: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: {problem}")


# --- configuration and backends ---------------------------------------------------------------


class ConfigError(EdgerunError, ValueError):
    """An unknown or invalid option value (backend, device, precision, option name)."""


class BackendUnavailableError(EdgerunError):
    """The requested backend or device cannot be used on this machine; says why."""


class UnsupportedPrecisionError(BackendUnavailableError):
    """The requested precision cannot be run by the chosen backend on this device."""


class BackendError(EdgerunError):
    """The backend failed while running a model that it had accepted."""


class CudaUnavailableError(BackendUnavailableError):
    """CUDA cannot be used here: no cuda-python, no NVIDIA driver, or no device; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class CudaError(BackendError):
    """A CUDA runtime call failed: ``call`` names it, ``error_name`` is CUDA's (``cudaErrorMemoryAllocation``)."""

    def __init__(self, call: str, error_name: str, description: str | None = None, code: int | None = None) -> None:
        self.call = call
        self.error_name = error_name
        self.description = description
        self.code = code
        super().__init__(
            f"{call} failed: {error_name} ({description})" if description else f"{call} failed: {error_name}"
        )


class SessionClosedError(EdgerunError):
    """A call on a session after ``close()``."""


class BatcherClosedError(SessionClosedError):
    """A request to a dynamic batcher after ``close()``."""


class QueueFullError(EdgerunError):
    """The dynamic batcher's queue is at ``max_queue_size``: the request was rejected at once."""


class RequestTimeoutError(EdgerunError, TimeoutError):
    """A request waited past its timeout in the batcher's queue; it was not run."""


class StorageWriteError(EdgerunError, OSError):
    """A file edgerun writes could not be written: disk full, over quota, read-only or not permitted.

    ``errno``/``strerror`` are the operating system's; ``needed`` (bytes, where known) and ``free``
    are given for a full disk or quota, so the message says how much room is missing.
    """

    def __init__(
        self,
        path: str | PathLike[str],
        errno: int,
        strerror: str,
        *,
        folder: str | PathLike[str],
        needed: int | None = None,
        free: int | None = None,
    ) -> None:
        super().__init__()
        self.errno, self.strerror, self.filename = errno, strerror, str(path)
        self.path, self.folder, self.needed, self.free = str(path), str(folder), needed, free
        space = ""
        if self.full():
            parts = [f"needs about {_size(needed)}"] if needed else []
            parts += [f"{_size(free)} free"] if free is not None else []
            space = f" ({', '.join(parts)})" if parts else ""
        self.message = f"cannot write {self.path}{self.where()}: {strerror}{space}. {self.fix()}"
        self.args = (self.message,)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:  # OSError's would call __init__ with the message alone
        rebuild = partial(type(self), folder=self.folder, needed=self.needed, free=self.free)
        return (rebuild, (self.path, self.errno, self.strerror))

    def full(self) -> bool:
        """Whether the disk or quota is full (rather than read-only or not permitted)."""
        return self.errno in (_errno.ENOSPC, _errno.EDQUOT)

    def where(self) -> str:
        """What the folder is, for the message ("" for a plain output folder)."""
        return ""

    def fix(self) -> str:
        """How to fix it, for the message."""
        if self.full():
            return f"Free some space in {self.folder}, or write the file elsewhere"
        return f"Make {self.folder} writable, or write the file elsewhere"


class CacheWriteError(StorageWriteError):
    """A cache entry (converted model, TensorRT engine) could not be written; says how to move the cache."""

    def where(self) -> str:
        """Names the cache folder."""
        return f" in edgerun's cache folder {self.folder}"

    def fix(self) -> str:
        """Free space, or move the cache with ``EDGERUN_CACHE_DIR``."""
        if self.full():
            return "Free some space there, or move edgerun's cache to a disk with room: EDGERUN_CACHE_DIR=/other/disk"
        return "Make it writable, or move edgerun's cache to a writable folder: EDGERUN_CACHE_DIR=/a/writable/folder"


def _size(count: int | None) -> str:
    """Bytes as a short human size (``12.3 MiB``)."""
    value = float(count or 0)
    if value < 1024:
        return f"{value:.0f} B"
    for unit in ("KiB", "MiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} GiB"


class ConversionError(EdgerunError):
    """A precision conversion (INT8 quantization, FP16) that cannot be done or produced nothing."""


class MissingExtraError(EdgerunError, ImportError):
    """An optional feature whose extra is not installed; the message names the ``pip install`` that adds it."""


class ThresholdError(EdgerunError):
    """A comparison or benchmark gate (accuracy drop, cosine, deadline) was violated."""
