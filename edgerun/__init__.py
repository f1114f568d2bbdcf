"""edgerun: run distilled ONNX models in real time on edge devices, with one API.

``edgerun.load("student.onnx")`` picks the best backend for the device it runs on. Heavy
modules (numpy, onnx, onnxruntime) are imported on first use, not by ``import edgerun``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from edgerun.errors import (
    BackendError,
    BackendUnavailableError,
    BatcherClosedError,
    CacheWriteError,
    CalibrationError,
    ConfigError,
    ConversionError,
    EdgerunError,
    ImageError,
    InputError,
    MissingExtraError,
    ModelError,
    ModelNotFoundError,
    QueueFullError,
    RequestTimeoutError,
    ResultFileError,
    SessionClosedError,
    StorageWriteError,
    ThresholdError,
    UnknownModelError,
    UnsupportedModelError,
    UnsupportedPrecisionError,
)

__version__ = "0.1.0"

_LAZY = {
    "load": "edgerun.loading",
    "current_device": "edgerun.runtime.device",
    "Session": "edgerun.runtime.session",
    "DeviceProfile": "edgerun.runtime.device",
    "DeviceDefaults": "edgerun.runtime.defaults",
    "Plan": "edgerun.runtime.plan",
    "ModelFile": "edgerun.runtime.modelfile",
    "TensorSpec": "edgerun.specs",
    "DynamicBatcher": "edgerun.runtime.batching",
    "BatchedSession": "edgerun.runtime.batching",
    "PreprocessSpec": "edgerun.data.preprocess",
    "QuantizeOptions": "edgerun.precision.quantize",
    "CalibrationData": "edgerun.precision.calibration",
    "models": "edgerun.models",
}
"""Public name -> the module that defines it, imported on first use."""

__all__ = [
    "BackendError",
    "BackendUnavailableError",
    "BatchedSession",
    "BatcherClosedError",
    "CacheWriteError",
    "CalibrationData",
    "CalibrationError",
    "ConfigError",
    "ConversionError",
    "DeviceDefaults",
    "DeviceProfile",
    "DynamicBatcher",
    "EdgerunError",
    "ImageError",
    "InputError",
    "MissingExtraError",
    "ModelError",
    "ModelFile",
    "ModelNotFoundError",
    "Plan",
    "PreprocessSpec",
    "QuantizeOptions",
    "QueueFullError",
    "RequestTimeoutError",
    "ResultFileError",
    "Session",
    "SessionClosedError",
    "StorageWriteError",
    "TensorSpec",
    "ThresholdError",
    "UnknownModelError",
    "UnsupportedModelError",
    "UnsupportedPrecisionError",
    "__version__",
    "current_device",
    "load",
    "models",
]

if TYPE_CHECKING:
    from edgerun import models
    from edgerun.data.preprocess import PreprocessSpec
    from edgerun.loading import load
    from edgerun.precision.calibration import CalibrationData
    from edgerun.precision.quantize import QuantizeOptions
    from edgerun.runtime.batching import BatchedSession, DynamicBatcher
    from edgerun.runtime.defaults import DeviceDefaults
    from edgerun.runtime.device import DeviceProfile, current_device
    from edgerun.runtime.modelfile import ModelFile
    from edgerun.runtime.plan import Plan
    from edgerun.runtime.session import Session
    from edgerun.specs import TensorSpec


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgerun' has no attribute {name!r}")
    imported = import_module(module)
    value = imported if module == f"{__name__}.{name}" else getattr(imported, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
