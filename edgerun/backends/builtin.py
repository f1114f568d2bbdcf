"""Registers the backends that ship with edgerun (imported once, by `registered()`)."""

from ..trt import backend as tensorrt_backend
from . import onnxruntime_backend
from .base import register

register(onnxruntime_backend.ENTRY)
register(tensorrt_backend.ENTRY)
