"""The precision guard: every FP16 or INT8 model edgerun makes is checked against FP32, and mixed if needed.

The candidate and the FP32 model run on check samples (`edgerun.precision.checks`); the
task-aware metrics of `edgerun.quality` (per output and per feature slice, top-1, mask IoU,
detections kept) are held to a `QualityBudget`. A model that misses it gets nodes kept in
FP32 (`edgerun.precision.mixed`, starting from the culprits measured ranges name); if no mix
meets the budget the result says so and the caller falls back to FP32 with that reason.
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
from edgerun.precision.checks import CheckSamples
from edgerun.precision.culprits import Culprit, fp16_culprits, int8_culprits
from edgerun.precision.emulate import rounded_twin
from edgerun.precision.mixed import MAX_KEPT_SHARE, MAX_PROBES, Probe, find_mix
from edgerun.quality import OutputQuality, QualityBudget, quality_of
from edgerun.storage import atomic_path

if TYPE_CHECKING:
    import onnx

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
        return (
            f"{self.precision} checked against fp32 on {self.samples}: {verdict}; {kept}; "
            f"{describe_quality(self.after)}; {len(self.probes)} probe{'s' if len(self.probes) != 1 else ''}, "
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

    def candidate_outputs(keep: frozenset[str]) -> dict[str, np.ndarray] | None:
        if keep and weighted <= keep:
            return None  # every node with weights kept in FP32: no FP16 weights left, that is FP32, not a mix
        # the rounded twin: FP16 storage as a GPU has it, which ONNX Runtime's CPU kernels would skip
        return run_model(open_session(rounded_twin(convert(keep)), label), samples.inputs, label, samples.batch_axes)

    conversion = _Conversion("fp16", prepared, candidate_outputs, fp16_culprits)
    result = _guard(conversion, model, samples, budget, declared, max_probes)
    with atomic_path(output) as temp:
        onnx.save(convert(frozenset(k.name for k in result.kept)), str(temp))
    return result


def guard_int8(
    model: ModelFile,
    output: Path,
    calibration: CalibrationData,
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

        def candidate_outputs(keep: frozenset[str]) -> dict[str, np.ndarray] | None:
            path = quantized(keep)
            if path is None:
                return None
            return run_model(open_session(path.read_bytes(), label), samples.inputs, label, samples.batch_axes)

        conversion = _Conversion("int8", prepared, candidate_outputs, int8_culprits)
        result = _guard(conversion, model, samples, budget, declared, max_probes)
        chosen = made[frozenset(k.name for k in result.kept)]
        with atomic_path(output) as temp:
            shutil.copyfile(chosen.output, temp)
    return dataclasses.replace(result, quantization=dataclasses.replace(chosen, output=output))


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
    candidate_outputs: Callable[[frozenset[str]], dict[str, np.ndarray] | None]
    """The mix's outputs on the check samples; None when the mix converts nothing (no mix at all)."""
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
    candidate_outputs, name_culprits = conversion.candidate_outputs, conversion.name_culprits
    samples.check_fits(model.inputs, label)
    reference = run_model(open_session(prepared, label), samples.inputs, label, samples.batch_axes)
    measured: dict[frozenset[str], tuple[tuple[OutputQuality, ...], tuple[str, ...]]] = {}

    def evaluate(keep: frozenset[str]) -> tuple[bool, str]:
        produced = candidate_outputs(keep)
        if produced is None:
            return False, f"nothing left in {precision}"
        qualities = tuple(quality_of(reference, produced, declared=declared))
        problems = tuple(budget.violations(qualities))
        measured[keep] = (qualities, problems)
        return not problems, "; ".join(problems) or describe_quality(qualities)

    culprits: list[Culprit] = []

    def named_culprits() -> list[str]:
        stats = activation_stats(prepared, samples.inputs, label, samples.batch_axes)
        culprits.extend(name_culprits(prepared, stats))
        return [c.node for c in culprits]

    order = [node.name for node in prepared.graph.node]
    mix = find_mix(order, named_culprits, evaluate, max_probes=max_probes)
    before_q, before_v = measured[frozenset()]
    ops = {node.name: node.op_type for node in prepared.graph.node}
    why = {c.node: c.why for c in culprits}
    if mix.kept is None:
        kept: tuple[KeptNode, ...] = ()
        after_q, violations = before_q, before_v
    else:
        kept = tuple(
            KeptNode(n, ops.get(n, "?"), why.get(n, "found by bisection on the check samples")) for n in mix.kept
        )
        after_q, violations = measured[frozenset(mix.kept)]
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
    )
    if result.kept:
        _log.info("%s: %s", label, result.summary())
    if not result.passed:
        raise QualityCheckError(
            f"{label}: no {precision} version meets the quality budget on {samples.describe()} while keeping at "
            f"most {MAX_KEPT_SHARE:.0%} of its nodes in FP32 ({len(mix.probes)} probes); the plain conversion: "
            f"{'; '.join(before_v)}",
            result.to_dict(),
        )
    return result
