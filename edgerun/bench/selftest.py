"""``edgerun selftest``: what this device can run, checked end to end on the bundled models.

Every device gets the ONNX Runtime CPU reference; devices with CUDA get the CUDA layer checked;
devices with TensorRT get FP32/FP16/INT8 engines built, their outputs compared with the CPU
reference within stated tolerances, the engine cache hit on a second load, and CUDA graphs on
versus off timed at batch 1. Checks that cannot run here are reported as skipped, with why.
This is how a new Jetson is verified, and how edgerun's GPU code is exercised wherever a GPU is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgerun import models
from edgerun.bench.runner import time_calls
from edgerun.bench.scenarios import batched_shapes
from edgerun.data.synthetic import random_feeds
from edgerun.errors import EdgerunError
from edgerun.loading import load
from edgerun.runtime.backends.base import CachedEngineBackend
from edgerun.runtime.plan import Precision
from edgerun.trt import cuda

TOLERANCES = {"fp32": 1e-3, "fp16": 2e-2}
"""Max abs output error vs the ONNX Runtime CPU reference, relative to the reference's range."""
INT8_MIN_AGREEMENT = 0.95
"""INT8 is judged by top-1 agreement with the reference (its errors are larger by design)."""
SELFTEST_MODELS = ("digits-student", "ppocr-cls")


@dataclass
class Check:
    name: str
    status: str = "pass"
    """pass, fail or skip."""
    detail: str = ""
    figures: dict[str, float] = field(default_factory=dict)


@dataclass
class SelftestReport:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}


def run_selftest(progress: Callable[[str], None] | None = None) -> SelftestReport:
    checks: list[Check] = []

    def step(name: str, body: Callable[[Check], None]) -> Check:
        if progress:
            progress(name)
        check = Check(name)
        try:
            body(check)
        except EdgerunError as exc:
            check.status, check.detail = "fail", str(exc)
        checks.append(check)
        return check

    references = {}
    for name in SELFTEST_MODELS:
        feeds = _feeds(name)

        def reference(check: Check, name: str = name, feeds: dict[str, np.ndarray] = feeds) -> None:
            with load(name, device="cpu") as session:
                references[name] = session.run(feeds)
                timing = time_calls(session, {k: v[:1] for k, v in feeds.items()}, warmup=5, iterations=50)
            check.detail = f"onnxruntime CPU, {session.plan.threads} thread(s)"
            check.figures["p50_ms"] = float(np.median(timing.latencies_s) * 1e3)

        step(f"onnxruntime cpu: {name}", reference)

    reason = cuda.unavailable_reason()
    if reason is not None:
        checks.append(Check("cuda", "skip", reason))
    else:
        step("cuda: copy round trip", _cuda_round_trip)

    from edgerun.runtime.device import current_device
    from edgerun.trt import entry as trt_entry

    availability = trt_entry.probe(current_device(), "auto")
    if not availability.available:
        checks.append(Check("tensorrt", "skip", availability.reason))
        return SelftestReport(checks)
    for name in SELFTEST_MODELS:
        engine_precisions: tuple[Precision, ...] = ("fp32", "fp16", "int8")
        for precision in engine_precisions:

            def engine(check: Check, name: str = name, precision: Precision = precision) -> None:
                _tensorrt_check(check, name, precision, _feeds(name), references.get(name))

            step(f"tensorrt {precision}: {name}", engine)
    step("tensorrt cuda graphs: ppocr-cls b1", _graph_check)
    return SelftestReport(checks)


def _feeds(name: str) -> dict[str, np.ndarray]:
    card = models.card(name)
    from edgerun.runtime.modelfile import ModelFile

    inputs = ModelFile.open(card.path).inputs
    return random_feeds(inputs, 8, batched_shapes(card.input_shapes, 8), seed=0)


def _cuda_round_trip(check: Check) -> None:
    info = cuda.device_info(0)
    data = np.arange(1 << 16, dtype=np.float32)
    with cuda.Stream() as stream:
        device = cuda.DeviceBuffer(data.nbytes)
        host_in = cuda.PinnedArray(data.shape, data.dtype)
        host_out = cuda.PinnedArray(data.shape, data.dtype)
        try:
            host_in.array[:] = data
            cuda.copy_to_device(device.ptr, host_in.array, stream)
            cuda.copy_to_host(host_out.array, device.ptr, stream)
            stream.synchronize()
            same = bool(np.array_equal(host_out.array, data))
        finally:
            device.close()
            host_in.close()
            host_out.close()
    check.status = "pass" if same else "fail"
    check.detail = f"{info.name}, compute capability {info.compute_capability}"


def _tensorrt_check(
    check: Check, name: str, precision: Precision, feeds: dict[str, np.ndarray], reference: dict[str, np.ndarray] | None
) -> None:
    started = time.perf_counter()
    with load(name, backend="tensorrt", precision=precision) as session:
        built = time.perf_counter() - started
        got = session.run(feeds)
    started = time.perf_counter()
    with load(name, backend="tensorrt", precision=precision) as again:
        cached_load = time.perf_counter() - started
        hit = isinstance(again.opened_backend, CachedEngineBackend) and again.opened_backend.cache_hit
    check.figures.update(first_load_s=built, second_load_s=cached_load)
    if not hit:
        check.status, check.detail = "fail", "the second load rebuilt the engine instead of using the cache"
        return
    if reference is None:
        check.status, check.detail = "skip", "no CPU reference to compare with"
        return
    ref = next(iter(reference.values()))
    out = next(iter(got.values()))
    if precision == "int8":
        agreement = float((ref.reshape(len(ref), -1).argmax(1) == out.reshape(len(out), -1).argmax(1)).mean())
        check.figures["top1_agreement"] = agreement
        ok = agreement >= INT8_MIN_AGREEMENT
        check.detail = f"top-1 agreement {agreement:.1%} (>= {INT8_MIN_AGREEMENT:.0%})"
    else:
        error = float(np.abs(out.astype(np.float64) - ref).max() / (np.abs(ref).max() or 1.0))
        check.figures["max_rel_error"] = error
        ok = error <= TOLERANCES[precision]
        check.detail = f"max error {error:.2e} of the output range (<= {TOLERANCES[precision]:g})"
    check.status = "pass" if ok else "fail"


def _graph_check(check: Check) -> None:
    feeds = {k: v[:1] for k, v in _feeds("ppocr-cls").items()}
    figures = {}
    for graphs in (False, True):
        with load("ppocr-cls", backend="tensorrt", cuda_graphs=graphs) as session:
            timing = time_calls(session, feeds, warmup=10, iterations=200)
        figures[f"p50_ms_graphs_{'on' if graphs else 'off'}"] = float(np.median(timing.latencies_s) * 1e3)
    check.figures.update(figures)
    check.detail = f"graphs on/off p50 ratio {figures['p50_ms_graphs_on'] / figures['p50_ms_graphs_off']:.2f}"
