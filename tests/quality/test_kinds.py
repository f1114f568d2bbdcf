"""`output_kind`: classes, maps, detections and values told apart by shape and values, or by declaration."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerun.errors import ConfigError
from edgerun.quality import DetectionLayout, declared_mask_threshold, output_kind

from .outputs import yolo_output

seeds = st.integers(0, 2**32 - 1)


@settings(max_examples=50, deadline=None)
@given(batch=st.integers(1, 4), classes=st.integers(2, 50), seed=seeds)
def test_rank_2_float_scores_are_classes(batch: int, classes: int, seed: int) -> None:
    logits = np.random.default_rng(seed).standard_normal((batch, classes)).astype(np.float32)
    assert output_kind("logits", logits) == ("classes", None)
    assert output_kind("one", logits[:, :1]) == ("values", None), "one column: nothing to rank"
    assert output_kind("ids", logits.astype(np.int64)) == ("values", None), "integers are not scores"


@settings(max_examples=50, deadline=None)
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 6), st.integers(1, 6)), seed=seeds)
def test_rank_4_outputs_in_0_1_are_maps(shape: tuple[int, int, int, int], seed: int) -> None:
    probabilities = np.random.default_rng(seed).random(shape, dtype=np.float32)
    assert output_kind("m", probabilities) == ("map", None)
    assert output_kind("m", probabilities - np.float32(0.01) - probabilities.max()) == ("values", None)
    assert output_kind("m", probabilities * 2 + np.float32(1.01)) == ("values", None)


@settings(max_examples=40, deadline=None)
@given(seed=seeds, classes=st.integers(1, 6), anchors=st.integers(30, 120))
def test_yolo_outputs_are_detections_in_either_orientation(seed: int, classes: int, anchors: int) -> None:
    output, _ = yolo_output(np.random.default_rng(seed), samples=2, classes=classes, anchors=anchors, objects=5)
    assert output_kind("output0", output) == ("detections", DetectionLayout(feature_axis=1))
    assert output_kind("output0", output.transpose(0, 2, 1)) == ("detections", DetectionLayout(feature_axis=2))


def test_what_does_not_fit_a_detector_is_values() -> None:
    output, _ = yolo_output(np.random.default_rng(0), classes=3, anchors=100)
    scores_out_of_range = output.copy()
    scores_out_of_range[:, 5] += 1.5
    assert output_kind("y", scores_out_of_range) == ("values", None)
    boxes_in_0_1 = output.copy()
    boxes_in_0_1[:, :4] /= 400
    assert output_kind("y", boxes_in_0_1) == ("values", None), "normalised boxes look like scores: declare them"
    assert output_kind("y", output[:, :, :7]) == ("values", None), "as many anchors as features: no orientation"
    assert output_kind("y", output[:, :4]) == ("values", None), "boxes without scores"
    hidden = np.random.default_rng(0).standard_normal((2, 16, 64)).astype(np.float32)
    assert output_kind("hidden", hidden) == ("values", None)


def test_a_declaration_wins() -> None:
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 10))
    assert output_kind("emb", logits, {"emb": "values"}) == ("values", None)
    assert output_kind("emb", logits, {"other": "map"}) == ("classes", None), "declarations are per output"
    output, _ = yolo_output(rng, classes=80, anchors=300)
    v5 = output.transpose(0, 2, 1)
    assert output_kind("o", v5, {"o": {"kind": "detections", "layout": "yolov5"}}) == (
        "detections",
        DetectionLayout(feature_axis=2, objectness=True),
    )
    assert output_kind("o", output, {"o": {"kind": "detections", "feature_axis": -1}}) == (
        "detections",
        DetectionLayout(feature_axis=2),
    )
    maps = rng.standard_normal((1, 1, 4, 4))
    assert output_kind("m", maps, {"m": {"kind": "map", "threshold": 0.0}}) == ("map", None)
    assert declared_mask_threshold("m", {"m": {"kind": "map", "threshold": 0.3}}) == 0.3
    assert declared_mask_threshold("m", {"m": "map"}) is None
    assert declared_mask_threshold("m", None) is None


@pytest.mark.parametrize(
    ("entry", "shape", "message"),
    [
        ({"kind": "boxes"}, (1, 7, 20), r"output 'o': unknown declared kind 'boxes'; one of classes, map"),
        ({"kind": "detections", "layout": "ssd"}, (1, 7, 20), r"unknown detection layout 'ssd'; one of yolov8, yolov5"),
        ({"kind": "detections"}, (1, 7), r"output 'o' is declared as detections, .* but it has shape \[1, 7\]"),
        ({"kind": "detections"}, (1, 4, 20), r"need at least 5 features along axis 1, but it has shape \[1, 4, 20\]"),
        ({"kind": "detections", "feature_axis": 0}, (1, 7, 20), r"feature axis must be 1 or 2 \(or -1\), got 0"),
        (["map"], (1, 1, 2, 2), r"a declared output is a kind or a mapping with a 'kind'"),
    ],
)
def test_bad_declarations_are_config_errors(entry: object, shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        output_kind("o", np.zeros(shape), {"o": entry})


def test_a_declared_threshold_must_be_a_number() -> None:
    with pytest.raises(ConfigError, match=r"output 'o': the declared mask threshold must be a number, got 'high'"):
        declared_mask_threshold("o", {"o": {"kind": "map", "threshold": "high"}})


def test_detection_layout() -> None:
    layout = DetectionLayout.infer((1, 84, 8400))
    assert (layout.feature_axis, layout.first_class, layout.classes((1, 84, 8400))) == (1, 4, 80)
    v5 = DetectionLayout.infer((1, 25200, 85), objectness=True)
    assert (v5.feature_axis, v5.first_class, v5.classes((1, 25200, 85))) == (2, 5, 80)
    assert v5.features(np.zeros((1, 25200, 85))).shape == (1, 25200, 85)
    assert layout.features(np.zeros((1, 84, 8400))).shape == (1, 8400, 84)
    with pytest.raises(ConfigError, match="feature axis must be 1 or 2, got 3"):
        DetectionLayout(feature_axis=3)
    with pytest.raises(ConfigError, match=r"\[N, 4\+C, A\] or \[N, A, 4\+C\], got \[84, 8400\]"):
        DetectionLayout.infer((84, 8400))
