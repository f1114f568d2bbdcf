"""Per-device defaults: which backends to try, in what order, with how many CPU threads.

Thread counts are measured, not assumed (``python benchmarks/threads.py``). On this project's
2-vCPU x86 VMs the bundled PP-OCR classifier ran a single image in 0.97 ms on 1 intra-op
thread and 1.34 ms on 2, while a batch of 8 ran 1.76x faster on 2: small per-call work loses
more to thread hand-off than it gains. Single-image latency is what real-time edge apps need,
and with two cores one is left for capture and preprocessing, so devices with at most two
cores default to one thread; larger boards (a Pi 4B's four Cortex-A72s, Jetson's 6-12 Arm
cores) use every core. ``threads=`` / ``--threads`` overrides either way.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgerun.runtime.device import DeviceProfile

BACKEND_ORDER = ("tensorrt", "onnxruntime")
"""Every device tries TensorRT first so that the plan says why it was not used."""

# Real-time budgets: a Pi 4B frame in under 100 ms (MobileNet-class students), 30 FPS on a Jetson.
_DEADLINE_MS = {"raspberry-pi": 100.0, "cpu": 100.0, "jetson": 1000.0 / 30, "cuda-gpu": 1000.0 / 30}


@dataclass(frozen=True)
class DeviceDefaults:
    """What ``load(..., backend="auto")`` and ``edgerun bench`` use on a device unless told."""

    backend_order: tuple[str, ...]
    gpu_precision: str
    """Precision asked of GPU backends that can choose (TensorRT builds FP16 engines)."""
    threads: int
    deadline_ms: float
    threads_reason: str

    @classmethod
    def for_profile(cls, profile: DeviceProfile) -> DeviceDefaults:
        if profile.cores <= 2:
            threads = 1
            reason = f"{profile.cores} cores: 1 thread gives the lowest single-image latency (measured)"
        else:
            threads = profile.cores
            reason = f"{profile.cores} cores: one intra-op thread per core"
        return cls(
            backend_order=BACKEND_ORDER,
            gpu_precision="fp16",
            threads=threads,
            deadline_ms=_DEADLINE_MS[profile.kind],
            threads_reason=reason,
        )
