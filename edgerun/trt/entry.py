"""TensorRT's entry in the backend registry: probe, options, precisions and a lazy opener.

This is the only module of `edgerun.trt` that the CPU path imports. The probe answers from the
device profile and the installed packages without importing TensorRT or cuda-python unless a
GPU and the tensorrt package are both there; the heavy modules (`backend`, `build`, `cuda`)
are imported by the opener, when an engine is really opened.
"""

from __future__ import annotations

import re
from importlib import util
from typing import TYPE_CHECKING

from edgerun.errors import BackendUnavailableError
from edgerun.runtime.backends.base import Availability, BackendEntry, Capabilities, ModelSource, QdqLayout
from edgerun.trt import NOT_INSTALLED

if TYPE_CHECKING:
    from edgerun.runtime.backends.base import Backend
    from edgerun.runtime.device import DeviceProfile
    from edgerun.runtime.modelfile import ModelFile
    from edgerun.runtime.plan import Plan

OPTIONS = {
    "cuda_graphs": "replay a CUDA graph per input-shape bucket (default: on for Jetson, off elsewhere)",
    "batch": "optimization profile batch range, 'MIN:OPT:MAX' (default 1:1:8 for dynamic batch)",
    "shapes": "per-input shape ranges, {'x': 'MIN:OPT:MAX'} with shapes like 1x3x224x224",
    "workspace_mb": "builder workspace limit in MiB",
    "opt_level": "builder optimisation level 0-5",
    "dla_core": "build for this DLA core (Jetson Xavier, Orin NX / AGX Orin), with GPU fallback; needs static shapes",
    "low_memory": "cap builder memory for 4-8 GB Jetsons",
    "version_compatible": "embed a lean runtime so later TensorRT of the same major can load the engine file (slower)",
    "sparse_weights": "let TensorRT use 2:4 sparse tactics (Ampere+; weights pruned by semi_structured_prune)",
    "timing_cache": "persistent timing cache: a file or folder (str or Path), one file per TensorRT version and GPU",
    "engine_cache": "engine cache folder, str or Path (default: the user cache)",
}


def probe(profile: DeviceProfile, device: str) -> Availability:
    """TensorRT needs an NVIDIA GPU, the tensorrt package and a working CUDA driver; says all that is missing."""
    reasons = []
    if device == "cpu":
        reasons.append("device cpu requested")
    if not profile.has_nvidia_gpu:
        reasons.append(f"no NVIDIA GPU on this {profile.kind} device")
    version = profile.versions.get("tensorrt")
    if util.find_spec("tensorrt") is None:
        reasons.append(NOT_INSTALLED)
    elif not reasons:  # a GPU and the package: only now is importing TensorRT worth its cost
        from edgerun.trt import api

        try:
            version = api.tensorrt().__version__
        except BackendUnavailableError as exc:
            reasons.append(str(exc))
    if reasons:
        return Availability(False, "; ".join(reasons), version)
    from edgerun.trt import cuda

    reason = cuda.unavailable_reason()
    if reason is not None:
        return Availability(False, f"CUDA is not usable: {reason}", version)
    return Availability(True, f"TensorRT {version} engine", version, ("cuda:0",), "cuda:0")


def precisions(model: ModelFile) -> tuple[str, ...]:
    """GPUs default to FP16 (built from an FP16 ONNX); Q/DQ and FP16 models run as they are."""
    return ("fp16", "fp32", "int8") if model.precision == "fp32" else (model.precision,)


def open_backend(model: ModelFile, plan: Plan, source: ModelSource) -> Backend:
    """Build or load the engine: the first import of TensorRT, CUDA and the engine cache."""
    from edgerun.trt.backend import TensorRTBackend

    return TensorRTBackend(model, plan, source)


def _qdq_layout(device: str) -> QdqLayout:
    return "tensorrt"


def _precision_from_fp32(plan: Plan) -> str | None:
    """FP16 on a DLA core with TensorRT 10.x: a weakly typed build from the FP32 ONNX with the FP16 flag.

    The FP16-converted ONNX would put its Cast layers on the GPU, splitting the DLA graph (TensorRT 11
    builds are strongly typed and take the FP16 ONNX, DLA or not).
    """
    version = re.match(r"(\d+)\.", plan.backend_version or "")
    if plan.precision == "fp16" and plan.options.get("dla_core") is not None and version and int(version[1]) < 11:
        return f"fp16 by TensorRT {plan.backend_version}'s FP16 builder flag from the fp32 model (a DLA build)"
    return None


ENTRY = BackendEntry(
    name="tensorrt",
    title="TensorRT",
    probe=probe,
    opener=open_backend,
    options=OPTIONS,
    precisions=precisions,
    capabilities=Capabilities(
        concurrent_runs=False, qdq_layout=_qdq_layout, phase_timing=True, precision_from_fp32=_precision_from_fp32
    ),
)
