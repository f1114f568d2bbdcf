"""Detections decoded from YOLO-style outputs, class-aware NMS, and matching against the reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerun.quality import DetectionLayout, Detections, compare_detections, decode
from edgerun.quality.detection import box_iou, match

from .outputs import yolo_output

seeds = st.integers(0, 2**32 - 1)
V8 = DetectionLayout(feature_axis=1)


def _output(rows: list[list[float]]) -> np.ndarray:
    """One sample [1, F, A] from anchor rows (cx, cy, w, h, scores...)."""
    return np.asarray(rows, dtype=np.float32).T[None]


def test_decode_thresholds_converts_boxes_and_applies_class_aware_nms() -> None:
    output = _output(
        [
            [50, 50, 20, 20, 0.9, 0.1],  # class 0
            [52, 50, 20, 20, 0.8, 0.1],  # same place, same class: suppressed (IoU 0.82 > 0.45)
            [52, 50, 20, 20, 0.1, 0.7],  # same place, other class: kept
            [200, 100, 40, 10, 0.3, 0.2],  # class 0, alone
            [300, 300, 10, 10, 0.25, 0.1],  # exactly at the threshold: not above it
        ]
    )
    (found,) = decode(output, V8)
    assert found.classes.tolist() == [0, 1, 0]
    assert found.scores.tolist() == pytest.approx([0.9, 0.7, 0.3])
    assert found.boxes.tolist() == [[40, 40, 60, 60], [42, 40, 62, 60], [180, 95, 220, 105]]


def test_nms_iou_is_0_45_in_float_pixels() -> None:
    """Boxes 10 wide, 10 apart in height: x offset 3.85 gives IoU 0.444 (kept), 3.75 gives 0.4545 (suppressed)."""
    for offset, kept in ((3.85, 2), (3.75, 1)):
        output = _output([[5, 5, 10, 10, 0.9], [5 + offset, 5, 10, 10, 0.8]])
        assert len(decode(output, V8)[0]) == kept


def test_yolov5_scores_are_objectness_times_class() -> None:
    rows = [[50, 50, 20, 20, 0.5, 0.9, 0.1], [150, 50, 20, 20, 0.2, 0.1, 0.95], [250, 50, 20, 20, 0.9, 0.2, 0.8]]
    output = np.asarray(rows, dtype=np.float32)[None]  # [1, A, 5 + C]: anchors first
    (found,) = decode(output, DetectionLayout(feature_axis=2, objectness=True))
    assert found.classes.tolist() == [1, 0]
    assert found.scores.tolist() == pytest.approx([0.72, 0.45])
    (single,) = decode(np.asarray([[50, 50, 20, 20, 0.6]], np.float32)[None], DetectionLayout(2, objectness=True))
    assert (single.classes.tolist(), single.scores.tolist()) == ([0], pytest.approx([0.6]))


def test_garbage_boxes_do_not_break_decoding() -> None:
    output = _output([[np.nan, 5, 10, 10, 0.9], [50, 50, -10, 10, 0.8], [80, 80, 10, 10, np.nan]])
    (found,) = decode(output, V8)
    assert found.boxes.tolist() == [[50, 45, 50, 55]], "NaN boxes and NaN scores dropped, negative width is 0"


def test_box_iou() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], np.float64)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], np.float64)
    assert box_iou(a, b).tolist() == [[pytest.approx(50 / 150), 0.0, 1.0], [0.0, 0.0, 0.0]]


@settings(max_examples=50, deadline=None)
@given(seed=seeds, samples=st.integers(1, 3), transposed=st.booleans())
def test_identical_detections_all_match_whichever_side(seed: int, samples: int, transposed: bool) -> None:
    output, _ = yolo_output(np.random.default_rng(seed), samples=samples, classes=3, anchors=80, objects=9)
    layout = V8
    if transposed:
        output, layout = output.transpose(0, 2, 1), DetectionLayout(feature_axis=2)
    for found in decode(output, layout):
        assert len(found) == 9
        assert match(found, found) == 9
    agreement = compare_detections(output, output.copy(), layout)
    assert (agreement.reference, agreement.candidate, agreement.matched) == (9 * samples,) * 3
    assert (agreement.kept, agreement.spurious) == (1.0, 0.0)


@settings(max_examples=50, deadline=None)
@given(seed=seeds, data=st.data())
def test_each_lost_score_loses_exactly_one_detection(seed: int, data: st.DataObject) -> None:
    reference, picks = yolo_output(np.random.default_rng(seed), samples=2, classes=3, anchors=80, objects=8)
    lost = data.draw(st.lists(st.integers(0, 7), unique=True, max_size=8), label="lost")
    candidate = reference.copy()
    candidate[1, 4:, picks[1][lost]] = 0.05
    agreement = compare_detections(reference, candidate, V8)
    assert (agreement.reference, agreement.candidate, agreement.matched) == (16, 16 - len(lost), 16 - len(lost))
    assert agreement.kept == pytest.approx(1 - len(lost) / 16)
    assert agreement.spurious == 0.0
    reverse = compare_detections(candidate, reference, V8)
    assert reverse.matched == agreement.matched, "matching is the same from either side here"
    assert reverse.spurious == pytest.approx(len(lost) / 16)


@settings(max_examples=40, deadline=None)
@given(seed=seeds, dx=st.floats(-40, 40), dy=st.floats(-40, 40))
def test_a_moved_box_is_kept_while_its_iou_is_at_least_one_half(seed: int, dx: float, dy: float) -> None:
    reference, picks = yolo_output(np.random.default_rng(seed), classes=2, anchors=60, objects=1)
    candidate = reference.copy()
    candidate[0, 0, picks[0][0]] += np.float32(dx)
    candidate[0, 1, picks[0][0]] += np.float32(dy)
    (ours,), (theirs,) = decode(reference, V8), decode(candidate, V8)
    overlap = float(box_iou(ours.boxes, theirs.boxes)[0, 0])
    assert compare_detections(reference, candidate, V8).matched == (1 if overlap >= 0.5 else 0)


def test_a_changed_class_is_not_a_match() -> None:
    reference = _output([[50, 50, 20, 20, 0.9, 0.1]])
    candidate = _output([[50, 50, 20, 20, 0.1, 0.9]])
    agreement = compare_detections(reference, candidate, V8)
    assert (agreement.matched, agreement.kept, agreement.spurious) == (0, 0.0, 1.0)


def test_no_reference_detections_keeps_everything() -> None:
    empty = _output([[50, 50, 20, 20, 0.1, 0.1]])
    agreement = compare_detections(empty, empty, V8)
    assert (agreement.reference, agreement.kept, agreement.spurious) == (0, 1.0, 0.0)
    nothing = Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
    assert match(nothing, decode(_output([[50, 50, 20, 20, 0.9]]), V8)[0]) == 0
