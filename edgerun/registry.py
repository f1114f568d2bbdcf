"""The backends `load()` chooses from: the built-in entries, and `register` for more.

It sits above the runtime and TensorRT's entry module so that neither imports the other:
the runtime plans from whatever entries it is given, and this module gives it these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgerun.runtime.backends import onnxruntime_backend
from edgerun.runtime.backends.base import BackendEntry, QdqLayout
from edgerun.runtime.device import DeviceProfile
from edgerun.runtime.modelfile import ModelFile
from edgerun.runtime.plan import Plan, PlanRequest, Precision, choose_plan
from edgerun.trt import entry as tensorrt_entry

_REGISTRY: dict[str, BackendEntry] = {entry.name: entry for entry in (onnxruntime_backend.ENTRY, tensorrt_entry.ENTRY)}


def register(entry: BackendEntry) -> BackendEntry:
    """Add a backend to the registry (a later entry of the same name replaces the earlier)."""
    _REGISTRY[entry.name] = entry
    return entry


def registered() -> dict[str, BackendEntry]:
    """All registered backends by name, built-in ones included."""
    return dict(_REGISTRY)


def make_plan(
    model: ModelFile,
    profile: DeviceProfile,
    *,
    device: str = "auto",
    backend: str = "auto",
    precision: Precision = "auto",
    options: Mapping[str, Any] | None = None,
) -> Plan:
    """Choose backend, targets, precision and threads for ``model`` on ``profile`` among the registered backends."""
    request = PlanRequest(device, backend, precision, dict(options or {}))
    return choose_plan(registered(), model, profile, request)


def int8_layout(
    model: ModelFile, profile: DeviceProfile, *, device: str = "auto", backend: str = "auto"
) -> tuple[QdqLayout, Plan]:
    """The Q/DQ layout the backend planned for ``model``'s INT8 version here consumes, and that plan.

    What ``edgerun quantize --target auto``, ``tune`` and ``load(..., precision="int8")`` shape INT8
    models for; with no INT8-capable backend, the layout of whatever backend runs the model at all.
    """
    from edgerun.errors import UnsupportedPrecisionError

    try:
        plan = make_plan(model, profile, device=device, backend=backend, precision="int8")
    except UnsupportedPrecisionError:
        plan = make_plan(model, profile, device=device, backend=backend)
    return registered()[plan.backend].capabilities.qdq_layout(plan.device), plan
