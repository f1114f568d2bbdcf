"""ONNX Runtime backend: CPU execution provider everywhere, CUDA / TensorRT EPs with onnxruntime-gpu.

The per-call path is kept lean because small students run in microseconds: feeds arrive
validated, each thread reuses its own I/O binding (bindings are not thread-safe, sessions
are), inputs are bound without copies, and outputs are allocated by ONNX Runtime and copied
out once, so the arrays handed back belong to the caller. Measured against a raw
``InferenceSession.run`` in ``benchmarks/overhead.py``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from importlib import util
from typing import TYPE_CHECKING, Any

from ..errors import BackendError, ConfigError, UnsupportedModelError
from .base import Availability, BackendEntry

if TYPE_CHECKING:
    import numpy as np

    from ..device import DeviceProfile
    from ..model import ModelFile
    from ..plan import Plan

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
    return Availability(True, why, ort.__version__, tuple(targets))


def precisions(model: ModelFile) -> tuple[str, ...]:
    """ONNX Runtime runs a model at the precision stored in it."""
    return (model.precision,)


class OnnxRuntimeBackend:
    """One ``onnxruntime.InferenceSession`` with per-thread I/O bindings."""

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
            self._session = ort.InferenceSession(str(model.path), options, providers=_providers(plan))
        except Exception as exc:  # ORT raises several unrelated pybind exception types
            raise UnsupportedModelError(model.path, f"onnxruntime cannot load it: {clean_ort_message(exc)}") from exc
        self.providers = tuple(self._session.get_providers())
        self._output_names = [o.name for o in self._session.get_outputs()]
        self._local = threading.local()
        self._fast = _fast_iobinding_available(self._session)
        self._cpu = ort.OrtDevice.make("cpu", 0)._get_c_device() if self._fast else None

    @property
    def uses_fast_binding(self) -> bool:
        """True when the low-level I/O binding path is in use (see `_fast_iobinding_available`)."""
        return self._fast

    def _binding(self) -> Any:
        binding = getattr(self._local, "binding", None)
        if binding is None:
            if self._fast:
                from onnxruntime.capi import _pybind_state

                binding = _pybind_state.SessionIOBinding(self._session._sess)
            else:
                binding = self._session.io_binding()
            self._local.binding = binding
        return binding

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self._session
        binding = self._binding()
        try:
            # Outputs are re-bound every call: ORT then allocates them for this call's shapes
            # (a binding that kept the last call's buffers would reject a new batch size).
            if self._fast:
                for name, array in feeds.items():
                    binding.bind_input(name, array)
                for name in self._output_names:
                    binding.bind_output(name, self._cpu)
                session._sess.run_with_iobinding(binding, None)
            else:
                for name, array in feeds.items():
                    binding.bind_cpu_input(name, array)
                for name in self._output_names:
                    binding.bind_output(name, "cpu")
                session.run_with_iobinding(binding)
        except Exception as exc:
            raise BackendError(f"onnxruntime failed running {self._model_path.name}: {clean_ort_message(exc)}") from exc
        return dict(zip(self._output_names, binding.copy_outputs_to_cpu(), strict=True))

    def close(self) -> None:
        self._local = threading.local()


def _providers(plan: Plan) -> list[str | tuple[str, dict[str, Any]]]:
    """The plan's execution providers, with the GPU index of ``cuda:N`` passed to the GPU ones."""
    if not plan.device.startswith("cuda:"):
        return list(plan.targets)
    device_id = plan.device.split(":", 1)[1]
    return [(t, {"device_id": device_id}) if t != "CPUExecutionProvider" else t for t in plan.targets]


def _fast_iobinding_available(session: Any) -> bool:
    """Whether ORT's low-level binding (about 2 us/call cheaper than the wrapper) is present.

    It is ORT's private pybind layer, present since ORT 1.x; edgerun checks for it once and
    uses the public ``IOBinding`` wrapper otherwise, so a future ORT release only gets slower.
    """
    import onnxruntime as ort

    try:
        from onnxruntime.capi import _pybind_state
    except ImportError:
        return False
    return (
        hasattr(_pybind_state, "SessionIOBinding")
        and hasattr(getattr(session, "_sess", None), "run_with_iobinding")
        and hasattr(getattr(ort, "OrtDevice", None), "make")
        and hasattr(ort.OrtDevice, "_get_c_device")
    )


def open_backend(model: ModelFile, plan: Plan) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(model, plan)


ENTRY = BackendEntry(
    name=NAME,
    title="ONNX Runtime",
    probe=probe,
    opener=open_backend,
    options=OPTIONS,
    precisions=precisions,
)
