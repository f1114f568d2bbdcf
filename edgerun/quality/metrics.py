"""How far a candidate's outputs are from the reference's, judged by what each output is for.

Per output: max abs error, max error relative to the reference's largest magnitude, and cosine
similarity per sample. Per slice of the feature axis (channels of an [N, C, H, W] output, the
box and score features of a detector, the columns of an [N, F] output), mean cosine and max
error relative to that slice's own largest magnitude, so that class scores (0..1) concatenated
with pixel boxes (0..320) cannot hide behind them; a slice of a detector or a map is judged per
sample, a column across the batch. Then what the task needs: top-1 agreement for classes (for a
declared single-column class output, a binary classifier's probability: the share of samples on the
same side of its threshold, default 0.5), mask IoU and pixel agreement for maps, and for detectors
the share of the reference's detections the candidate keeps.

Samples without signal (the reference's largest magnitude, in the output or in a slice, at most
`SIGNAL_FLOOR` of the output's largest over the whole batch) are not judged by cosine, which is
rounding noise there (measured on ppocr-det FP16 with text-free photos: maps peaking at 1e-7
give cosines of 0.5 though both masks are empty): they count as 1 when the candidate is below
that floor too, else 0. The same holds for a slice that is silent next to the rest (scores of
a class absent from every sample, a dead channel).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from edgerun.errors import InputError
from edgerun.quality.detection import MATCH_IOU, NMS_IOU, SCORE_THRESHOLD, compare_detections
from edgerun.quality.kinds import DetectionLayout, OutputKind, declared_mask_threshold, output_kind

SIGNAL_FLOOR = 1e-3
"""A sample (or a sample's slice) has no signal when its largest reference magnitude is at most this
fraction of the output's largest over the whole batch."""
MAP_THRESHOLD = 0.5
"""The mask threshold of outputs in [0, 1] when none is given or declared."""


@dataclass(frozen=True)
class OutputQuality:
    """How one output of a candidate compares with the reference's."""

    name: str
    kind: OutputKind
    samples: int
    max_abs: float
    max_rel: float
    """max abs error / max abs reference value: error relative to the output's range."""
    cosine_mean: float
    cosine_min: float
    empty_samples: int = 0
    """Samples whose reference has no signal (see the module doc): not judged by cosine."""
    slices: int | None = None
    """Slices along the feature axis (None: the output has no feature axis with more than one slice)."""
    slice_axis: int | None = None
    worst_slice: int | None = None
    """The slice with the lowest mean cosine (the largest relative error among equals)."""
    worst_slice_cosine: float | None = None
    worst_slice_max_rel: float | None = None
    """The worst slice's max error relative to its own largest reference magnitude."""
    slice_cosines: tuple[float, ...] | None = None
    """Mean cosine of every slice."""
    slice_max_rels: tuple[float, ...] | None = None
    """Max error of every slice relative to that slice's largest reference magnitude."""
    top1_agreement: float | None = None
    mask_threshold: float | None = None
    """A map's mask threshold, or the decision threshold of a single-column class output (a binary classifier)."""
    mask_iou: float | None = None
    mask_agreement: float | None = None
    """Fraction of elements on the same side of the mask threshold: top-1 agreement per pixel."""
    detections: int | None = None
    """Reference detections (after score threshold and NMS) over all samples."""
    detections_kept: float | None = None
    """Share of the reference's detections the candidate keeps (1.0 when the reference has none)."""
    candidate_detections: int | None = None
    detections_spurious: float | None = None
    """Share of the candidate's detections that match no reference one (0.0 when it has none)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (slices as lists)."""
        data = asdict(self)
        for key in ("slice_cosines", "slice_max_rels"):
            if data[key] is not None:
                data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputQuality:
        """The inverse of `to_dict` (keys it does not know are ignored: newer manifests load)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("slice_cosines", "slice_max_rels"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


def quality_of(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    *,
    declared: Mapping[str, Any] | None = None,
    mask_threshold: float | None = None,
    score_threshold: float = SCORE_THRESHOLD,
) -> list[OutputQuality]:
    """`output_quality` of every output of ``reference`` (in its order); ``declared`` as in `output_kind`."""
    missing = [name for name in reference if name not in candidate]
    if missing:
        raise InputError(
            f"the candidate has no output {', '.join(repr(m) for m in missing)} "
            f"(it has {', '.join(repr(n) for n in candidate) or 'none'})",
            tensor=missing[0],
        )
    return [
        output_quality(
            name,
            ref,
            candidate[name],
            declared=declared,
            mask_threshold=mask_threshold,
            score_threshold=score_threshold,
        )
        for name, ref in reference.items()
    ]


def output_quality(
    name: str,
    reference: np.ndarray,
    candidate: np.ndarray,
    *,
    kind: OutputKind | None = None,
    layout: DetectionLayout | None = None,
    declared: Mapping[str, Any] | None = None,
    mask_threshold: float | None = None,
    score_threshold: float = SCORE_THRESHOLD,
    nms_iou: float = NMS_IOU,
    iou: float = MATCH_IOU,
) -> OutputQuality:
    """How ``candidate`` (batch axis first) compares with ``reference`` for output ``name``.

    ``kind`` (and ``layout`` for detections) default to `output_kind` of the reference (``declared``
    wins). Mask IoU is measured for maps (at ``mask_threshold``, else the declared one, else 0.5) and
    for any other non-class, non-detection output when ``mask_threshold`` is given.
    """
    reference, candidate = np.asarray(reference), np.asarray(candidate)
    if reference.shape != candidate.shape:
        raise InputError(
            f"output '{name}': the candidate's shape {list(candidate.shape)} differs from the reference's "
            f"{list(reference.shape)}",
            tensor=name,
            expected=str(list(reference.shape)),
            got=str(list(candidate.shape)),
        )
    if reference.ndim == 0 or len(reference) == 0:
        raise InputError(f"output '{name}': no samples to compare (shape {list(reference.shape)})", tensor=name)
    if kind is None:
        kind, inferred = output_kind(name, reference, declared)
        layout = layout or inferred
    if kind == "detections" and layout is None:
        layout = DetectionLayout.infer(reference.shape)
    n = len(reference)
    r = reference.astype(np.float64).reshape(1, n, -1)
    g = candidate.astype(np.float64).reshape(1, n, -1)
    error = _errors(r, g)
    max_abs = float(error.max()) if error.size else 0.0
    scale = _peak(r)
    cosines, empty = _cosines(r, g, error, scale)
    result: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "samples": n,
        "max_abs": max_abs,
        "max_rel": max_abs / scale if scale else max_abs,
        "cosine_mean": float(cosines.mean()),
        "cosine_min": float(cosines.min()),
        "empty_samples": int(empty.sum()),
    }
    axis = _slice_axis(kind, reference, layout)
    if axis is not None:
        result.update(_slices(reference, candidate, axis, scale))
    if kind == "classes" and r.shape[2] == 1:
        # one column: a binary classifier's probability (a VAD's speech); argmax of one column always agrees,
        # so top-1 agreement is the share of samples on the same side of the threshold (declared, else 0.5)
        declared_threshold = declared_mask_threshold(name, declared)
        threshold = mask_threshold if mask_threshold is not None else declared_threshold
        threshold = MAP_THRESHOLD if threshold is None else threshold
        result["top1_agreement"] = float(((r[0, :, 0] >= threshold) == (g[0, :, 0] >= threshold)).mean())
        result["mask_threshold"] = float(threshold)
    elif kind == "classes":
        result["top1_agreement"] = float((r[0].argmax(axis=1) == g[0].argmax(axis=1)).mean())
    elif kind != "detections":
        threshold = mask_threshold if mask_threshold is not None else declared_mask_threshold(name, declared)
        if threshold is None and kind == "map":
            threshold = MAP_THRESHOLD
        if threshold is not None:
            a, b = r >= threshold, g >= threshold
            union = int(np.logical_or(a, b).sum())
            result["mask_threshold"] = float(threshold)
            result["mask_iou"] = float(np.logical_and(a, b).sum() / union) if union else 1.0
            result["mask_agreement"] = float((a == b).mean()) if a.size else 1.0
    else:
        assert layout is not None
        agreement = compare_detections(
            reference, candidate, layout, score_threshold=score_threshold, nms_iou=nms_iou, iou=iou
        )
        result["detections"] = agreement.reference
        result["detections_kept"] = agreement.kept
        result["candidate_detections"] = agreement.candidate
        result["detections_spurious"] = agreement.spurious
    return OutputQuality(**result)


def _errors(r: np.ndarray, g: np.ndarray) -> np.ndarray:
    """|g - r|, with inf wherever either is not finite (a NaN is an infinitely wrong value)."""
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.abs(g - r)
    return np.where(np.isfinite(error), error, np.inf)


def _peak(values: np.ndarray) -> float:
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size else 0.0


def _cosines(r: np.ndarray, g: np.ndarray, error: np.ndarray, peak: float) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity per sample of each group: ``r`` and ``g`` are [groups, N, K], the result [groups, N],
    with samples that have no signal (largest magnitude <= `SIGNAL_FLOOR` x ``peak``, the output's) scored
    1 or 0, and whether each had none."""
    if r.shape[2] == 0:
        return np.ones(r.shape[:2]), np.zeros(r.shape[:2], dtype=bool)
    with np.errstate(invalid="ignore", over="ignore"):
        ref_peaks = np.abs(r).max(axis=2)
        cand_peaks = np.abs(g).max(axis=2)
    floor = SIGNAL_FLOOR * peak
    empty = ref_peaks <= floor
    finite = np.all(np.isfinite(error), axis=2)
    if not finite.all():  # samples with NaN or inf score 0 below; keep them from poisoning the arithmetic
        r, g = np.where(np.isfinite(r), r, 0.0), np.where(np.isfinite(g), g, 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        norms = np.linalg.norm(r, axis=2) * np.linalg.norm(g, axis=2)
        dots = np.einsum("bnk,bnk->bn", r, g)
        cosine = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    cosine = np.where(finite, np.clip(np.nan_to_num(cosine, nan=0.0), -1.0, 1.0), 0.0)
    cosine = np.where(finite & (error.max(axis=2) == 0) & (norms > 0), 1.0, cosine)  # equal: exactly 1, no rounding
    silent = np.where(cand_peaks <= floor, 1.0, 0.0)
    return np.where(empty, silent, cosine), empty


def _slice_axis(kind: OutputKind, reference: np.ndarray, layout: DetectionLayout | None) -> int | None:
    """The feature axis worth slicing: the features of a detector, channels of [N, C, H, W], columns of [N, F]."""
    if kind == "detections" and layout is not None:
        return layout.feature_axis
    if reference.ndim in (2, 4) and reference.shape[1] > 1:
        return 1
    return None


def _slices(reference: np.ndarray, candidate: np.ndarray, axis: int, peak: float) -> dict[str, Any]:
    """Per-slice figures along ``axis``; a column of an [N, F] output (one value per sample) is one vector
    over the batch."""
    count = reference.shape[axis]
    n = 1 if reference.ndim == 2 else len(reference)
    r = np.moveaxis(reference.astype(np.float64), axis, 0).reshape(count, n, -1)
    g = np.moveaxis(candidate.astype(np.float64), axis, 0).reshape(count, n, -1)
    error = _errors(r, g)
    cosines, _ = _cosines(r, g, error, peak)
    means = cosines.mean(axis=1)
    peaks = np.array([_peak(part) for part in r])
    worst_errors = error.reshape(count, -1).max(axis=1) if error.size else np.zeros(count)
    rels = np.where(peaks > 0, worst_errors / np.where(peaks > 0, peaks, 1.0), worst_errors)
    worst = int(np.lexsort((-rels, means))[0])
    return {
        "slices": count,
        "slice_axis": axis,
        "worst_slice": worst,
        "worst_slice_cosine": float(means[worst]),
        "worst_slice_max_rel": float(rels[worst]),
        "slice_cosines": tuple(float(c) for c in means),
        "slice_max_rels": tuple(float(x) if math.isfinite(x) else math.inf for x in rels),
    }
