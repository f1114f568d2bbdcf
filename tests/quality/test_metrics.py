"""`output_quality` / `quality_of`: per output and per feature slice, task figures, samples without signal."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerun.errors import InputError
from edgerun.quality import SIGNAL_FLOOR, OutputQuality, QualityBudget, output_quality, quality_of

from .outputs import yolo_output

seeds = st.integers(0, 2**32 - 1)


def _array(kind: str, seed: int, batch: int, width: int) -> np.ndarray:
    """A reference output of ``kind``: classes [N, C], map [N, C, H, W] in [0, 1], values of any rank, detections."""
    rng = np.random.default_rng(seed)
    if kind == "classes":
        return rng.standard_normal((batch, width)).astype(np.float32) * 5
    if kind == "map":
        return rng.random((batch, width, 6, 5), dtype=np.float32)
    if kind == "detections":
        return yolo_output(rng, samples=batch, classes=width, anchors=60, objects=8)[0]
    shape = (batch, *rng.integers(1, 5, rng.integers(0, 4)).tolist())
    values = rng.standard_normal(shape) * 10.0 ** rng.uniform(-6, 6)
    values[rng.random(shape) < 0.3] = 0  # exact zeros, and with a small batch whole samples without signal
    return values.astype(np.float32)


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(["classes", "map", "detections", "values"]), seed=seeds, batch=st.integers(1, 5))
def test_identical_outputs_are_perfect_for_any_shape_and_kind(kind: str, seed: int, batch: int) -> None:
    reference = _array(kind, seed, batch, width=2 + seed % 4)
    q = output_quality("y", reference, reference.copy())
    assert (q.max_abs, q.max_rel) == (0.0, 0.0)
    assert q.cosine_mean == q.cosine_min == 1.0
    assert q.samples == batch
    if q.slice_cosines is not None:
        assert set(q.slice_cosines) == {1.0}
        assert set(q.slice_max_rels or ()) == {0.0}
        assert q.worst_slice_cosine == 1.0
    if kind in ("classes", "map", "detections"):
        assert q.kind == kind
    assert q.top1_agreement in (None, 1.0)
    assert (q.mask_iou, q.mask_agreement) in ((None, None), (1.0, 1.0))
    assert q.detections_kept in (None, 1.0)
    assert q.detections_spurious in (None, 0.0)
    for precision in ("fp16", "int8"):
        assert QualityBudget.for_precision(precision).violations([q]) == []


@settings(max_examples=60, deadline=None)
@given(
    seed=seeds,
    detector=st.booleans(),
    factor=st.one_of(st.floats(-3.0, -0.2), st.floats(1.05, 4.0), st.floats(0.2, 0.95)),
    data=st.data(),
)
def test_scaling_one_slice_changes_exactly_that_slice(
    seed: int, detector: bool, factor: float, data: st.DataObject
) -> None:
    rng = np.random.default_rng(seed)
    if detector:
        reference = yolo_output(rng, samples=2, classes=3, anchors=80, objects=6)[0].astype(np.float64)
    else:
        reference = rng.standard_normal((3, 5, 4, 4)) + 0.1  # values: not a map, sliced along channels
    axis_size = reference.shape[1]
    k = data.draw(st.integers(0, axis_size - 1), label="slice")
    candidate = reference.copy()
    candidate[:, k] *= factor
    q = output_quality("y", reference, candidate)
    assert q.slices == axis_size
    assert q.slice_axis == 1
    assert q.slice_max_rels is not None
    assert q.slice_cosines is not None
    assert q.slice_max_rels[k] == pytest.approx(abs(factor - 1), rel=1e-9)
    assert [r for i, r in enumerate(q.slice_max_rels) if i != k] == [0.0] * (axis_size - 1)
    assert [c for i, c in enumerate(q.slice_cosines) if i != k] == [1.0] * (axis_size - 1)
    # A sample's slice keeps cosine 1 (or -1 negated), except where it is silent next to the whole output: there
    # it agrees (1) while the candidate stays silent too, and disagrees (0) once scaling makes it speak.
    floor = SIGNAL_FLOOR * np.abs(reference).max()
    peaks = np.abs(reference[:, k]).reshape(len(reference), -1).max(axis=1)
    signal = peaks > floor
    per_sample = np.where(signal, np.sign(factor), np.where(peaks * abs(factor) <= floor, 1.0, 0.0))
    assert q.slice_cosines[k] == pytest.approx(float(per_sample.mean()), abs=1e-9)
    if per_sample.mean() < 1:
        assert q.worst_slice == k, "the changed slice: lowest cosine, or the largest error among equal cosines"
    assert q.worst_slice_max_rel == q.slice_max_rels[k]


@settings(max_examples=40, deadline=None)
@given(seed=seeds, data=st.data())
def test_a_slice_lost_to_zeros_breaks_only_that_slice(seed: int, data: st.DataObject) -> None:
    rng = np.random.default_rng(seed)
    reference = rng.standard_normal((2, 6, 3, 3))
    k = data.draw(st.integers(0, 5), label="slice")
    candidate = reference.copy()
    candidate[:, k] = 0
    q = output_quality("y", reference, candidate)
    assert q.slice_cosines is not None
    assert q.slice_cosines[k] == 0.0
    assert q.worst_slice == k
    problems = QualityBudget.for_precision("int8").violations([q])
    assert any(f"output 'y' slice {k} of 6 along axis 1 has a mean cosine similarity of 0.00000" in p for p in problems)


def test_the_issue_scores_quantized_away_behind_a_near_perfect_cosine() -> None:
    """A YOLO-like [1, 4+3, 100] output whose score slices are lost while the pixel boxes are intact."""
    reference, _ = yolo_output(np.random.default_rng(0), classes=3, anchors=100, objects=12)
    candidate = reference.copy()
    candidate[:, 4:] = 0
    q = output_quality("output0", reference, candidate)
    assert q.kind == "detections"
    assert q.cosine_mean > 0.99, "the whole tensor hides the loss"
    assert q.detections == 12
    assert q.detections_kept == 0.0
    assert q.candidate_detections == 0
    assert q.worst_slice in (4, 5, 6)
    assert q.worst_slice_cosine == 0.0
    problems = QualityBudget.for_precision("int8").violations([q])
    assert "output 'output0' keeps 0 of 12 FP32 detections (0.00%), below the budget's 90%" in problems
    assert not any("output 'output0' has a mean cosine" in p for p in problems)


def test_per_tensor_int8_rounding_of_the_whole_output_loses_detections() -> None:
    """What a per-tensor INT8 Concat does: one step of 320/255 for boxes and scores alike."""
    reference, _ = yolo_output(np.random.default_rng(1), samples=4, classes=3, anchors=100, objects=12)
    step = float(reference.max()) / 255
    candidate = (np.round(reference / step) * step).astype(np.float32)
    q = output_quality("output0", reference, candidate)
    assert q.cosine_mean > 0.999
    assert q.detections == 48
    assert q.detections_kept is not None
    assert q.detections_kept < 0.9
    assert QualityBudget.for_precision("int8").violations([q])


def test_samples_without_signal_are_not_judged_by_cosine() -> None:
    """ppocr-det FP16 on text-free photos: maps peaking at 1e-7, whose noise has cosine ~0.5, yet both empty."""
    rng = np.random.default_rng(0)
    reference = np.zeros((3, 1, 8, 8))
    reference[0] = rng.random((1, 8, 8))
    reference[1] = rng.random((1, 8, 8)) * 1e-7
    reference[2] = rng.random((1, 8, 8)) * 1e-7
    candidate = reference.copy()
    candidate[1] = rng.random((1, 8, 8)) * 1e-7  # noise of its own: cosine of noise, but below the floor
    candidate[2, 0, 3, 3] = 0.5  # a blob where the reference has nothing
    noise = candidate[1].ravel() @ reference[1].ravel()
    noise /= np.linalg.norm(candidate[1]) * np.linalg.norm(reference[1])
    assert noise < 0.9, "the noise itself would fail any cosine budget"
    q = output_quality("maps", reference, candidate)
    assert q.kind == "map"
    assert q.empty_samples == 2
    assert q.cosine_mean == pytest.approx((1.0 + 1.0 + 0.0) / 3)
    assert q.cosine_min == 0.0
    assert SIGNAL_FLOOR == 1e-3


def test_a_sample_just_above_the_floor_is_judged() -> None:
    reference = np.array([[1.0, 0.0], [0.0, 2e-3]])
    candidate = np.array([[1.0, 0.0], [2e-3, 0.0]])
    q = output_quality("v", reference, candidate, kind="values")
    assert q.empty_samples == 0
    assert q.cosine_min == 0.0, "2e-3 of the peak is signal: orthogonal there"


def test_nan_in_the_candidate_is_infinitely_wrong() -> None:
    reference = np.ones((2, 4), np.float32)
    candidate = reference.copy()
    candidate[1, 2] = np.nan
    q = output_quality("y", reference, candidate, kind="values")
    assert q.max_abs == math.inf
    assert (q.cosine_mean, q.cosine_min) == (0.5, 0.0)
    assert QualityBudget.for_precision("int8").violations([q])


def test_classes_top1_agreement() -> None:
    reference = np.array([[3.0, 1.0, 0.0], [0.0, 1.0, 2.0], [5.0, 4.0, 0.0], [1.0, 0.0, 0.0]])
    candidate = reference.copy()
    candidate[2] = [4.0, 5.0, 0.0]
    q = output_quality("logits", reference, candidate)
    assert q.kind == "classes"
    assert q.top1_agreement == 0.75
    assert (q.slices, q.slice_axis) == (3, 1), "columns, each judged across the batch"
    assert q.slice_cosines is not None
    assert q.slice_cosines[2] == 1.0
    assert q.slice_cosines[0] < 1.0
    assert q.slice_max_rels == (pytest.approx(1 / 5), pytest.approx(1 / 4), 0.0)
    (problem,) = [p for p in QualityBudget.for_precision("fp16").violations([q]) if "top-1" in p]
    assert problem == "output 'logits' has a top-1 agreement of 75.00% (1 of 4 samples differ), below the budget's 99%"


@settings(max_examples=40, deadline=None)
@given(seed=seeds, threshold=st.floats(0.1, 0.9), shift=st.floats(-0.3, 0.3))
def test_mask_iou_and_pixel_agreement(seed: int, threshold: float, shift: float) -> None:
    reference = np.random.default_rng(seed).random((3, 2, 5, 5))
    candidate = np.clip(reference + shift, 0, 1)
    q = output_quality("m", reference, candidate, mask_threshold=threshold)
    a, b = reference >= threshold, candidate >= threshold
    union = np.logical_or(a, b).sum()
    assert q.mask_threshold == threshold
    assert q.mask_iou == pytest.approx(np.logical_and(a, b).sum() / union if union else 1.0)
    assert q.mask_agreement == pytest.approx((a == b).mean())
    default = output_quality("m", reference, candidate)
    assert default.mask_threshold == 0.5, "maps in [0, 1] are thresholded at 0.5 unless told"
    declared = output_quality("m", reference, candidate, declared={"m": {"kind": "map", "threshold": 0.3}})
    assert declared.mask_threshold == 0.3


def test_a_fixed_layout_detector_transposed_gives_the_same_verdict() -> None:
    rng = np.random.default_rng(4)
    reference, picks = yolo_output(rng, samples=2, classes=4, anchors=90, objects=10)
    candidate = reference.copy()
    candidate[0, 4:, picks[0][:3]] = 0.0  # three objects of sample 0 lost
    first = output_quality("o", reference, candidate)
    second = output_quality("o", reference.transpose(0, 2, 1), candidate.transpose(0, 2, 1))
    assert (first.detections, first.detections_kept) == (20, 17 / 20)
    assert (second.kind, second.slice_axis) == ("detections", 2)
    assert (second.detections, second.detections_kept, second.slice_cosines) == (
        first.detections,
        first.detections_kept,
        first.slice_cosines,
    )


def test_quality_of_every_output_in_order() -> None:
    rng = np.random.default_rng(0)
    reference = {"logits": rng.standard_normal((4, 5)), "map": rng.random((4, 1, 4, 4))}
    candidate = {"map": reference["map"] * 0.5, "logits": reference["logits"]}
    logits, maps = quality_of(reference, candidate)
    assert (logits.name, logits.kind, maps.name, maps.kind) == ("logits", "classes", "map", "map")
    assert maps.max_rel == pytest.approx(0.5)
    with pytest.raises(InputError, match=r"the candidate has no output 'map' \(it has 'logits'\)"):
        quality_of(reference, {"logits": reference["logits"]})


def test_shapes_must_agree() -> None:
    with pytest.raises(InputError, match=r"output 'y': the candidate's shape \[2, 3\] differs from the reference's"):
        output_quality("y", np.zeros((2, 4)), np.zeros((2, 3)))
    with pytest.raises(InputError, match="no samples"):
        output_quality("y", np.zeros((0, 4)), np.zeros((0, 4)))


def test_to_dict_is_plain_json_and_round_trips() -> None:
    reference, _ = yolo_output(np.random.default_rng(2))
    q = output_quality("o", reference, reference * np.float32(1.01))
    data = json.loads(json.dumps(q.to_dict()))
    assert isinstance(data["slice_cosines"], list)
    assert OutputQuality.from_dict(data) == q
    assert OutputQuality.from_dict({**data, "added_later": 1}) == q


def test_columns_of_a_2d_output_cannot_hide_behind_each_other() -> None:
    """[N, 4+C]: boxes in 0..300 and scores in 0.1..0.5 joined by a per-tensor INT8 Concat (step 300/255)."""
    rng = np.random.default_rng(3)
    reference = np.concatenate([rng.uniform(0, 300, (16, 4)), rng.uniform(0.1, 0.5, (16, 6))], axis=1)
    step = 300 / 255
    candidate = np.round(reference / step) * step
    q = output_quality("y", reference, candidate)
    assert q.cosine_mean > 0.999
    assert q.top1_agreement == 1.0, "the argmax is always a box column: top-1 sees nothing"
    assert q.slice_cosines is not None
    assert q.slice_cosines[4:] == (0.0,) * 6, "every score column rounded to 0"
    assert min(q.slice_cosines[:4]) > 0.999
    problems = QualityBudget.for_precision("int8").violations([q])
    assert problems == [
        "output 'y' slice 4 of 10 along axis 1 has a mean cosine similarity of 0.00000, max error 100.0% of its "
        "range, below the budget's 0.9; 6 of 10 slices are below it"
    ]
