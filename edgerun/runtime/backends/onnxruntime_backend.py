"""ONNX Runtime backend: CPU execution provider everywhere, CUDA / TensorRT EPs with onnxruntime-gpu.

The per-call path is kept lean because small students run in microseconds: feeds arrive
validated and go straight to ORT's compiled ``run``. Measured against I/O binding too: on
these models binding each call cost more than it saved (an input bind copies, and outputs
must be re-bound for every new batch size). ORT allocates new output arrays on every call,
so the arrays handed back belong to the caller. See ``benchmarks/overhead.py``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from importlib import util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgerun.errors import BackendError, ConfigError, UnsupportedModelError
from edgerun.runtime.backends.base import Availability, BackendEntry, Capabilities, ModelSource, QdqLayout

if TYPE_CHECKING:
    import numpy as np

    from edgerun.runtime.device import DeviceProfile
    from edgerun.runtime.modelfile import ModelFile
    from edgerun.runtime.plan import Plan

NAME = "onnxruntime"
OPTIONS = {
    "graph_optimization": "ONNX Runtime graph optimisation level: all (default), extended, basic, disabled",
}
_OPT_LEVELS = {
    "all": "ORT_ENABLE_ALL",
    "extended": "ORT_ENABLE_EXTENDED",
    "basic": "ORT_ENABLE_BASIC",
    "disabled": "ORT_DISABLE_ALL",
}
# "[ONNXRuntimeError] : 1 : FAIL : /onnxruntime_src/x.h:46 void f(int) Real message"
_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*")
_ORT_SOURCE = re.compile(r"/onnxruntime_src/\S+:\d+\s+[^()]*\([^()]*\)\s*")


def clean_ort_message(exc: BaseException) -> str:
    """ONNX Runtime's error text without its status prefix and C++ source location."""
    text = _ORT_PREFIX.sub("", str(exc).strip())
    text = _ORT_SOURCE.sub("", text)
    return " ".join(text.split()) or type(exc).__name__


def probe(profile: DeviceProfile, device: str) -> Availability:
    """ONNX Runtime is importable; which execution providers fit this device and request."""
    if util.find_spec("onnxruntime") is None:
        return Availability(False, "onnxruntime is not installed")
    import onnxruntime as ort

    available = ort.get_available_providers()
    targets: list[str] = []
    if device != "cpu" and profile.has_nvidia_gpu:
        if "TensorrtExecutionProvider" in available and profile.versions.get("tensorrt"):
            targets.append("TensorrtExecutionProvider")
        if "CUDAExecutionProvider" in available:
            targets.append("CUDAExecutionProvider")
    if device.startswith("cuda") and not targets:
        return Availability(
            False,
            "this onnxruntime build has no CUDA execution provider (install onnxruntime-gpu)",
            ort.__version__,
        )
    targets.append("CPUExecutionProvider")
    if len(targets) == 1:
        why = "CPU execution provider"
        if profile.has_nvidia_gpu and device != "cpu":
            why += " (this onnxruntime build has no CUDA execution provider)"
    else:
        why = "execution providers " + ", ".join(targets)
    runs_on = "cpu" if len(targets) == 1 else "cuda:0"
    return Availability(True, why, ort.__version__, tuple(targets), runs_on)


def precisions(model: ModelFile) -> tuple[str, ...]:
    """ONNX Runtime runs the precision stored in a model; an fp32 model can be converted first.

    The stored precision comes first (the default); ``int8`` and ``fp16`` are served by
    converted models that `edgerun.precision.artifacts` builds and caches.
    """
    return ("fp32", "int8", "fp16") if model.precision == "fp32" else (model.precision,)


class OnnxRuntimeBackend:
    """One ``onnxruntime.InferenceSession``; ORT sessions are safe to run from several threads."""

    def __init__(self, model: ModelFile, plan: Plan) -> None:
        import onnxruntime as ort

        self.inputs = model.inputs
        self.outputs = model.outputs
        self._model_path = model.path
        options = ort.SessionOptions()
        options.intra_op_num_threads = plan.threads
        options.inter_op_num_threads = 1
        level = plan.options.get("graph_optimization", "all")
        if level not in _OPT_LEVELS:
            raise ConfigError(f"option graph_optimization must be one of {', '.join(_OPT_LEVELS)}, got {level!r}")
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[level])
        # ORT logs its own errors to stderr; edgerun raises them as one clear exception instead.
        options.log_severity_level = 2 if logging.getLogger("edgerun").isEnabledFor(logging.DEBUG) else 4
        try:
            self._session: Any = ort.InferenceSession(str(model.path), options, providers=_providers(plan))
        except Exception as exc:  # ORT raises several unrelated pybind exception types
            raise UnsupportedModelError(model.path, f"onnxruntime cannot load it: {clean_ort_message(exc)}") from exc
        self.providers = tuple(self._session.get_providers())
        self._output_names = [o.name for o in self._session.get_outputs()]
        self._first_input = model.inputs[0].name
        direct = _direct_run(self._session)
        self.uses_direct_run = direct is not None
        """True when calls skip the Python wrapper of ``InferenceSession.run`` (see `_direct_run`)."""
        self._run = direct or self._session.run  # both take (output_names, feeds, run_options)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = self._output_names
        try:
            outputs = self._run(names, feeds, None)
        except Exception as exc:
            raise self._failure(exc) from exc
        if len(names) == 1:
            return {names[0]: outputs[0]}
        return dict(zip(names, outputs, strict=True))

    def run_single(self, array: np.ndarray) -> dict[str, np.ndarray]:
        # `run` inlined rather than called: one Python frame less on the hot path.
        names = self._output_names
        try:
            outputs = self._run(names, {self._first_input: array}, None)
        except Exception as exc:
            raise self._failure(exc) from exc
        if len(names) == 1:
            return {names[0]: outputs[0]}
        return dict(zip(names, outputs, strict=True))

    def _failure(self, exc: Exception) -> BackendError:
        return BackendError(f"onnxruntime failed running {self._model_path.name}: {clean_ort_message(exc)}")

    def close(self) -> None:
        """Drop the ORT session (its memory goes when the last reference does)."""
        self._run = _closed
        self._session = None


def _closed(*args: Any) -> None:
    raise BackendError("the onnxruntime session is closed")


def _providers(plan: Plan) -> list[str | tuple[str, dict[str, Any]]]:
    """The plan's execution providers, with the GPU index of ``cuda:N`` passed to the GPU ones.

    ONNX Runtime's TensorRT provider builds engines too: they and its timing cache go to
    edgerun's cache, in a folder per TensorRT version, ONNX Runtime version and GPU
    (`ort_tensorrt_cache_folder`), so that it neither rebuilds on every start nor, after a
    JetPack / TensorRT / ORT upgrade, fails to deserialize the engines of the old versions.
    """
    if not plan.device.startswith("cuda:"):
        return list(plan.targets)
    from edgerun.runtime.device import current_device
    from edgerun.storage import cache_dir

    device_id = plan.device.split(":", 1)[1]
    providers: list[str | tuple[str, dict[str, Any]]] = []
    for target in plan.targets:
        if target == "CPUExecutionProvider":
            providers.append(target)
        elif target == "TensorrtExecutionProvider":
            device = current_device()
            folder = str(
                ort_tensorrt_cache_folder(
                    cache_dir() / "ort-tensorrt",
                    tensorrt=device.versions.get("tensorrt"),
                    onnxruntime=plan.backend_version or _ort_version(),
                    gpu=device.gpu_name,
                    compute_capability=device.compute_capability,
                    l4t=device.l4t,
                )
            )
            options = {
                "device_id": device_id,
                "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": folder,
                "trt_timing_cache_enable": "True",
                "trt_timing_cache_path": folder,
            }
            providers.append((target, options))
        else:
            providers.append((target, {"device_id": device_id}))
    return providers


def ort_tensorrt_cache_folder(
    root: Path,
    *,
    tensorrt: str | None,
    onnxruntime: str | None,
    gpu: str | None,
    compute_capability: str | None,
    l4t: str | None = None,
) -> Path:
    """ORT's TensorRT provider cache folder for these versions and this GPU, under ``root``.

    ONNX Runtime's documentation asks to clean the provider's engine and profile caches when the
    model, the ORT version, the TensorRT version or the hardware changes; its engine file names only
    carry the model hash and the compute capability. One folder per combination makes an upgrade a
    fresh build instead of a failed deserialization (folders of old versions are left for
    ``edgerun cache clear`` to remove). On a Jetson the L4T release is added: JetPack's TensorRT may
    be installed without package metadata (version "unknown"), and a JetPack upgrade changes L4T.
    """
    parts = [f"trt{tensorrt or 'unknown'}", f"ort{onnxruntime or 'unknown'}", gpu or "gpu"]
    if compute_capability:
        parts.append(f"sm{compute_capability.replace('.', '')}")
    if l4t:
        parts.append(f"l4t{l4t}")
    name = re.sub(r"[^A-Za-z0-9.+]+", "-", "-".join(parts)).strip("-").lower()
    return root / name


def _ort_version() -> str | None:
    try:
        import onnxruntime

        return str(onnxruntime.__version__)
    except Exception:
        return None


def _direct_run(session: Any) -> Any:
    """ORT's compiled ``run`` behind the Python wrapper, or None if this ORT build lacks it.

    The wrapper re-checks input names and output ownership that edgerun's `FeedValidator`
    already checked; calling the compiled method saves 1-2 us per call, which is 5-10% of a
    small student's whole inference (``benchmarks/overhead.py``). Outputs are new arrays on
    every call either way. A future ORT without ``_sess`` only makes calls slower, not wrong.
    """
    compiled = getattr(session, "_sess", None)
    return getattr(compiled, "run", None)


def open_backend(model: ModelFile, plan: Plan, source: ModelSource) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(model, plan)


def qdq_layout(device: str) -> QdqLayout:
    """ORT's CPU kernels fuse unsigned-activation Q/DQ; its GPU providers take TensorRT's signed layout."""
    return "cpu" if device == "cpu" else "tensorrt"


ENTRY = BackendEntry(
    name=NAME,
    title="ONNX Runtime",
    probe=probe,
    opener=open_backend,
    options=OPTIONS,
    precisions=precisions,
    capabilities=Capabilities(concurrent_runs=True, qdq_layout=qdq_layout),
)
