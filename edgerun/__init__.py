"""edgerun: run distilled ONNX models in real time on edge devices, with one API.

``edgerun.load("student.onnx")`` picks the best backend for the device it runs on. Heavy
modules (numpy, onnx, onnxruntime) are imported on first use, not by ``import edgerun``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import (
    BackendError,
    BackendUnavailableError,
    BatcherClosedError,
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
    ThresholdError,
    UnknownModelError,
    UnsupportedModelError,
    UnsupportedPrecisionError,
)

__version__ = "0.1.0"

_LAZY = {
    "load": "session",
    "Session": "session",
    "current_device": "session",
    "DeviceProfile": "device",
    "DeviceDefaults": "defaults",
    "Plan": "plan",
    "ModelFile": "model",
    "TensorSpec": "specs",
    "DynamicBatcher": "batching",
    "BatchedSession": "batching",
    "PreprocessSpec": "preprocess",
    "models": "models",
}

__all__ = [
    "BackendError",
    "BackendUnavailableError",
    "BatchedSession",
    "BatcherClosedError",
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
    "QueueFullError",
    "RequestTimeoutError",
    "ResultFileError",
    "Session",
    "SessionClosedError",
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
    from . import models
    from .batching import BatchedSession, DynamicBatcher
    from .defaults import DeviceDefaults
    from .device import DeviceProfile
    from .model import ModelFile
    from .plan import Plan
    from .preprocess import PreprocessSpec
    from .session import Session, current_device, load
    from .specs import TensorSpec


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgerun' has no attribute {name!r}")
    imported = import_module(f".{module}", __name__)
    value = imported if name == module else getattr(imported, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
