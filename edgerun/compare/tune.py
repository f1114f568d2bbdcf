"""``edgerun tune``: try FP32, FP16 and INT8 variants on this device and keep the fastest good one.

Whether INT8 pays is a property of the model and the CPU, not a rule: on this project's x86
machines INT8 made the small PP-OCR classifier slower and larger CNNs faster. So every
variant is built, measured side by side with `compare` (same inputs, interleaved timing),
and the fastest whose quality drop stays within the budget wins. Quality drop is measured in
points: accuracy with labels; otherwise 100 x (1 - top-1 agreement) for classifiers, or
100 x (1 - mean cosine) for other outputs.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgerun.compare.comparison import Comparison, ModelRow, compare
from edgerun.errors import ConfigError, ConversionError, EdgerunError
from edgerun.precision.calibration import CalibrationData
from edgerun.precision.quantize import QuantizeOptions, quantize
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
            "int8 minmax per-channel, head in fp32",
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

    def cells(self, reference: str = "reference") -> list[dict[str, str]]:
        """The comparison's cells (`Comparison.cells`), each with the variant's quality drop in points."""
        rows = zip(self.comparison.rows, self.comparison.cells(reference), strict=True)
        return [{**cells, "quality drop": f"{self.drops[row.label]:.2f}"} for row, cells in rows]

    def key_columns(self) -> list[str]:
        """What decides the choice: latency, speed-up and quality drop (the variant names say the precision)."""
        return ["model", "p50 ms", "speed-up", "quality drop"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen,
            "output": str(self.output),
            "criterion": self.criterion,
            "drops": self.drops,
            "skipped": self.skipped,
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
) -> TuneResult:
    """Build every variant of ``model``, measure them, and copy the fastest within budget to ``output``."""
    if max_accuracy_drop < 0:
        raise ConfigError(f"the quality budget (max_accuracy_drop) must be >= 0 points, got {max_accuracy_drop}")
    reference = ModelFile.open(model)
    variants = list(variants) if variants is not None else default_variants()
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="edgerun-tune-") as tmp:
        paths: list[str] = [str(reference.path)]
        names = ["fp32 (reference)"]
        for index, variant in enumerate(variants):
            if progress:
                progress(f"building {variant.name}")
            target = Path(tmp) / f"variant-{index}.onnx"
            try:
                _build(reference, variant, target, calibration)
            except EdgerunError as exc:
                skipped[variant.name] = str(exc)
                _log.warning("tune: skipping %s: %s", variant.name, exc)
                continue
            paths.append(str(target))
            names.append(variant.name)
        if len(paths) == 1:
            reasons = "; ".join(f"{name}: {why}" for name, why in skipped.items()) or "no variants given"
            raise ConversionError(f"{reference.path}: no variant could be built ({reasons})")
        if progress:
            progress(f"measuring {len(paths)} models")
        comparison = compare(
            paths, inputs, labels=labels, source=source, names=names, threads=threads, iterations=iterations
        )
        criterion, drops = _drops(comparison)
        eligible = [row for row in comparison.rows if drops[row.label] <= max_accuracy_drop]
        best = min(eligible, key=lambda row: row.latency_ms.p50)  # the reference (drop 0) is always eligible
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(best.path, output)
    return TuneResult(comparison, drops, criterion, best.label, output, skipped)


def _build(reference: ModelFile, variant: Variant, target: Path, calibration: CalibrationData) -> None:
    if variant.precision == "fp16":
        from edgerun.precision.convert import convert_fp16

        convert_fp16(reference.path, target)
    elif variant.precision == "int8":
        result = quantize(reference.path, target, calibration, variant.quantization)
        if result.quantized_count == 0:
            raise EdgerunError("nothing was quantized")
    else:
        raise EdgerunError(f"unknown variant precision {variant.precision}")


def _drops(comparison: Comparison) -> tuple[str, dict[str, float]]:
    ref = comparison.reference
    if ref.accuracy is not None:
        return "accuracy points vs the reference", {
            row.label: max(0.0, (ref.accuracy - (row.accuracy or 0.0)) * 100) for row in comparison.rows
        }
    first = comparison.rows[1].outputs[0] if len(comparison.rows) > 1 else None
    if first is not None and first.top1_agreement is not None:
        return "100 x (1 - top-1 agreement with the reference)", {
            row.label: _agreement_drop(row) for row in comparison.rows
        }
    return "100 x (1 - mean cosine similarity to the reference)", {
        row.label: _cosine_drop(row) for row in comparison.rows
    }


def _agreement_drop(row: ModelRow) -> float:
    if not row.outputs:
        return 0.0
    return (1.0 - (row.outputs[0].top1_agreement or 0.0)) * 100


def _cosine_drop(row: ModelRow) -> float:
    if not row.outputs:
        return 0.0
    return max((1.0 - out.cosine_mean) * 100 for out in row.outputs)
