"""Task-aware quality of a converted model's outputs against the reference's (FP32).

`output_kind` tells classes, probability maps, detections and plain values apart; `output_quality` /
`quality_of` measure per output and per feature slice (cosine, relative error), plus top-1
agreement, mask IoU or detections kept; `QualityBudget` holds them to per-precision limits.
Used by `edgerun.compare` and the precision guard; imports only numpy, OpenCV and the foundation.
"""

from edgerun.quality.budget import QualityBudget
from edgerun.quality.detection import DetectionAgreement, Detections, compare_detections, decode
from edgerun.quality.kinds import OUTPUT_KINDS, DetectionLayout, OutputKind, declared_mask_threshold, output_kind
from edgerun.quality.metrics import SIGNAL_FLOOR, OutputQuality, output_quality, quality_of

__all__ = [
    "OUTPUT_KINDS",
    "SIGNAL_FLOOR",
    "DetectionAgreement",
    "DetectionLayout",
    "Detections",
    "OutputKind",
    "OutputQuality",
    "QualityBudget",
    "compare_detections",
    "declared_mask_threshold",
    "decode",
    "output_kind",
    "output_quality",
    "quality_of",
]
