"""GPU path checks: run only where an NVIDIA GPU, its driver and onnxruntime-gpu are present.

Elsewhere each test is skipped with the concrete reason, so a CPU-only run says what it did not check.
"""

from __future__ import annotations

import pytest

import edgerun
from edgerun.bench.scenarios import batched_shapes
from edgerun.bench.selftest import judge
from edgerun.runtime.synthetic import random_feeds


def _gpu_skip_reason() -> str | None:
    profile = edgerun.current_device()
    if not profile.has_nvidia_gpu:
        return f"no NVIDIA GPU on this {profile.kind} device"
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime has no CUDA execution provider here (install onnxruntime-gpu)"
    return None


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_gpu_skip_reason() is not None, reason=str(_gpu_skip_reason()))]


@pytest.mark.parametrize("name", edgerun.models.names())
def test_cuda_execution_provider_matches_cpu_within_tolerance(name: str) -> None:
    """ONNX Runtime's CUDA provider (asked for by name: with TensorRT installed, ``device="cuda"`` alone
    plans TensorRT) on every output, within the TF32-aware FP32 limit (TF32 is on by default)."""
    card = edgerun.models.card(name)
    with edgerun.load(name, device="cpu") as cpu, edgerun.load(name, device="cuda", backend="onnxruntime") as gpu:
        assert gpu.plan.backend == "onnxruntime"
        assert gpu.plan.device == "cuda:0"
        assert "CUDAExecutionProvider" in gpu.plan.targets
        feeds = random_feeds(cpu.inputs, 8, batched_shapes(card.input_shapes, 8), seed=0)
        expected, got = cpu.run(feeds), gpu.run(feeds)
    verdict = judge("fp32", expected, got, card.outputs or None)
    assert verdict.ok, verdict.detail
