"""The precision guard: every FP16 or INT8 model edgerun makes is checked against FP32, and mixed if needed.

The candidate and the FP32 model run on check samples (`edgerun.precision.checks`); the
task-aware metrics of `edgerun.quality` (per output and per feature slice, top-1, mask IoU,
detections kept) are held to a `QualityBudget`. A model that misses it gets nodes kept in
FP32 (`edgerun.precision.mixed`, starting from the culprits measured ranges name); if no mix
meets the budget the result says so and the caller falls back to FP32 with that reason.

A stateful model whose check data carries streams (`edgerun.precision.checks`, `StreamSamples`) is
also run over them, FP32 and candidate each carrying its own state step after step, and the data
outputs of every step are held to the same budget: a single step from a real state never shows
errors that compound through the recurrent state. Every probe of the mixing search runs both
checks, so a mix must pass both.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgerun.errors import ConversionError, UnsupportedPrecisionError
from edgerun.precision.activations import TensorStats, activation_stats, open_session, run_model
from edgerun.precision.checks import CheckSamples, StreamSamples, run_streams
from edgerun.precision.culprits import Culprit, fp16_culprits, int8_culprits
from edgerun.precision.emulate import rounded_twin
from edgerun.precision.mixed import MAX_KEPT_SHARE, MAX_PROBES, Probe, find_mix
from edgerun.quality import OutputQuality, QualityBudget, quality_of
from edgerun.storage import atomic_path

if TYPE_CHECKING:
    import onnx
    import onnxruntime

    from edgerun.precision.calibration import CalibrationData
    from edgerun.precision.quantize import QuantizeOptions, QuantizeResult
    from edgerun.runtime.modelfile import ModelFile

_log = logging.getLogger("edgerun")


class QualityCheckError(ConversionError):
    """No FP16/INT8 version of a model (not even a mixed one) meets its quality budget."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report
        """The check's figures (`GuardResult.to_dict`): what the plan and ``edgerun info`` show."""


@dataclass(frozen=True)
class KeptNode:
    """A node kept in FP32 and why: the measured range that named it, or the bisection that found it."""

    name: str
    op_type: str
    why: str


@dataclass(frozen=True)
class GuardResult:
    """What the check measured, what it kept in FP32, and what that took."""

    precision: str
    passed: bool
    samples: str
    random_inputs: bool
    budget: QualityBudget
    total_nodes: int
    kept: tuple[KeptNode, ...]
    before: tuple[OutputQuality, ...]
    """The first check: the plain conversion, nothing kept."""
    after: tuple[OutputQuality, ...]
    """The model returned (the same as ``before`` when nothing was kept)."""
    violations: tuple[str, ...]
    """What the returned model (or, if none passed, the plain conversion) breaks; empty when it passed."""
    probes: tuple[Probe, ...]
    seconds: float
    quantization: QuantizeResult | None = None
    """For INT8, the quantizer's account of the model written (what it quantized, its calibration cache)."""
    streams: str | None = None
    """The stream check's data (``3 streams x 180 steps of ...``); None when only single steps were checked."""
    stream_steps: int = 0
    """Streams x steps judged by the stream check (its samples)."""
    stream_before: tuple[OutputQuality, ...] = ()
    """The stream check of the plain conversion (data outputs over every step)."""
    stream_after: tuple[OutputQuality, ...] = ()
    """The stream check of the model returned."""

    @property
    def changed(self) -> bool:
        """Whether the guard changed the model (kept nodes in FP32)."""
        return bool(self.kept)

    def summary(self) -> str:
        """One line for plans, logs and tables."""
        kept = f"{len(self.kept)} of {self.total_nodes} nodes kept in FP32"
        if self.kept:
            names = ", ".join(k.name for k in self.kept[:4]) + (", ..." if len(self.kept) > 4 else "")
            kept += f" ({names})"
        verdict = "passed" if self.passed else "FAILED: " + "; ".join(self.violations)
        streamed = ""
        if self.streams is not None:
            streamed = f" and {self.streams}"
        over = f"; over the streams: {describe_quality(self.stream_after)}" if self.stream_after else ""
        return (
            f"{self.precision} checked against fp32 on {self.samples}{streamed}: {verdict}; {kept}; "
            f"{describe_quality(self.after)}{over}; {len(self.probes)} probe{'s' if len(self.probes) != 1 else ''}, "
            f"{self.seconds:.1f} s"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "passed": self.passed,
            "samples": self.samples,
            "random_inputs": self.random_inputs,
            "budget": self.budget.to_dict(),
            "total_nodes": self.total_nodes,
            "kept_fp32": [k.name for k in self.kept],
            "kept": [dataclasses.asdict(k) for k in self.kept],
            "before": [dataclasses.asdict(q) for q in self.before],
            "after": [dataclasses.asdict(q) for q in self.after],
            "violations": list(self.violations),
            "probes": [p.to_dict() for p in self.probes],
            "seconds": self.seconds,
            "streams": self.streams,
            "stream_steps": self.stream_steps,
            "stream_before": [dataclasses.asdict(q) for q in self.stream_before],
            "stream_after": [dataclasses.asdict(q) for q in self.stream_after],
            "summary": self.summary(),
        }


def describe_quality(qualities: Sequence[OutputQuality]) -> str:
    """The figures that matter per output: cosine, and top-1, mask IoU or detections kept where they apply."""
    parts = []
    for q in qualities:
        text = f"'{q.name}' cosine {q.cosine_mean:.5f}"
        if q.top1_agreement is not None:
            text += f", top-1 agreement {q.top1_agreement:.2%}"
        if q.mask_iou is not None:
            text += f", mask IoU {q.mask_iou:.4f}"
        if q.detections_kept is not None:
            text += f", detections kept {q.detections_kept:.0%} of {q.detections}"
        parts.append(text)
    return "; ".join(parts)


def guard_fp16(
    model: ModelFile,
    output: Path,
    samples: CheckSamples,
    budget: QualityBudget | None = None,
    *,
    block: Sequence[str] | None = None,
    declared: Mapping[str, Any] | None = None,
    max_probes: int = MAX_PROBES,
) -> GuardResult:
    """Write to ``output`` the FP16 version of ``model`` that meets ``budget`` on ``samples`` (mixed if needed).

    Raises `QualityCheckError` (carrying the report) when no mix meets the budget.
    """
    import onnx

    from edgerun.precision.convert import SENSITIVE_OPS, prepare_fp16_source, to_fp16

    budget = budget or QualityBudget.for_precision("fp16")
    blocked = tuple(SENSITIVE_OPS if block is None else block)
    prepared = prepare_fp16_source(onnx.load(str(model.path)))
    label = str(model.path)
    weighted = _weighted_nodes(prepared)

    def convert(keep: frozenset[str]) -> onnx.ModelProto:
        return to_fp16(prepared, block=blocked, keep=keep)

    def candidate_session(keep: frozenset[str]) -> onnxruntime.InferenceSession | None:
        if keep and weighted <= keep:
            return None  # every node with weights kept in FP32: no FP16 weights left, that is FP32, not a mix
        # the rounded twin: FP16 storage as a GPU has it, which ONNX Runtime's CPU kernels would skip
        return open_session(rounded_twin(convert(keep)), label)

    conversion = _Conversion("fp16", prepared, candidate_session, fp16_culprits)
    result = _guard(conversion, model, samples, budget, declared, max_probes)
    with atomic_path(output) as temp:
        onnx.save(convert(frozenset(k.name for k in result.kept)), str(temp))
    return result


def guard_int8(
    model: ModelFile,
    output: Path,
    calibration: CalibrationData | None,
    samples: CheckSamples,
    options: QuantizeOptions,
    budget: QualityBudget | None = None,
    *,
    declared: Mapping[str, Any] | None = None,
    max_probes: int = MAX_PROBES,
    cache: Path | None = None,
) -> GuardResult:
    """Write to ``output`` the INT8 version of ``model`` meeting ``budget`` on ``samples`` (nodes excluded if needed).

    Excluded nodes are named in the quantizer's prepared graph (`prepare_for_int8`). Raises
    `QualityCheckError` (carrying the report) when no mix meets the budget.
    """
    from edgerun.precision.quantize import prepare_for_int8, quantize

    budget = budget or QualityBudget.for_precision("int8")
    label = str(model.path)
    if calibration is not None:  # None: dynamic mode, which computes activation ranges per call
        calibration.check_fits(model.inputs, model.path.name)
    with tempfile.TemporaryDirectory(prefix="edgerun-guard-") as tmp:
        folder = Path(tmp)
        prepared = prepare_for_int8(model, folder)
        made: dict[frozenset[str], QuantizeResult] = {}

        def quantized(keep: frozenset[str]) -> Path | None:
            if keep not in made:
                target = folder / f"probe-{len(made)}.onnx"
                exclude = tuple(sorted(set(options.exclude) | keep))
                settings = dataclasses.replace(options, exclude=exclude)
                done = quantize(model.path, target, calibration, settings, cache=cache, warn_if_empty=False)
                if done.quantized_count == 0:
                    if not keep:
                        raise UnsupportedPrecisionError(
                            f"{label}: INT8 quantization quantized nothing; precision int8 is moot"
                        )
                    return None  # every compute node kept in float: that is FP32, not a mix
                made[keep] = done
            return made[keep].output

        def candidate_session(keep: frozenset[str]) -> onnxruntime.InferenceSession | None:
            path = quantized(keep)
            return None if path is None else open_session(path.read_bytes(), label)

        conversion = _Conversion("int8", prepared, candidate_session, int8_culprits)
        result = _guard(conversion, model, samples, budget, declared, max_probes)
        chosen = made[frozenset(k.name for k in result.kept)]
        with atomic_path(output) as temp:
            shutil.copyfile(chosen.output, temp)
    return dataclasses.replace(result, quantization=dataclasses.replace(chosen, output=output))


def stream_quality(
    reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], declared: Mapping[str, Any] | None
) -> tuple[OutputQuality, ...]:
    """The quality metrics of streamed data outputs (`run_streams`: every step stacked along the batch axis)."""
    return tuple(quality_of(reference, candidate, declared=declared))


def compare_streams(
    reference: onnxruntime.InferenceSession,
    candidate: onnxruntime.InferenceSession,
    streams: StreamSamples,
    budget: QualityBudget,
    *,
    declared: Mapping[str, Any] | None = None,
    label: str = "model",
) -> tuple[tuple[OutputQuality, ...], list[str]]:
    """Run both models over ``streams`` (each carrying its own state) and judge the candidate's data outputs
    against the reference's: the figures and the budget's violations (empty: it passes)."""
    qualities = stream_quality(run_streams(reference, streams, label), run_streams(candidate, streams, label), declared)
    return qualities, budget.violations(qualities)


def _weighted_nodes(model: onnx.ModelProto) -> frozenset[str]:
    """Nodes reading a float weight (an initializer): what FP16 conversion is for."""
    import onnx

    floats = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    return frozenset(node.name for node in model.graph.node if any(name in floats for name in node.input))


@dataclass(frozen=True)
class _Conversion:
    """One precision's part of a guard run: the prepared FP32 graph, how to run a mix, how to name culprits."""

    precision: str
    prepared: onnx.ModelProto
    candidate_session: Callable[[frozenset[str]], onnxruntime.InferenceSession | None]
    """A session on the mix (run on the check samples and streams); None when it converts nothing (no mix)."""
    name_culprits: Callable[[onnx.ModelProto, Mapping[str, TensorStats]], list[Culprit]]


def _guard(
    conversion: _Conversion,
    model: ModelFile,
    samples: CheckSamples,
    budget: QualityBudget,
    declared: Mapping[str, Any] | None,
    max_probes: int,
) -> GuardResult:
    """Check, name culprits when the first check fails, search a mix, and report."""
    started = time.perf_counter()
    precision, prepared, label = conversion.precision, conversion.prepared, str(model.path)
    candidate_session, name_culprits = conversion.candidate_session, conversion.name_culprits
    samples.check_fits(model.inputs, label)
    streams = samples.streams
    fp32 = open_session(prepared, label)
    reference = run_model(fp32, samples.inputs, label, samples.batch_axes, model.roles.output_axes)
    streamed = run_streams(fp32, streams, label) if streams is not None else None
    measured: dict[frozenset[str], tuple[tuple[OutputQuality, ...], tuple[OutputQuality, ...], tuple[str, ...]]] = {}

    def evaluate(keep: frozenset[str]) -> tuple[bool, str]:
        session = candidate_session(keep)
        if session is None:
            return False, f"nothing left in {precision}"
        produced = run_model(session, samples.inputs, label, samples.batch_axes, model.roles.output_axes)
        qualities = tuple(quality_of(reference, produced, declared=declared))
        problems = list(budget.violations(qualities))
        over: tuple[OutputQuality, ...] = ()
        if streams is not None and streamed is not None:
            over = stream_quality(streamed, run_streams(session, streams, label), declared)
            problems += [f"over {streams.count} streams x {streams.length} steps: {p}" for p in budget.violations(over)]
        measured[keep] = (qualities, over, tuple(problems))
        summary = describe_quality(qualities) + (f"; over the streams: {describe_quality(over)}" if over else "")
        return not problems, "; ".join(problems) or summary

    culprits: list[Culprit] = []

    def named_culprits() -> list[str]:
        stats = activation_stats(prepared, samples.inputs, label, samples.batch_axes)
        culprits.extend(name_culprits(prepared, stats))
        return [c.node for c in culprits]

    order = [node.name for node in prepared.graph.node]
    mix = find_mix(order, named_culprits, evaluate, max_probes=max_probes)
    before_q, before_s, before_v = measured[frozenset()]
    ops = {node.name: node.op_type for node in prepared.graph.node}
    why = {c.node: c.why for c in culprits}
    if mix.kept is None:
        kept: tuple[KeptNode, ...] = ()
        after_q, after_s, violations = before_q, before_s, before_v
    else:
        kept = tuple(
            KeptNode(n, ops.get(n, "?"), why.get(n, "found by bisection on the check samples")) for n in mix.kept
        )
        after_q, after_s, violations = measured[frozenset(mix.kept)]
    result = GuardResult(
        precision=precision,
        passed=mix.kept is not None,
        samples=samples.describe(),
        random_inputs=samples.random,
        budget=budget,
        total_nodes=len(order),
        kept=kept,
        before=before_q,
        after=after_q,
        violations=violations,
        probes=mix.probes,
        seconds=time.perf_counter() - started,
        streams=streams.describe() if streams is not None else None,
        stream_steps=streams.count * streams.length if streams is not None else 0,
        stream_before=before_s,
        stream_after=after_s,
    )
    if result.kept:
        _log.info("%s: %s", label, result.summary())
    if not result.passed:
        checked = samples.describe() + (f" and {streams.describe()}" if streams is not None else "")
        raise QualityCheckError(
            f"{label}: no {precision} version meets the quality budget on {checked} while keeping at "
            f"most {MAX_KEPT_SHARE:.0%} of its nodes in FP32 ({len(mix.probes)} probes); the plain conversion: "
            f"{'; '.join(before_v)}",
            result.to_dict(),
        )
    return result
