"""Detections out of a YOLO-style output, and how many of the reference's a candidate keeps.

Decoding follows the exporters: boxes are (cx, cy, w, h) in pixels; a detection's score is its
best class score (YOLOv8) or objectness x best class score (YOLOv5); detections scoring above the
threshold go through class-aware NMS (`cv2.dnn.NMSBoxesBatched`). A reference detection is kept
when the candidate has one of the same class with IoU >= 0.5, matched greedily by reference score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgerun.quality.kinds import DetectionLayout

SCORE_THRESHOLD = 0.25
"""A detection counts when its score is above this (the default of YOLO's predict)."""
NMS_IOU = 0.45
"""Class-aware NMS suppresses boxes overlapping a better one of the same class by more than this."""
MATCH_IOU = 0.5
"""A candidate detection matches a reference one of the same class when their IoU is at least this."""


@dataclass(frozen=True)
class Detections:
    """The detections of one sample, best first."""

    boxes: np.ndarray
    """[K, 4] float64: x1, y1, x2, y2."""
    scores: np.ndarray
    """[K] float64."""
    classes: np.ndarray
    """[K] int64."""

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True)
class DetectionAgreement:
    """How a candidate's detections compare with the reference's over a batch."""

    reference: int
    """Reference detections (after threshold and NMS)."""
    candidate: int
    """Candidate detections (after threshold and NMS)."""
    matched: int
    """Reference detections the candidate kept (same class, IoU >= the match IoU), each matched once."""

    @property
    def kept(self) -> float:
        """Share of the reference's detections kept; 1.0 when the reference has none."""
        return self.matched / self.reference if self.reference else 1.0

    @property
    def spurious(self) -> float:
        """Share of the candidate's detections that match no reference one; 0.0 when it has none."""
        return (self.candidate - self.matched) / self.candidate if self.candidate else 0.0


def decode(
    output: np.ndarray,
    layout: DetectionLayout,
    *,
    score_threshold: float = SCORE_THRESHOLD,
    nms_iou: float = NMS_IOU,
) -> list[Detections]:
    """The detections of every sample of a detector ``output`` ([N, 4+C, A] or [N, A, 4+C] per ``layout``)."""
    import cv2

    features = layout.features(np.asarray(output, dtype=np.float64))
    found = []
    for rows in features:
        boxes = _xyxy(rows[:, :4])
        if layout.objectness:
            objectness = rows[:, 4]
            scores_of = rows[:, layout.first_class :]
            if scores_of.shape[1]:
                classes = scores_of.argmax(axis=1)
                scores = objectness * scores_of.max(axis=1)
            else:
                classes, scores = np.zeros(len(rows), np.int64), objectness
        else:
            scores_of = rows[:, layout.first_class :]
            classes, scores = scores_of.argmax(axis=1), scores_of.max(axis=1)
        keep = (scores > score_threshold) & np.all(np.isfinite(boxes), axis=1)
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep].astype(np.int64)
        if len(scores):
            rects = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]])
            chosen = np.asarray(
                cv2.dnn.NMSBoxesBatched(rects.tolist(), scores.tolist(), classes.tolist(), 0.0, nms_iou),
                dtype=np.int64,
            ).reshape(-1)
            chosen = chosen[np.argsort(-scores[chosen], kind="stable")]
            boxes, scores, classes = boxes[chosen], scores[chosen], classes[chosen]
        found.append(Detections(boxes, scores, classes))
    return found


def _xyxy(cxcywh: np.ndarray) -> np.ndarray:
    """(cx, cy, w, h) -> (x1, y1, x2, y2); a negative width or height is a box of no area."""
    half = np.maximum(cxcywh[:, 2:], 0.0) / 2
    return np.column_stack([cxcywh[:, :2] - half, cxcywh[:, :2] + half])


def box_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """[K, M] IoU of every box of ``first`` [K, 4] with every box of ``second`` [M, 4] (x1, y1, x2, y2)."""
    top_left = np.maximum(first[:, None, :2], second[None, :, :2])
    bottom_right = np.minimum(first[:, None, 2:], second[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0.0, None), axis=2)
    area_first = np.prod(np.clip(first[:, 2:] - first[:, :2], 0.0, None), axis=1)
    area_second = np.prod(np.clip(second[:, 2:] - second[:, :2], 0.0, None), axis=1)
    union = area_first[:, None] + area_second[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def match(reference: Detections, candidate: Detections, *, iou: float = MATCH_IOU) -> int:
    """How many of ``reference``'s detections ``candidate`` keeps: greedily, best reference first, each
    takes the unmatched candidate of its class with the highest IoU, if that is >= ``iou``."""
    if not len(reference) or not len(candidate):
        return 0
    overlap = box_iou(reference.boxes, candidate.boxes)
    overlap[reference.classes[:, None] != candidate.classes[None, :]] = -1.0
    taken = np.zeros(len(candidate), dtype=bool)
    matched = 0
    for row in np.argsort(-reference.scores, kind="stable"):
        options = np.where(taken, -1.0, overlap[row])
        best = int(options.argmax())
        if options[best] >= iou:
            taken[best] = True
            matched += 1
    return matched


def compare_detections(
    reference: np.ndarray,
    candidate: np.ndarray,
    layout: DetectionLayout,
    *,
    score_threshold: float = SCORE_THRESHOLD,
    nms_iou: float = NMS_IOU,
    iou: float = MATCH_IOU,
) -> DetectionAgreement:
    """Decode both outputs the same way and count the reference detections the candidate keeps."""
    ours = decode(reference, layout, score_threshold=score_threshold, nms_iou=nms_iou)
    theirs = decode(candidate, layout, score_threshold=score_threshold, nms_iou=nms_iou)
    matched = sum(match(r, c, iou=iou) for r, c in zip(ours, theirs, strict=True))
    return DetectionAgreement(sum(map(len, ours)), sum(map(len, theirs)), matched)
