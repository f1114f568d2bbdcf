"""The reference every conversion is checked against: a model on ONNX Runtime's CPU provider.

The precision pipeline runs candidate and FP32 models here, below `edgerun.loading`, so it
never depends on which backend the device would plan.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgerun.runtime.backends import onnxruntime_backend
from edgerun.runtime.backends.base import ModelSource
from edgerun.runtime.device import current_device
from edgerun.runtime.modelfile import ModelFile
from edgerun.runtime.plan import PlanRequest, choose_plan
from edgerun.runtime.session import Session


def open_on_cpu(path: str | os.PathLike[str], *, threads: int | None = None) -> Session:
    """``path`` opened with ONNX Runtime on the CPU (typed errors for a bad file, as `load` gives)."""
    model = ModelFile.open(Path(path))
    entry = onnxruntime_backend.ENTRY
    options = {"threads": threads} if threads is not None else {}
    request = PlanRequest(device="cpu", backend=entry.name, options=options)
    plan = choose_plan({entry.name: entry}, model, current_device(), request)
    backend = onnxruntime_backend.open_backend(model, plan, ModelSource(model.sha256))
    return Session(model, plan, backend, capabilities=entry.capabilities)
