"""``edgerun selftest``: what this device can run, checked end to end on the bundled models.

Every device gets the ONNX Runtime CPU reference, run on each model card's held-out check samples;
devices with CUDA get the CUDA layer checked; devices with TensorRT get FP32/FP16/INT8 engines built
and run over the check samples in several calls, and **every** output compared with the CPU reference:

* FP32: max error at most `FP32_MAX_REL` of each output's range. TensorRT and ONNX Runtime's CUDA
  provider use TF32 for FP32 convolutions and matrix products by default on Ampere and newer
  (10 mantissa bits, about 1e-3 relative), so FP32 on a GPU is not bit-close to the CPU.
* FP16 and INT8: the precision guard's own judgement, `edgerun.quality.quality_of` within
  `QualityBudget.for_precision` (cosine, top-1, mask IoU...), on the card's real check samples.

The engine cache must hit on a second load, and CUDA graph replay must give the same outputs as plain
execution over a changing batch sequence (`GRAPH_SEQUENCE`, fresh inputs each call), with at least one
graph captured and none disabled; graphs on versus off are also timed at batch 1. Checks that cannot
run here are reported as skipped, with why. This is how a new Jetson is verified, and how edgerun's
GPU code is exercised wherever a GPU is. The helpers (`check_case`, `judge`, `graph_stats`...) are
what the ``gpu`` tests in ``tests/trt`` and ``scripts/gpu_check.py`` judge with too.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edgerun import models
from edgerun.bench.runner import time_calls
from edgerun.errors import EdgerunError
from edgerun.loading import load
from edgerun.runtime.backends.base import CachedEngineBackend
from edgerun.runtime.plan import Precision
from edgerun.trt import cuda

if TYPE_CHECKING:
    from edgerun.models import ModelCard
    from edgerun.quality.metrics import OutputQuality
    from edgerun.runtime.session import Session

FP32_MAX_REL = 2e-3
"""FP32 on a GPU: max abs error vs the ONNX Runtime CPU reference, relative to each output's range.
TF32 (on by default on Ampere+ in TensorRT and ONNX Runtime CUDA) rounds to 10 mantissa bits,
about 1e-3 relative per product; 2e-3 leaves room for accumulation while a wrong answer (a stale
buffer, a wrong batch slice, a swapped output) is off by far more."""
CALL_BATCH = 4
"""The check samples are run in calls of at most this batch (several calls per load, and inside
every profile used here)."""
GRAPH_SEQUENCE = (1, 1, 1, 4, 4, 1, 4, 1)
"""Batch sizes of the graphs-on versus graphs-off comparison: repeats capture, changes re-key."""
SELFTEST_MODELS = ("digits-student", "ppocr-cls")
GRAPH_MODEL = "ppocr-cls"


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


# --- what the checks run on and how they judge ------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A bundled model at one input size: its card (resized), TensorRT options covering the size."""

    name: str
    card: ModelCard
    options: dict[str, Any]

    @property
    def label(self) -> str:
        size = self.card.preprocessing.get("height")
        original = models.card(self.name).preprocessing.get("height")
        return self.name if size == original else f"{self.name} {size}x{size}"


def case(name: str, size: int | None = None) -> Case:
    """``name`` as its card says, or resized to ``size`` x ``size`` (ppocr-det at 224 runs in seconds).

    A resized case gets a TensorRT profile of batch 1..`CALL_BATCH` at that size; the card's check
    images are preprocessed to the size, so they are still the card's real samples.
    """
    card = models.card(name)
    if size is None:
        return Case(name, card, {})
    shapes = {key: [1, *dims[1:-2], size, size] for key, dims in card.input_shapes.items()}
    resized = dataclasses.replace(
        card, input_shapes=shapes, preprocessing={**card.preprocessing, "height": size, "width": size}
    )
    ranges = {
        key: ":".join("x".join(map(str, [b, *dims[1:]])) for b in (1, 1, CALL_BATCH)) for key, dims in shapes.items()
    }
    return Case(name, resized, {"shapes": ranges})


def check_inputs(c: Case) -> dict[str, np.ndarray]:
    """The card's check samples (real, held-out data) at the case's size."""
    from edgerun.precision.checks import check_samples
    from edgerun.runtime.modelfile import ModelFile

    return check_samples(ModelFile.open(c.card.path), c.card).inputs


def run_in_calls(session: Session, inputs: Mapping[str, np.ndarray], batch: int = CALL_BATCH) -> dict[str, np.ndarray]:
    """Every output of ``session`` over ``inputs``, run in calls of at most ``batch``, concatenated."""
    count = len(next(iter(inputs.values())))
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, count, batch):
        parts.append(session.run({k: np.ascontiguousarray(v[start : start + batch]) for k, v in inputs.items()}))
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def calls_for(inputs: Mapping[str, np.ndarray], batch: int = CALL_BATCH) -> int:
    return -(-len(next(iter(inputs.values()))) // batch)


def reference_outputs(c: Case, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """ONNX Runtime CPU on the model's FP32 file: what every GPU output is compared with."""
    from edgerun.runtime.reference import open_on_cpu

    with open_on_cpu(c.card.path) as session:
        return run_in_calls(session, inputs)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detail: str
    figures: dict[str, float]


def judge(
    precision: str,
    reference: Mapping[str, np.ndarray],
    got: Mapping[str, np.ndarray],
    declared: Mapping[str, Any] | None = None,
) -> Verdict:
    """Every output of ``got`` against ``reference``: FP32 (TF32-aware) by max error of the range,
    FP16 and INT8 by the precision guard's budget."""
    from edgerun.quality.budget import QualityBudget
    from edgerun.quality.metrics import quality_of

    problems = [f"output '{n}' is missing" for n in reference if n not in got]
    problems += [f"output '{n}' is not in the reference" for n in got if n not in reference]
    problems += [
        f"output '{n}' has shape {list(got[n].shape)}, the reference {list(r.shape)}"
        for n, r in reference.items()
        if n in got and got[n].shape != r.shape
    ]
    problems += [f"output '{n}' has non-finite values" for n, a in got.items() if not np.isfinite(a).all()]
    if problems:
        return Verdict(False, "; ".join(problems), {"outputs": float(len(reference))})
    qualities: list[OutputQuality] = quality_of(reference, got, declared=declared)
    figures = {
        "outputs": float(len(qualities)),
        "max_rel_error": max(float(q.max_rel) for q in qualities),
        "min_cosine": min(float(q.cosine_mean) for q in qualities),
    }
    top1 = [q.top1_agreement for q in qualities if q.top1_agreement is not None]
    if top1:
        figures["top1_agreement"] = float(min(top1))
    ious = [q.mask_iou for q in qualities if q.mask_iou is not None]
    if ious:
        figures["mask_iou"] = float(min(ious))
    if precision == "fp32":
        problems = [
            f"output '{q.name}' max error {q.max_rel:.2e} of its range > {FP32_MAX_REL:g} (TF32-aware fp32 limit)"
            for q in qualities
            if not q.max_rel <= FP32_MAX_REL
        ]
        limit = f"<= {FP32_MAX_REL:g} of each output's range"
    else:
        problems = QualityBudget.for_precision(precision).violations(qualities)
        limit = f"within the {precision} quality budget"
    if problems:
        return Verdict(False, "; ".join(problems), figures)
    return Verdict(
        True,
        f"{len(qualities)} output(s): max error {figures['max_rel_error']:.2e} of the range, "
        f"min cosine {figures['min_cosine']:.6f} ({limit})",
        figures,
    )


def graph_stats(backend: Any) -> dict[str, int]:
    """CUDA graph counters of a TensorRT backend: ``captured`` and ``disabled`` (shape buckets whose
    capture failed and that run plainly), and ``replayed`` when the backend counts it.

    Reads the backend's public ``graph_stats`` (a mapping, or a method returning one); a backend
    without it is read from its graph table (graphs alive now, buckets with capture disabled).
    """
    stats = getattr(backend, "graph_stats", None)
    if callable(stats):
        stats = stats()
    if isinstance(stats, Mapping):
        return {str(k): int(v) for k, v in stats.items() if isinstance(v, int | float)}
    if stats is not None and dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        return {k: int(v) for k, v in asdict(stats).items() if isinstance(v, int | float)}
    if hasattr(backend, "_graphs"):
        return {"captured": len(backend._graphs), "disabled": len(getattr(backend, "_no_graph", ()))}
    raise AttributeError(f"{type(backend).__name__} exposes no graph_stats")


def sequence_feeds(
    session: Session, c: Case, sequence: Sequence[int] = GRAPH_SEQUENCE, seed: int = 0
) -> list[dict[str, np.ndarray]]:
    """Fresh random inputs (a new seed per call) at the batch sizes of ``sequence``."""
    from edgerun.bench.scenarios import batched_shapes
    from edgerun.runtime.synthetic import random_feeds

    return [
        random_feeds(
            session.inputs,
            batch,
            batched_shapes(c.card.input_shapes, batch, session.roles),
            seed=seed + i,
            roles=session.roles,
        )
        for i, batch in enumerate(sequence)
    ]


@dataclass(frozen=True)
class GraphComparison:
    ok: bool
    detail: str
    figures: dict[str, float]
    stats: dict[str, int]


def compare_graph_replay(c: Case, sequence: Sequence[int] = GRAPH_SEQUENCE, **options: Any) -> GraphComparison:
    """The same engine with CUDA graphs on and off over ``sequence`` (fresh inputs each call): every
    output of every call identical, at least one graph captured, none disabled."""
    outputs: dict[bool, list[dict[str, np.ndarray]]] = {}
    stats: dict[str, int] = {}
    for graphs in (False, True):
        with load(c.name, backend="tensorrt", cuda_graphs=graphs, **{**c.options, **options}) as session:
            feeds = sequence_feeds(session, c, sequence)
            outputs[graphs] = [session.run(f) for f in feeds]
            if graphs:
                stats = graph_stats(session.opened_backend)
    problems = []
    worst = 0.0
    for i, (plain, replayed) in enumerate(zip(outputs[False], outputs[True], strict=True)):
        for name, want in plain.items():
            have = replayed[name]
            if have.shape != want.shape or not np.array_equal(have, want):
                diff = float(np.abs(have.astype(np.float64) - want).max()) if have.shape == want.shape else np.inf
                worst = max(worst, diff)
                problems.append(f"call {i + 1} (batch {sequence[i]}) output '{name}' differs (max {diff:.3g})")
    if stats.get("captured", 0) < 1:
        problems.append(f"no CUDA graph was captured ({stats})")
    if stats.get("disabled", 0):
        problems.append(f"{stats['disabled']} shape bucket(s) had graphs disabled ({stats})")
    figures = {
        "calls": float(len(sequence)),
        "max_abs_difference": worst,
        **{f"graphs_{k}": float(v) for k, v in stats.items()},
    }
    seq = ",".join(map(str, sequence))
    detail = "; ".join(problems) or f"batches {seq}: every output identical with graphs on and off; graphs {stats}"
    return GraphComparison(not problems, detail, figures, stats)


# --- the selftest ---------------------------------------------------------------------------------


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

    references: dict[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = {}
    for name in SELFTEST_MODELS:

        def reference(check: Check, name: str = name) -> None:
            c = case(name)
            inputs = check_inputs(c)
            with load(name, device="cpu") as session:
                references[name] = inputs, run_in_calls(session, inputs)
                timing = time_calls(session, {k: v[:1] for k, v in inputs.items()}, warmup=5, iterations=50)
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
                _tensorrt_check(check, case(name), precision, references.get(name))

            step(f"tensorrt {precision}: {name}", engine)
    step(f"tensorrt cuda graphs: {GRAPH_MODEL}", _graph_check)
    return SelftestReport(checks)


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
    check: Check,
    c: Case,
    precision: Precision,
    reference: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None,
) -> None:
    if reference is None:
        check.status, check.detail = "skip", "no CPU reference to compare with"
        return
    inputs, expected = reference
    started = time.perf_counter()
    with load(c.name, backend="tensorrt", precision=precision, **c.options) as session:
        built = time.perf_counter() - started
        got = run_in_calls(session, inputs)
    started = time.perf_counter()
    with load(c.name, backend="tensorrt", precision=precision, **c.options) as again:
        cached_load = time.perf_counter() - started
        hit = isinstance(again.opened_backend, CachedEngineBackend) and again.opened_backend.cache_hit
        repeat = run_in_calls(again, inputs)
    check.figures.update(first_load_s=built, second_load_s=cached_load, calls=float(2 * calls_for(inputs)))
    if not hit:
        check.status, check.detail = "fail", "the second load rebuilt the engine instead of using the cache"
        return
    verdict = judge(precision, expected, got, c.card.outputs or None)
    check.figures.update(verdict.figures)
    check.status = "pass" if verdict.ok else "fail"
    check.detail = f"{len(inputs[next(iter(inputs))])} check samples: {verdict.detail}"
    cached = judge(precision, expected, repeat, c.card.outputs or None)
    if not cached.ok:
        check.status = "fail"
        check.detail += f"; the cached engine's outputs: {cached.detail}"


def _graph_check(check: Check) -> None:
    c = case(GRAPH_MODEL)
    comparison = compare_graph_replay(c)
    check.figures.update(comparison.figures)
    if not comparison.ok:
        check.status, check.detail = "fail", comparison.detail
        return
    with load(c.name, backend="tensorrt", cuda_graphs=False) as session:
        feeds = {k: v[:1] for k, v in sequence_feeds(session, c, (1,))[0].items()}
    figures = {}
    for graphs in (False, True):
        with load(c.name, backend="tensorrt", cuda_graphs=graphs) as session:
            timing = time_calls(session, feeds, warmup=10, iterations=200)
        figures[f"p50_ms_graphs_{'on' if graphs else 'off'}"] = float(np.median(timing.latencies_s) * 1e3)
    check.figures.update(figures)
    ratio = figures["p50_ms_graphs_on"] / figures["p50_ms_graphs_off"]
    check.detail = f"{comparison.detail}; graphs on/off p50 ratio at batch 1 {ratio:.2f}"
