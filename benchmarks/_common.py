"""Helpers shared by the benchmark scripts: the compared cases, raw ORT sessions, machine facts, timing blocks."""

from __future__ import annotations

import gc
import itertools
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Case:
    """One model at one batch size, with the single input it is fed."""

    model: str
    input_name: str
    shape: tuple[int, ...]

    @property
    def batch(self) -> int:
        return self.shape[0]

    @property
    def label(self) -> str:
        return f"{self.model} b{self.batch}"

    def feed(self, seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).standard_normal(self.shape).astype(np.float32)


TINY = "digits-student"
DEFAULT = "ppocr-cls"

# The comparisons of benchmarks/overhead.py and benchmarks/test_overhead.py.
OVERHEAD_CASES = (
    Case(TINY, "image", (1, 1, 8, 8)),
    Case(DEFAULT, "x", (1, 3, 48, 192)),
    Case(DEFAULT, "x", (8, 3, 48, 192)),
)

# Ratio targets edgerun/raw from the issue, per model.
RATIO_TARGETS = {TINY: 1.00, DEFAULT: 1.02}
IMPORT_TARGET_S = 0.3


def raw_session(model: str, threads: int = 1) -> Any:
    """A plain ``onnxruntime.InferenceSession`` with the thread settings edgerun uses."""
    import onnxruntime as ort

    import edgerun

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(edgerun.models.path(model)), options, providers=["CPUExecutionProvider"])


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "cpu": cpu,
        "cores": usable_cores(),
        "python": platform.python_version(),
        "onnxruntime": version("onnxruntime"),
        "numpy": version("numpy"),
        "edgerun": version("edgerun"),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def python_seconds(code: str) -> float:
    """Wall time of a fresh ``python -c code`` (interpreter start included), in seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def block_seconds(fn: Callable[[], object], calls: int) -> float:
    """Per-call seconds of ``calls`` back-to-back calls, with the garbage collector paused."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls
    finally:
        if gc_was_enabled:
            gc.enable()


def interleaved_blocks(
    sides: dict[str, Callable[[], object]], rounds: int, block_s: float
) -> tuple[dict[str, list[float]], int]:
    """Per-call seconds of each side, one block per side per round, and the calls per block.

    Warm-up first; blocks are sized from the slower side to last about ``block_s``; the rounds
    rotate through every order of the sides, so each side runs in each position equally often
    (drift and cache effects fall on all sides alike).
    """
    for fn in sides.values():
        block_seconds(fn, 5)
    calls = max(3, round(block_s / max(block_seconds(fn, 5) for fn in sides.values())))
    orders = list(itertools.permutations(sides))
    per_call: dict[str, list[float]] = {side: [] for side in sides}
    for i in range(rounds):
        for side in orders[i % len(orders)]:
            per_call[side].append(block_seconds(sides[side], calls))
    return per_call, calls


def bootstrap_median(values: np.ndarray, samples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the median of ``values``."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(values, size=(samples, values.size), replace=True)
    medians = np.median(picks, axis=1)
    return float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))


VECTOR_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
"""The lscpu flags that change ONNX Runtime's kernels, and so every figure: recorded with each run."""


def lscpu_facts() -> dict[str, Any]:
    """lscpu's model name and flags (empty where lscpu is missing)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {
        "lscpu_model": fields.get("Model name", "").strip() or None,
        "lscpu_flags": fields.get("Flags", "").split(),
    }


def vector_flags(facts: dict[str, Any]) -> list[str]:
    """Which of `VECTOR_FLAGS` lscpu reported (from `lscpu_facts`)."""
    flags = set(facts.get("lscpu_flags") or ())
    return [flag for flag in VECTOR_FLAGS if flag in flags]


def machine_line() -> str:
    """One line naming the CPU, its vector flags, cores, ONNX Runtime and Python: printed with every figure."""
    info = {**machine(), **lscpu_facts()}
    return (
        f"{info['cpu']} ({' '.join(vector_flags(info))}), {info['cores']} cores, onnxruntime {info['onnxruntime']}, "
        f"Python {info['python']}"
    )


def row_shape(session: Any) -> tuple[int, ...]:
    """A one-row request's shape for the session's first input, symbolic dims taken as 1 (batch axis first)."""
    return (1, *(d if isinstance(d, int) else 1 for d in session.inputs[0].shape[1:]))
