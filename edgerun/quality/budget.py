"""`QualityBudget`: how close to FP32 an FP16 or INT8 model must stay, per metric.

Defaults per precision (`QualityBudget.for_precision`), each metric held where it applies:

=======================  ======  ======  ==============================================================
field                    fp16    int8    applies to
=======================  ======  ======  ==============================================================
min_cosine               0.999   0.90    every output's mean cosine
min_slice_cosine         0.99    0.90    each slice's mean cosine: channels, detector features, columns
min_top1                 0.99    0.95    class outputs' top-1 agreement
min_mask_iou             0.95    0.85    probability maps' mask IoU
min_detections_kept      0.95    0.90    detectors: share of FP32 detections kept
max_detections_spurious  0.10    0.25    detectors: share of the candidate's detections FP32 lacks
=======================  ======  ======  ==============================================================

Why: FP16 rounds to 11 significant bits (relative step 4.9e-4), so a correct FP16 model stays
within about 1e-3 of FP32 and its cosine is 0.9999+ (bundled models: 0.99999-1.00000, the fixed
ppocr-det mask IoU 0.9945 at 224 and 0.9997 at 480, top-1 agreement 100%): 0.999 leaves a
hundredfold margin while a model with one broken layer (ppocr-det before the fix: 0.152) fails by
far. A single slice has fewer, smaller values than the whole output, hence 0.99. INT8 steps are
range/255 per tensor, so values move much more while the task survives (measured: ppocr-det INT8
cosine 0.943 with mask IoU 0.908 at threshold 0.3, digits and ppocr-cls top-1 agreement 99.2-100%):
the INT8 budget rests on the task metrics, and its cosine floors only catch outright breakage
(quantized-away score slices give cosines near 0). Detectors keep >= 90% of FP32 detections in
INT8 (the issue's acceptance) and 95% in FP16, whose scores move by about 1e-3, so only detections
scoring within that of the threshold can flip. Such flips also add detections: a YOLO-style test
detector whose INT8 head stays float keeps 95% of its 101 FP32 detections and adds 10% (where a
broken one that keeps 0-8% adds none, and one with saturated scores adds far more), hence 25% for
INT8 and 10% for FP16. Ratios over few samples or detections are coarse: with 8 samples one top-1
flip is 12.5 points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from edgerun.errors import ConfigError
from edgerun.quality.metrics import OutputQuality


@dataclass(frozen=True)
class QualityBudget:
    """Per-metric limits a converted model's outputs must meet against FP32 (all in [0, 1])."""

    min_cosine: float
    min_slice_cosine: float
    min_top1: float
    min_mask_iou: float
    min_detections_kept: float
    max_detections_spurious: float

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ConfigError(f"quality budget: {f.name} must be a number in [0, 1], got {value!r}")

    @classmethod
    def for_precision(cls, precision: str) -> QualityBudget:
        """The default budget of ``fp16`` or ``int8`` (see the module doc for the figures and why)."""
        if precision == "fp16":
            return cls(0.999, 0.99, 0.99, 0.95, 0.95, 0.10)
        if precision == "int8":
            return cls(0.90, 0.90, 0.95, 0.85, 0.90, 0.25)
        raise ConfigError(f"no quality budget for precision {precision!r}: fp16 or int8")

    def with_overrides(self, **values: float) -> QualityBudget:
        """A copy with some limits changed; an unknown field or a value outside [0, 1] is a `ConfigError`."""
        known = [f.name for f in fields(self)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"quality budget: unknown field {', '.join(unknown)}; fields: {', '.join(known)}")
        return replace(self, **values)

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QualityBudget:
        """The inverse of `to_dict`; a missing or unknown field is a `ConfigError`."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        missing = [k for k in known if k not in data]
        if unknown or missing:
            parts = ([f"unknown {', '.join(unknown)}"] if unknown else []) + (
                [f"missing {', '.join(missing)}"] if missing else []
            )
            raise ConfigError(f"quality budget: {'; '.join(parts)}")
        return cls(**{k: data[k] for k in known})

    def describe(self) -> str:
        """One line: ``cosine >= 0.999, slice cosine >= 0.99, ...``."""
        return (
            f"cosine >= {self.min_cosine:g}, slice cosine >= {self.min_slice_cosine:g}, "
            f"top-1 agreement >= {self.min_top1:.0%}, mask IoU >= {self.min_mask_iou:g}, "
            f"detections kept >= {self.min_detections_kept:.0%}, "
            f"spurious detections <= {self.max_detections_spurious:.0%}"
        )

    def passes(self, qualities: Sequence[OutputQuality]) -> bool:
        return not self.violations(qualities)

    def violations(self, qualities: Sequence[OutputQuality]) -> list[str]:
        """One sentence per limit an output breaks, naming the output (and slice) and the figures; empty: all pass."""
        problems: list[str] = []
        for q in qualities:
            output = f"output '{q.name}'"
            if not _at_least(q.cosine_mean, self.min_cosine):
                empty = f", {q.empty_samples} without signal" if q.empty_samples else ""
                problems.append(
                    f"{output} has a mean cosine similarity of {q.cosine_mean:.5f} (lowest sample {q.cosine_min:.5f} "
                    f"of {q.samples}{empty}), below the budget's {self.min_cosine:g}"
                )
            if q.slice_cosines is not None and q.worst_slice is not None:
                below = [i for i, c in enumerate(q.slice_cosines) if not _at_least(c, self.min_slice_cosine)]
                if below:
                    worst = q.worst_slice
                    rel = "" if q.slice_max_rels is None else f", max error {q.slice_max_rels[worst]:.1%} of its range"
                    others = (
                        f"; {len(below)} of {q.slices} slices are below it" if len(below) > 1 else " (the only one)"
                    )
                    problems.append(
                        f"{output} slice {worst} of {q.slices} along axis {q.slice_axis} has a mean cosine "
                        f"similarity of {q.slice_cosines[worst]:.5f}{rel}, below the budget's "
                        f"{self.min_slice_cosine:g}{others}"
                    )
            if q.top1_agreement is not None and not _at_least(q.top1_agreement, self.min_top1):
                differ = round((1 - q.top1_agreement) * q.samples)
                problems.append(
                    f"{output} has a top-1 agreement of {q.top1_agreement:.2%} ({differ} of {q.samples} samples "
                    f"differ), below the budget's {self.min_top1:.0%}"
                )
            if q.mask_iou is not None and not _at_least(q.mask_iou, self.min_mask_iou):
                agreement = "" if q.mask_agreement is None else f", pixel agreement {q.mask_agreement:.2%}"
                problems.append(
                    f"{output} has a mask IoU of {q.mask_iou:.4f} at threshold {q.mask_threshold:g}{agreement}, "
                    f"below the budget's {self.min_mask_iou:g}"
                )
            if q.detections_kept is not None and not _at_least(q.detections_kept, self.min_detections_kept):
                kept = round(q.detections_kept * (q.detections or 0))
                problems.append(
                    f"{output} keeps {kept} of {q.detections} FP32 detections ({q.detections_kept:.2%}), "
                    f"below the budget's {self.min_detections_kept:.0%}"
                )
            if q.detections_spurious is not None and q.detections_spurious > self.max_detections_spurious:
                extra = round(q.detections_spurious * (q.candidate_detections or 0))
                problems.append(
                    f"{output} finds {extra} of its {q.candidate_detections} detections where FP32 has none "
                    f"({q.detections_spurious:.2%}), above the budget's {self.max_detections_spurious:.0%}"
                )
        return problems


def _at_least(value: float, limit: float) -> bool:
    """``value >= limit``, NaN failing."""
    return not math.isnan(value) and value >= limit
