"""Registers the backends that ship with edgerun (imported once, by `registered()`)."""

from . import onnxruntime_backend, tensorrt_probe
from .base import register

register(onnxruntime_backend.ENTRY)
register(tensorrt_probe.ENTRY)
