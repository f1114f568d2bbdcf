"""TensorRT as the planner sees it today: detected and explained, not yet run.

The TensorRT engine backend (engine build and cache, CUDA graphs) is a later piece of work;
until it lands this entry makes every plan say why TensorRT was not used on this device,
in the order a user would fix it: no NVIDIA GPU, no TensorRT, no edgerun backend for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Availability, BackendEntry

if TYPE_CHECKING:
    from ..device import DeviceProfile
    from ..model import ModelFile


def probe(profile: DeviceProfile, device: str) -> Availability:
    version = profile.versions.get("tensorrt")
    reasons = []
    if device == "cpu":
        reasons.append("device cpu requested")
    if not profile.has_nvidia_gpu:
        reasons.append(f"no NVIDIA GPU on this {profile.kind} device")
    if version is None:
        reasons.append("the tensorrt Python package is not importable")
    if not reasons:
        reasons.append(f"TensorRT {version} is installed, but this edgerun release has no TensorRT engine backend yet")
    return Availability(False, "; ".join(reasons), version)


def precisions(model: ModelFile) -> tuple[str, ...]:
    return ("fp16", "fp32", "int8") if model.precision != "int8" else ("int8",)


ENTRY = BackendEntry(
    name="tensorrt",
    title="TensorRT",
    probe=probe,
    opener=None,
    options={},
    precisions=precisions,
)
