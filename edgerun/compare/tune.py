"""``edgerun tune``: try FP32, FP16 and INT8 variants on this device and keep the fastest good one.

Whether INT8 pays is a property of the model and the CPU, not a rule: on this project's x86
machines INT8 made the small PP-OCR classifier slower and larger CNNs faster. So every
variant is built, measured side by side with `compare` (same inputs, interleaved timing),
and the fastest whose quality drop stays within the budget wins. Quality drop is measured in
points, as the worst over the outputs of what each is for: accuracy with labels, else
100 x (1 - top-1 agreement) for class scores; 100 x (1 - mean cosine) for every other output,
and also 100 x (1 - mask IoU) for probability maps and, for detectors, 100 x (1 - share of FP32
detections kept) and 100 x the share of spurious detections. A variant that breaks the quality
budget of its precision (`QualityBudget.for_precision`: per output, per feature slice, top-1,
mask IoU, detections) is refused even within the points budget, so tune never certifies a
detector that loses detections behind a near-perfect mean cosine. Every variant is built
through the precision guard (`edgerun.precision.guard`, on calibration samples held apart), so
a variant that would miss its budget is first mixed: the table shows its nodes kept in FP32.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgerun.compare.comparison import Comparison, compare
from edgerun.errors import ConfigError, ConversionError, EdgerunError
from edgerun.precision.calibration import CalibrationData
from edgerun.precision.checks import CheckSamples, hold_out
from edgerun.precision.guard import GuardResult, guard_fp16, guard_int8
from edgerun.precision.quantize import QuantizeOptions
from edgerun.quality import OutputQuality, QualityBudget
from edgerun.runtime.backends.base import QdqLayout
from edgerun.runtime.modelfile import ModelFile

_log = logging.getLogger("edgerun")


@dataclass(frozen=True)
class Variant:
    name: str
    precision: str
    quantization: QuantizeOptions | None = None


DEFAULT_TARGET: QdqLayout = "cpu"
"""The INT8 layout `default_variants` tries unless told otherwise: ``cpu``, the layout ONNX Runtime's
CPU kernels fuse (`QuantizeOptions` defaults to ``tensorrt``, the portable one); pass ``tensorrt``
to tune for TensorRT."""


def default_variants(target: QdqLayout = DEFAULT_TARGET) -> list[Variant]:
    """FP16 and the INT8 settings worth trying (calibration methods, per-channel, float head), for ``target``."""
    int8 = [
        ("int8 minmax", QuantizeOptions(method="minmax", target=target)),
        ("int8 minmax per-channel", QuantizeOptions(method="minmax", per_channel=True, target=target)),
        ("int8 entropy per-channel", QuantizeOptions(method="entropy", per_channel=True, target=target)),
        ("int8 percentile per-channel", QuantizeOptions(method="percentile", per_channel=True, target=target)),
        (
            "int8 minmax per-channel, fp32 head",
            QuantizeOptions(method="minmax", per_channel=True, keep_head_float=True, target=target),
        ),
    ]
    return [Variant("fp16", "fp16")] + [Variant(name, "int8", options) for name, options in int8]


@dataclass(frozen=True)
class TuneResult:
    comparison: Comparison
    drops: dict[str, float]
    """Quality drop in points per variant (see the module doc for how it is measured)."""
    criterion: str
    chosen: str
    output: Path
    skipped: dict[str, str] = field(default_factory=dict)
    """Variants that could not be built, with the reason."""
    refused: dict[str, str] = field(default_factory=dict)
    """Variants measured but refused whatever their drop: the quality budget each breaks, as sentences."""

    def cells(self, reference: str = "reference") -> list[dict[str, str]]:
        """The comparison's cells (`Comparison.cells`), each with the variant's quality drop in points, and
        whether it meets its quality budget when some variant does not."""
        rows = zip(self.comparison.rows, self.comparison.cells(reference), strict=True)
        table = []
        for row, cells in rows:
            cells = {**cells, "quality drop": f"{self.drops[row.label]:.2f}"}
            if self.refused:
                cells["budget"] = "refused" if row.label in self.refused else "ok"
            table.append(cells)
        return table

    def key_columns(self) -> list[str]:
        """What decides the choice: latency, speed-up and quality drop (the variant names say the precision),
        the quality budget when it refused a variant, and the guard's FP32 nodes when it ran."""
        columns = ["model", "p50 ms", "speed-up", "quality drop"]
        if self.refused:
            columns.append("budget")
        if self.comparison.has_guard:
            columns.append("fp32 nodes")
        return columns

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen,
            "output": str(self.output),
            "criterion": self.criterion,
            "drops": self.drops,
            "skipped": self.skipped,
            "refused": self.refused,
            "comparison": self.comparison.to_dict(),
        }


def tune(
    model: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    calibration: CalibrationData,
    inputs: dict[str, np.ndarray],
    labels: np.ndarray | None = None,
    max_accuracy_drop: float = 1.0,
    variants: Sequence[Variant] | None = None,
    source: str = "<inputs>",
    threads: int | None = None,
    iterations: int = 100,
    progress: Callable[[str], None] | None = None,
    budget: QualityBudget | None = None,
) -> TuneResult:
    """Build every variant of ``model``, measure them, and copy the fastest within budget to ``output``.

    Within budget: a quality drop of at most ``max_accuracy_drop`` points (see the module doc) and no
    violation of ``budget`` (default: `QualityBudget.for_precision` of each variant's precision); a
    variant over either is refused even when fastest. The FP32 reference always qualifies.
    """
    if max_accuracy_drop < 0:
        raise ConfigError(f"the quality budget (max_accuracy_drop) must be >= 0 points, got {max_accuracy_drop}")
    reference = ModelFile.open(model)
    variants = list(variants) if variants is not None else default_variants()
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="edgerun-tune-") as tmp:
        paths: list[str] = [str(reference.path)]
        names = ["fp32 (reference)"]
        budgets: dict[str, QualityBudget] = {}
        guards: dict[str, GuardResult] = {}
        calibrate_on, check = _check_split(calibration)
        for index, variant in enumerate(variants):
            if progress:
                progress(f"building {variant.name}")
            target = Path(tmp) / f"variant-{index}.onnx"
            try:
                guards[variant.name] = _build(reference, variant, target, calibrate_on, check, budget)
            except EdgerunError as exc:
                skipped[variant.name] = str(exc)
                _log.warning("tune: skipping %s: %s", variant.name, exc)
                continue
            paths.append(str(target))
            names.append(variant.name)
            budgets[variant.name] = guards[variant.name].budget
        if len(paths) == 1:
            reasons = "; ".join(f"{name}: {why}" for name, why in skipped.items()) or "no variants given"
            raise ConversionError(f"{reference.path}: no variant could be built ({reasons})")
        if progress:
            progress(f"measuring {len(paths)} models")
        comparison = compare(
            paths, inputs, labels=labels, source=source, names=names, threads=threads, iterations=iterations
        )
        comparison = _with_guards(comparison, guards)
        criterion, drops = _drops(comparison)
        refused = {
            row.label: "; ".join(problems)
            for row in comparison.rows[1:]
            if (problems := budgets[row.label].violations(row.outputs))
        }
        for name, why in refused.items():
            _log.info("tune: refusing %s, which breaks its quality budget: %s", name, why)
        eligible = [
            row for row in comparison.rows if drops[row.label] <= max_accuracy_drop and row.label not in refused
        ]
        best = min(eligible, key=lambda row: row.latency_ms.p50)  # the reference (drop 0) is always eligible
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(best.path, output)
    return TuneResult(comparison, drops, criterion, best.label, output, skipped, refused)


def _check_split(calibration: CalibrationData) -> tuple[CalibrationData, CheckSamples]:
    """Calibration data and the guard's check samples held apart from it (the calibration itself when too few)."""
    calibrate_on, held = hold_out(calibration)
    return calibrate_on, held or CheckSamples(dict(calibration.samples), f"{calibration.source} (calibration data)")


def _build(
    reference: ModelFile,
    variant: Variant,
    target: Path,
    calibration: CalibrationData,
    check: CheckSamples,
    budget: QualityBudget | None,
) -> GuardResult:
    """The variant, through the precision guard (mixed if the plain conversion misses ``budget``, default:
    its precision's)."""
    if variant.precision == "fp16":
        return guard_fp16(reference, target, check, budget)
    if variant.precision == "int8":
        options = variant.quantization or QuantizeOptions()
        return guard_int8(reference, target, calibration, check, options, budget)
    raise EdgerunError(f"unknown variant precision {variant.precision}")


def _with_guards(comparison: Comparison, guards: Mapping[str, GuardResult]) -> Comparison:
    """The comparison's rows with what the guard kept in FP32 for each variant."""
    rows = [
        row
        if row.label not in guards
        else dataclasses.replace(
            row,
            kept_fp32=len(guards[row.label].kept),
            total_nodes=guards[row.label].total_nodes,
            guard="mixed" if guards[row.label].kept else "passed",
        )
        for row in comparison.rows
    ]
    return dataclasses.replace(comparison, rows=rows)


ACCURACY = "accuracy points vs the reference"
TOP1 = "100 x (1 - top-1 agreement with the reference)"
COSINE = "100 x (1 - mean cosine similarity to the reference)"
MASK_IOU = "100 x (1 - mask IoU)"
KEPT = "100 x (1 - share of FP32 detections kept)"
SPURIOUS = "100 x share of spurious detections"


def _drops(comparison: Comparison) -> tuple[str, dict[str, float]]:
    """The criterion (the measures used) and each row's quality drop in points: the worst of its measures."""
    ref = comparison.reference
    labelled = ref.accuracy is not None
    used: dict[str, None] = {ACCURACY: None} if labelled else {}
    drops: dict[str, float] = {}
    for row in comparison.rows:
        worst = 0.0
        if ref.accuracy is not None:
            worst = (ref.accuracy - (row.accuracy or 0.0)) * 100
        for out in row.outputs:
            for measure, points in _output_drops(out, labelled):
                used[measure] = None
                worst = max(worst, math.inf if math.isnan(points) else points)  # NaN: infinitely bad
        drops[row.label] = max(0.0, worst)
    measures = list(used) or [COSINE]
    return (measures[0] if len(measures) == 1 else "the worst of " + "; ".join(measures)), drops


def _output_drops(out: OutputQuality, labelled: bool) -> list[tuple[str, float]]:
    """What one output loses, per measure, in points: top-1 for class scores (accuracy covers them with
    labels), cosine for the rest, plus mask IoU for maps and detections kept / spurious for detectors."""
    if out.kind == "classes":
        return [] if labelled else [(TOP1, (1.0 - (out.top1_agreement or 0.0)) * 100)]
    drops = [(COSINE, (1.0 - out.cosine_mean) * 100)]
    if out.mask_iou is not None:
        drops.append((MASK_IOU, (1.0 - out.mask_iou) * 100))
    if out.detections_kept is not None:
        drops.append((KEPT, (1.0 - out.detections_kept) * 100))
    if out.detections_spurious is not None:
        drops.append((SPURIOUS, out.detections_spurious * 100))
    return drops
