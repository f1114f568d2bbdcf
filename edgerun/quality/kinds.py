"""What an output is, so that it is judged by what its task needs: classes, a map, detections or plain values.

Recognised from the reference (FP32) output's shape and values, or declared (a model card's
``"outputs": {"name": {"kind": "detections", "layout": "yolov8"}}``), which always wins:

- ``classes``: [N, C] float with C > 1 (scores or logits; judged by top-1 agreement, and like every
  [N, F] output per column, so that a concatenation of boxes and scores shows what it loses); declared
  on an [N, 1] probability (``{"kind": "classes", "threshold": 0.5}``), a binary decision, judged by the
  share of samples on the same side of the threshold;
- ``map``: [N, C, H, W] float with every value in [0, 1] (probability maps; judged by mask IoU);
- ``detections``: [N, 4+C, A] or [N, A, 4+C] with A > 4+C, the first four features (cx, cy, w, h)
  spanning more than 1 (pixels) and the rest in [0, 1] (YOLOv8-style; judged by detections kept);
  YOLOv5-style outputs (an objectness column before the class scores) look the same, so they
  must be declared (``"layout": "yolov5"``);
- ``values``: anything else (judged by cosine and relative error).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np

from edgerun.errors import ConfigError

OutputKind = Literal["classes", "map", "detections", "values"]
OUTPUT_KINDS: tuple[OutputKind, ...] = ("classes", "map", "detections", "values")
LAYOUTS = ("yolov8", "yolov5")
"""Declarable detection layouts: ``yolov8`` (cx, cy, w, h, class scores) and ``yolov5`` (cx, cy, w, h,
objectness, class scores); the feature axis is the shorter of axes 1 and 2 unless ``feature_axis`` is given."""

_BOX_FEATURES = 4
_UNIT_TOLERANCE = 1e-6
"""How far outside [0, 1] a sigmoid/softmax output may stray through rounding and still count as in [0, 1]."""


@dataclass(frozen=True)
class DetectionLayout:
    """Where the features of a detector output are: boxes (cx, cy, w, h in pixels) first, then scores."""

    feature_axis: int = 1
    """1 for [N, 4+C, A] (YOLOv8's export), 2 for [N, A, 4+C] (anchors first, YOLOv5's export)."""
    objectness: bool = False
    """YOLOv5-style: feature 4 is the objectness, class scores follow; a detection's score is obj x class."""

    def __post_init__(self) -> None:
        if self.feature_axis not in (1, 2):
            raise ConfigError(f"a detection layout's feature axis must be 1 or 2, got {self.feature_axis}")

    @property
    def first_class(self) -> int:
        """Index of the first class score among the features."""
        return _BOX_FEATURES + (1 if self.objectness else 0)

    def features(self, output: np.ndarray) -> np.ndarray:
        """``output`` as [N, A, F]: one row of features per anchor."""
        return output if self.feature_axis == 2 else np.swapaxes(output, 1, 2)

    def classes(self, shape: tuple[int, ...]) -> int:
        """Number of classes in an output of ``shape``."""
        return int(shape[self.feature_axis]) - self.first_class

    @classmethod
    def infer(cls, shape: tuple[int, ...], objectness: bool = False) -> DetectionLayout:
        """The layout of a rank-3 detector output: features along the shorter of axes 1 and 2."""
        if len(shape) != 3:
            raise ConfigError(f"a detector output has shape [N, 4+C, A] or [N, A, 4+C], got {list(shape)}")
        return cls(feature_axis=1 if shape[1] <= shape[2] else 2, objectness=objectness)


def output_kind(
    name: str, reference: np.ndarray, declared: Mapping[str, Any] | None = None
) -> tuple[OutputKind, DetectionLayout | None]:
    """The kind of output ``name`` (and its detection layout) from ``declared`` if it names it, else from
    ``reference``'s shape and values.

    ``declared`` maps output names to a kind (``"map"``) or to an entry such as ``{"kind": "detections",
    "layout": "yolov5", "feature_axis": 2}`` or ``{"kind": "map", "threshold": 0.3}`` (a model card's
    ``outputs``). An unknown kind or layout, or a declaration the shape contradicts, is a `ConfigError`.
    """
    entry = _entry(name, declared)
    if entry is not None:
        return _declared_kind(name, reference, entry)
    return _inferred_kind(reference)


def declared_mask_threshold(name: str, declared: Mapping[str, Any] | None) -> float | None:
    """The threshold ``declared`` gives output ``name`` (a map's mask, ``{"kind": "map", "threshold": 0.3}``, or a
    single-column class output's decision), if any."""
    entry = _entry(name, declared)
    if entry is None or "threshold" not in entry:
        return None
    value = entry["threshold"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"output '{name}': the declared mask threshold must be a number, got {value!r}")
    return float(value)


def _entry(name: str, declared: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if not declared or name not in declared:
        return None
    entry = declared[name]
    if isinstance(entry, str):
        return {"kind": entry}
    if not isinstance(entry, Mapping):
        raise ConfigError(f"output '{name}': a declared output is a kind or a mapping with a 'kind', got {entry!r}")
    return entry


def _declared_kind(
    name: str, reference: np.ndarray, entry: Mapping[str, Any]
) -> tuple[OutputKind, DetectionLayout | None]:
    kind = entry.get("kind")
    if kind not in OUTPUT_KINDS:
        raise ConfigError(
            f"output '{name}': unknown declared kind {kind!r}; one of {', '.join(OUTPUT_KINDS)}",
        )
    if kind != "detections":
        return cast(OutputKind, kind), None
    layout_name = entry.get("layout", "yolov8")
    if layout_name not in LAYOUTS:
        raise ConfigError(f"output '{name}': unknown detection layout {layout_name!r}; one of {', '.join(LAYOUTS)}")
    if reference.ndim != 3:
        raise ConfigError(
            f"output '{name}' is declared as detections, which have shape [N, 4+C, A] or [N, A, 4+C], "
            f"but it has shape {list(reference.shape)}"
        )
    objectness = layout_name == "yolov5"
    axis = entry.get("feature_axis")
    if axis is None:
        layout = DetectionLayout.infer(reference.shape, objectness=objectness)
    else:
        if axis not in (1, 2, -1):
            raise ConfigError(f"output '{name}': the declared feature axis must be 1 or 2 (or -1), got {axis!r}")
        layout = DetectionLayout(feature_axis=2 if axis == -1 else int(axis), objectness=objectness)
    minimum = layout.first_class + (0 if objectness else 1)
    if reference.shape[layout.feature_axis] < minimum:
        raise ConfigError(
            f"output '{name}' is declared as {layout_name} detections, which need at least {minimum} features "
            f"along axis {layout.feature_axis}, but it has shape {list(reference.shape)}"
        )
    return "detections", layout


def _inferred_kind(reference: np.ndarray) -> tuple[OutputKind, DetectionLayout | None]:
    if reference.dtype.kind != "f" or reference.size == 0:
        return "values", None
    if reference.ndim == 2 and reference.shape[1] > 1:
        return "classes", None
    if reference.ndim == 4 and _in_unit_range(reference):
        return "map", None
    if reference.ndim == 3:
        layout = _detection_layout(reference)
        if layout is not None:
            return "detections", layout
    return "values", None


def _in_unit_range(values: np.ndarray) -> bool:
    if not np.all(np.isfinite(values)):
        return False
    return bool(values.min() >= -_UNIT_TOLERANCE and values.max() <= 1 + _UNIT_TOLERANCE)


def _detection_layout(reference: np.ndarray) -> DetectionLayout | None:
    """A YOLOv8-style layout when the shape and values fit one, else None."""
    _, first, second = reference.shape
    if first == second or min(first, second) < _BOX_FEATURES + 1:
        return None
    layout = DetectionLayout.infer(reference.shape)
    features = layout.features(reference)
    boxes, scores = features[..., :_BOX_FEATURES], features[..., _BOX_FEATURES:]
    if not np.all(np.isfinite(boxes)):
        return None
    spans = boxes.reshape(-1, _BOX_FEATURES).max(axis=0) - boxes.reshape(-1, _BOX_FEATURES).min(axis=0)
    if not np.all(spans > 1):
        return None
    return layout if _in_unit_range(scores) else None
