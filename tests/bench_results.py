"""Synthetic but complete ``edgerun.bench/2`` result files: a Pi 4B at FP32, a Jetson at INT8, a desktop GPU.

`make_run` fills every key `BenchResult.to_dict` writes, with the figures a test states
(latency percentiles, throughput, deadline) and per-query samples drawn around them, so
readers are tested on what a real file holds rather than on the few keys they use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgerun.bench.schema import SCHEMA

DEVICES: dict[str, dict[str, Any]] = {
    "pi4b": {
        "kind": "raspberry-pi",
        "model": "Raspberry Pi 4 Model B Rev 1.5",
        "arch": "aarch64",
        "cpu": "Cortex-A72",
        "cores": 4,
        "memory_bytes": 4 * 2**30,
        "cpu_features": [],
        "gpu_name": None,
        "compute_capability": None,
        "nvidia_driver": None,
        "l4t": None,
        "jetpack": None,
        "versions": {"onnxruntime": "1.32.0", "tensorrt": None},
    },
    "orin": {
        "kind": "jetson",
        "model": "NVIDIA Jetson Orin Nano Developer Kit",
        "arch": "aarch64",
        "cpu": "Cortex-A78AE",
        "cores": 6,
        "memory_bytes": 8 * 2**30,
        "cpu_features": ["asimddp"],
        "gpu_name": "Orin (nvgpu)",
        "compute_capability": "8.7",
        "nvidia_driver": "540.4.0",
        "l4t": "36.4.3",
        "jetpack": "6.1/6.2",
        "versions": {"onnxruntime": "1.32.0", "tensorrt": "10.3.0"},
    },
    "desktop": {
        "kind": "cuda-gpu",
        "model": "NVIDIA GeForce RTX 4090",
        "arch": "x86_64",
        "cpu": "AMD Ryzen 9 7950X 16-Core Processor",
        "cores": 16,
        "memory_bytes": 64 * 2**30,
        "cpu_features": ["avx2", "avx512_vnni"],
        "gpu_name": "NVIDIA GeForce RTX 4090",
        "compute_capability": "8.9",
        "nvidia_driver": "570.86.10",
        "l4t": None,
        "jetpack": None,
        "versions": {"onnxruntime": "1.32.0", "tensorrt": "10.16.0"},
    },
}


def make_run(
    device: str = "pi4b",
    *,
    model: str = "ppocr-cls",
    backend: str = "onnxruntime",
    precision: str = "fp32",
    threads: int = 4,
    scenario: str = "single-stream",
    batch: int = 1,
    p50: float = 40.0,
    p90: float = 44.0,
    p99: float = 52.0,
    throughput: float = 24.0,
    deadline_ms: float = 100.0,
    warnings: list[str] | None = None,
    samples: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """One run dict with every key of the format; ``meets_deadline`` follows p99 against ``deadline_ms``."""
    rng = np.random.default_rng(seed)
    drawn = np.sort(p50 * rng.lognormal(0.0, 0.08, samples))
    drawn[-max(1, samples // 100) :] = np.linspace(p90, p99, max(1, samples // 100))
    rng.shuffle(drawn)
    values = [round(float(v), 4) for v in drawn]
    qps = throughput / batch
    gpu = backend == "tensorrt"
    return {
        "schema": SCHEMA,
        "kind": "run",
        "model": model,
        "model_sha256": "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
        "backend": backend,
        "precision": precision,
        "threads": threads,
        "device": DEVICES[device],
        "system": {"governor": "ondemand" if device == "pi4b" else "performance", "nvpmodel": None},
        "plan": {
            "backend": backend,
            "backend_version": "10.3.0" if gpu else "1.32.0",
            "device": "cuda:0" if gpu else "cpu",
            "device_kind": DEVICES[device]["kind"],
            "targets": ["TensorRT"] if gpu else ["CPUExecutionProvider"],
            "precision": precision,
            "threads": threads,
            "options": {},
            "reasons": ["the device's default"],
            "fallbacks": [],
            "artifact": None,
        },
        "fallbacks": [],
        "scenario": scenario,
        "settings": {
            "samples_per_query": 1,
            "target_qps": None,
            "latency_bound_ms": None,
            "min_duration_s": 1.0,
            "min_queries": 200,
            "warmup": 10,
            "seed": 0,
            "max_batch_size": None,
        },
        "batch": batch,
        "inputs": {"source": "random (seed 0)", "include_preprocess": False, "shapes": {"x": [batch, 3, 48, 192]}},
        "queries": samples,
        "samples": samples * batch,
        "wall_s": samples / qps if qps else 1.0,
        "interrupted": False,
        "latency_ms": {
            "min": min(values),
            "mean": float(np.mean(values)),
            "median": p50,
            "p50": p50,
            "p90": p90,
            "p95": (p90 + p99) / 2,
            "p99": p99,
            "max": max(values),
            "stdev": float(np.std(values)),
            "cv": float(np.std(values) / np.mean(values)),
        },
        "latency_samples_ms": values,
        "throughput_per_s": throughput,
        "qps": qps,
        "score": {"metric": "p90 latency ms", "value": p90, "higher_is_better": False},
        "deadline_ms": deadline_ms,
        "meets_deadline": p99 <= deadline_ms,
        "deadline_rule": f"p99 <= {deadline_ms:.1f} ms",
        "server": None,
        "gpu_phases_ms": {"enqueue": 0.05, "compute": p50 * 0.8, "h2d": 0.02, "d2h": 0.01} if gpu else None,
        "warnings": list(warnings or []),
        "notes": ["run shorter than LoadGen's 600 s minimum"],
        "versions": {"edgerun": "0.1.0", **DEVICES[device]["versions"]},
        "timestamp": "2026-11-28T15:00:00+00:00",
    }


def three_runs() -> list[dict[str, Any]]:
    """Pi 4B FP32 (p99 120 ms: misses 100 ms), Jetson Orin INT8 TensorRT, desktop RTX 4090 FP16."""
    return [
        make_run("pi4b", p50=40.0, p90=80.0, p99=120.0, throughput=24.0, warnings=["unstable: cv 0.31 > 0.1"]),
        make_run(
            "orin",
            backend="tensorrt",
            precision="int8",
            threads=1,
            p50=2.5,
            p90=2.8,
            p99=3.2,
            throughput=360.0,
            deadline_ms=33.3,
            warnings=["enqueue-bound", "thermal throttling seen"],
        ),
        make_run(
            "desktop", backend="tensorrt", precision="fp16", threads=1, p50=0.5, p90=0.6, p99=0.9, throughput=1200.0
        ),
    ]


def write(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document, indent=2))
    return path


def sweep_document(runs: list[dict[str, Any]], best: int | None = 0) -> dict[str, Any]:
    return {"schema": SCHEMA, "kind": "sweep", "runs": runs, "best": best, "best_reason": "highest samples/s"}
