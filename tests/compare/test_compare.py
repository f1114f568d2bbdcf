"""``compare``: metrics checked on constructed cases, accuracy and retention, thresholds, reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgerun
from edgerun import models
from edgerun.compare.comparison import Comparison, compare, open_for_compare
from edgerun.errors import EdgerunError, ModelError

from .. import onnx_factory
from ..precision_helpers import digits_test, offset_map, scaled_matmul

FAST = {"iterations": 3, "warmup": 0}
FUNCTION_FIXTURES = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def x() -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return onnx_factory.save(scaled_matmul(1.0), tmp_path_factory.mktemp("cmp") / "ref.onnx")


def run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    with edgerun.load(path) as session:
        (out,) = session.run(feeds).values()
    return out.astype(np.float64)


@pytest.fixture(scope="module")
def teacher_vs_student() -> Comparison:
    images, labels = digits_test()
    return compare(["digits-teacher", "digits-student"], {"image": images}, labels=labels, source="test split", **FAST)


def test_a_model_compared_with_itself(reference: Path, x: dict[str, np.ndarray]) -> None:
    result = compare([reference, reference], x, iterations=30, warmup=3, names=["ref", "same"])
    ref, same = result.rows
    assert result.reference is ref
    assert (ref.label, same.label) == ("ref", "same")
    assert ref.outputs == []
    (diff,) = same.outputs
    assert diff.name == "y"
    assert diff.max_abs == 0
    assert diff.max_rel == 0
    assert diff.cosine_mean == pytest.approx(1, abs=1e-12)
    assert diff.cosine_min == pytest.approx(1, abs=1e-12)
    assert diff.top1_agreement == 1
    assert diff.mask_iou is None
    assert 0.2 < same.speedup < 5, "same model, same speed (loosely: timing is noisy)"
    assert same.size_ratio == 1
    assert same.parameters == ref.parameters == 4 * 6 + 1
    assert same.precision == ref.precision == "fp32"
    assert ref.latency_ms.p50 > 0
    assert result.samples == 40
    assert result.iterations == 30
    assert result.violations(min_cosine=0.999999, max_accuracy_drop=None) == []


@FUNCTION_FIXTURES
@given(scale=st.floats(0.05, 20).filter(lambda s: abs(s - 1) > 1e-3))
def test_a_scaled_candidate_has_cosine_1_and_a_known_max_error(
    tmp_path: Path, reference: Path, x: dict[str, np.ndarray], scale: float
) -> None:
    candidate = onnx_factory.save(scaled_matmul(scale), tmp_path / "scaled.onnx")
    result = compare([reference, candidate], x, **FAST)
    (diff,) = result.rows[1].outputs
    ref = run(reference, x)
    got = run(candidate, x)
    assert diff.max_abs == pytest.approx(np.abs(got - ref).max(), rel=1e-9)
    # The outputs are float32: each carries a rounding error of a few ulps of its magnitude.
    rounding = 8 * float(np.finfo(np.float32).eps) * max(1.0, abs(scale))
    assert diff.max_abs == pytest.approx(
        abs(np.float32(scale) - 1) * np.abs(ref).max(), rel=1e-5, abs=rounding * float(np.abs(ref).max())
    )
    assert diff.max_rel == pytest.approx(abs(np.float32(scale) - 1), rel=1e-5, abs=rounding)
    assert diff.cosine_mean == pytest.approx(1, abs=1e-6)
    assert diff.cosine_min == pytest.approx(1, abs=1e-6)
    assert diff.top1_agreement == 1


def test_a_negated_candidate(tmp_path: Path, reference: Path, x: dict[str, np.ndarray]) -> None:
    candidate = onnx_factory.save(scaled_matmul(-1.0), tmp_path / "neg.onnx")
    result = compare([reference, candidate], x, names=["ref", "negated"], **FAST)
    (diff,) = result.rows[1].outputs
    ref = run(reference, x)
    assert diff.cosine_mean == pytest.approx(-1, abs=1e-6)
    assert diff.max_abs == pytest.approx(2 * np.abs(ref).max(), rel=1e-6)
    assert diff.top1_agreement == pytest.approx(float((ref.argmax(1) == (-ref).argmax(1)).mean()))
    assert diff.top1_agreement == 0
    problems = result.violations(min_cosine=0.5)
    assert problems == ["negated: output 'y' cosine -1.00000 < 0.5"]


@FUNCTION_FIXTURES
@given(offset=st.floats(-0.3, 0.3), threshold=st.floats(0.2, 0.8))
def test_mask_iou_on_thresholded_maps(tmp_path: Path, offset: float, threshold: float) -> None:
    reference = onnx_factory.save(offset_map(0.0), tmp_path / "map.onnx")
    candidate = onnx_factory.save(offset_map(offset), tmp_path / "map-shifted.onnx")
    maps = {"m": np.random.default_rng(1).random((6, 1, 8, 8), dtype=np.float32)}
    result = compare([reference, candidate], maps, mask_threshold=threshold, **FAST)
    (diff,) = result.rows[1].outputs
    ref, got = maps["m"].astype(np.float64), (maps["m"] + np.float32(offset)).astype(np.float64)
    a, b = ref >= threshold, got >= threshold
    union = np.logical_or(a, b).sum()
    assert diff.mask_iou == pytest.approx(np.logical_and(a, b).sum() / union if union else 1.0)
    assert diff.mask_agreement == pytest.approx((a == b).mean()), "per-pixel agreement"
    assert diff.top1_agreement is None, "a 4-D map is not a classifier output"
    assert diff.max_abs == pytest.approx(abs(offset), abs=1e-6)


def test_without_a_threshold_only_probability_maps_get_a_mask_iou(tmp_path: Path) -> None:
    """A 4-D output in [0, 1] is a probability map, thresholded at 0.5; one outside [0, 1] has no mask."""
    reference = onnx_factory.save(offset_map(0.0), tmp_path / "m.onnx")
    candidate = onnx_factory.save(offset_map(0.2), tmp_path / "m-shifted.onnx")
    probabilities = {"m": np.random.default_rng(2).random((4, 1, 8, 8), dtype=np.float32) * np.float32(0.8)}
    (diff,) = compare([reference, candidate], probabilities, **FAST).rows[1].outputs
    a, b = probabilities["m"] >= 0.5, probabilities["m"] + np.float32(0.2) >= 0.5
    assert diff.kind == "map"
    assert diff.mask_threshold == 0.5
    assert diff.mask_iou == pytest.approx(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())
    assert diff.mask_agreement == pytest.approx((a == b).mean())
    logits = {"m": np.random.default_rng(2).standard_normal((4, 1, 8, 8)).astype(np.float32) * 3}
    (diff,) = compare([reference, candidate], logits, **FAST).rows[1].outputs
    assert diff.kind == "values"
    assert diff.mask_iou is None
    assert diff.mask_agreement is None


def test_accuracy_and_retention_with_labels(teacher_vs_student: Comparison) -> None:
    images, labels = digits_test()
    counts = {}
    for name in ("digits-teacher", "digits-student"):
        with edgerun.load(name) as session:
            counts[name] = int((session.run(images)["logits"].argmax(axis=1) == labels).sum())
    teacher, student = teacher_vs_student.rows
    assert (teacher.correct, student.correct) == (counts["digits-teacher"], counts["digits-student"])
    assert teacher.accuracy == pytest.approx(counts["digits-teacher"] / 360)
    assert student.accuracy == pytest.approx(counts["digits-student"] / 360)
    assert teacher.retention_pct == pytest.approx(100)
    assert student.retention_pct == pytest.approx(counts["digits-student"] / counts["digits-teacher"] * 100)
    assert student.size_ratio == pytest.approx(
        models.path("digits-student").stat().st_size / models.path("digits-teacher").stat().st_size
    )
    (diff,) = student.outputs
    assert 0.9 < diff.top1_agreement < 1
    assert 0 < diff.cosine_mean < 1


def test_accuracy_drop_threshold(teacher_vs_student: Comparison) -> None:
    teacher, student = teacher_vs_student.rows
    drop = (teacher.accuracy - student.accuracy) * 100  # type: ignore[operator]
    assert drop > 0
    assert teacher_vs_student.violations(max_accuracy_drop=drop + 0.01) == []
    (problem,) = teacher_vs_student.violations(max_accuracy_drop=drop - 0.01)
    assert problem.startswith(f"digits-student: accuracy drop {drop:.2f} points > {drop - 0.01:g}")
    both = teacher_vs_student.violations(max_accuracy_drop=0, min_cosine=0.999)
    assert len(both) == 2
    assert "cosine" in both[1]


def test_accuracy_drop_needs_labels(reference: Path, x: dict[str, np.ndarray]) -> None:
    result = compare([reference, reference], x, **FAST)
    assert result.rows[0].accuracy is None
    assert result.rows[1].retention_pct is None
    assert result.violations(max_accuracy_drop=1.0) == [
        "--max-accuracy-drop needs labels (--labels, or labels in the data)"
    ]


def test_markdown_table(teacher_vs_student: Comparison) -> None:
    text = teacher_vs_student.markdown()
    lines = text.splitlines()
    assert lines[0].startswith("| model | precision | size | params | accuracy | retention |")
    assert "cosine" in lines[0]
    assert lines[1] == "|" + "---|" * 12
    teacher, student = lines[2], lines[3]
    assert teacher.startswith("| digits-teacher | fp32 |")
    assert teacher.count("| reference ") == 3
    assert student.startswith("| digits-student | fp32 |")
    assert all(line.count("|") == 13 for line in lines[:4])
    assert f"{teacher_vs_student.rows[1].accuracy:.2%}" in student
    assert "360 samples from test split" in text
    assert "relative to digits-teacher" in text
    assert text.endswith("\n")


def test_to_dict_is_plain_json(teacher_vs_student: Comparison) -> None:
    data = json.loads(json.dumps(teacher_vs_student.to_dict()))
    assert data["samples"] == 360
    assert data["source"] == "test split"
    assert data["iterations"] == 3
    assert [m["label"] for m in data["models"]] == ["digits-teacher", "digits-student"]
    student = data["models"][1]
    assert student["correct"] == teacher_vs_student.rows[1].correct
    assert set(student["latency_ms"]) >= {"p50", "p99", "mean"}
    assert student["outputs"][0]["name"] == "logits"
    assert student["outputs"][0]["cosine_mean"] == teacher_vs_student.rows[1].outputs[0].cosine_mean


def test_models_with_different_io_cannot_be_compared(tmp_path: Path) -> None:
    images, _ = digits_test()
    with pytest.raises(ModelError) as info:
        compare(["digits-teacher", "ppocr-cls"], {"image": images[:4]}, **FAST)
    message = str(info.value)
    assert message.startswith(str(models.path("ppocr-cls")))
    assert "cannot compare it with digits-teacher: different inputs or outputs" in message
    mm = onnx_factory.save(onnx_factory.matmul_with_weight(), tmp_path / "mm.onnx")
    other = onnx_factory.save(onnx_factory.two_input_add(), tmp_path / "other.onnx")
    with pytest.raises(ModelError, match=r"other\.onnx: cannot compare it with mm\.onnx: .* -> .* vs x float32"):
        compare([mm, mm, other], {"x": np.zeros((2, 4), np.float32)}, **FAST)


def test_compare_needs_two_models(reference: Path, x: dict[str, np.ndarray]) -> None:
    with pytest.raises(ModelError, match="compare needs a reference and at least one candidate"):
        compare([reference], x)


def test_model_at_precision(tmp_path: Path) -> None:
    with open_for_compare("digits-teacher@int8") as session:
        assert session.plan.precision == "int8"
        assert session.model.precision == "int8"
    with open_for_compare("digits-teacher@fp16", threads=1) as session:
        assert session.plan.precision == "fp16"
        assert session.plan.threads == 1
    odd = tmp_path / "v1@beta"
    odd.mkdir()
    path = onnx_factory.save(onnx_factory.matmul_with_weight(), odd / "mm.onnx")
    with open_for_compare(str(path)) as session:  # '@' without a precision is part of the path
        assert session.model.path == path
    with pytest.raises(EdgerunError):
        open_for_compare("digits-teacher@int3")


def test_int8_and_fp16_candidates_of_the_teacher() -> None:
    images, labels = digits_test()
    result = compare(
        ["digits-teacher", "digits-teacher@int8", "digits-teacher@fp16"], {"image": images}, labels=labels, **FAST
    )
    assert [r.precision for r in result.rows] == ["fp32", "int8", "fp16"]
    for row in result.rows[1:]:
        assert row.outputs[0].cosine_mean > 0.999, row.label
        assert row.outputs[0].top1_agreement >= 0.99, row.label  # type: ignore[operator]
        assert row.size_ratio < 0.6, row.label
    assert result.violations(max_accuracy_drop=1.0, min_cosine=0.999) == []


def test_labels_of_the_wrong_length_are_an_error() -> None:
    images, labels = digits_test()
    with pytest.raises(EdgerunError, match="labels"):
        compare(["digits-teacher", "digits-student"], {"image": images}, labels=labels[:10], **FAST)


# --- task-aware quality: detectors, budgets, the precision guard ------------------------------------------


@pytest.fixture(scope="module")
def detector_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The YOLO-style test detector in FP32, naively quantized (per-tensor final Concat), and with it kept float."""
    from edgerun.precision.calibration import CalibrationData
    from edgerun.precision.quantize import QuantizeOptions, quantize

    from ..precision_models import YOLO_CONCAT_NODE, yolo_detector, yolo_inputs

    folder = tmp_path_factory.mktemp("detector")
    fp32 = onnx_factory.save(yolo_detector(), folder / "yolo.onnx")
    calibration = CalibrationData({"images": yolo_inputs(16, seed=1)})
    quantize(fp32, folder / "naive.onnx", calibration, QuantizeOptions(target="cpu"))
    quantize(fp32, folder / "head.onnx", calibration, QuantizeOptions(target="cpu", exclude=(YOLO_CONCAT_NODE,)))
    return fp32, folder / "naive.onnx", folder / "head.onnx"


def test_a_detector_comparison_reports_the_detections_kept(detector_files: tuple[Path, Path, Path]) -> None:
    """The issue's failure: naive INT8 of a YOLO-style head keeps few detections behind a cosine of 0.9999."""
    from edgerun.quality import QualityBudget

    from ..precision_models import yolo_inputs

    fp32, naive, head = detector_files
    result = compare([fp32, naive, head], {"images": yolo_inputs(8)}, names=["fp32", "naive", "head"], **FAST)
    ref, broken, fixed = result.rows
    (lost,), (kept,) = broken.outputs, fixed.outputs
    assert lost.kind == kept.kind == "detections"
    assert lost.cosine_mean > 0.999, "a global metric hides the loss"
    assert lost.detections == kept.detections
    assert lost.detections is not None
    assert lost.detections > 50
    assert lost.detections_kept is not None
    assert lost.detections_kept < 0.5
    assert kept.detections_kept is not None
    assert kept.detections_kept >= 0.9
    assert result.quality_columns() == ["cosine (mean)", "detections kept"]
    assert result.key_columns() == ["model", "size", "p50 ms", "speed-up", "cosine (mean)", "detections kept"]
    cells = result.cells()
    assert cells[0]["detections kept"] == "reference"
    assert cells[1]["detections kept"] == f"{lost.detections_kept:.1%} of {lost.detections}"
    assert "fp32 nodes" not in cells[0], "no guard ran on files given as they are"
    assert (ref.kept_fp32, ref.guard, broken.kept_fp32, broken.guard) == (None, None, None, None)
    problems = result.violations(budget=QualityBudget.for_precision("int8"))
    assert f"naive: output 'output0' keeps {round(lost.detections_kept * lost.detections)} of {lost.detections}" in (
        " ".join(problems)
    )
    assert not any(p.startswith("head:") for p in problems), problems
    assert result.violations(min_cosine=0.999) == [], "what --min-cosine alone would have certified"
    assert "detections kept" in result.markdown().splitlines()[0]


def test_the_guard_columns_show_nodes_kept_in_fp32(reference: Path, x: dict[str, np.ndarray]) -> None:
    from dataclasses import replace

    from edgerun.compare.comparison import guard_of

    result = compare([reference, reference], x, **FAST, names=["fp32", "fp16 mixed"])
    with edgerun.load(reference) as session:
        plan = session.plan
    assert guard_of(plan) == (None, None, None)
    mixed = replace(plan, precision="fp16", quality={"passed": True, "kept_fp32": ["a", "b", "c"], "total_nodes": 330})
    clean = replace(plan, precision="fp16", quality={"passed": True, "kept_fp32": [], "total_nodes": 330})
    fallback = replace(plan, quality={"passed": False, "kept_fp32": [], "total_nodes": 330, "fallback": "no mix"})
    assert guard_of(mixed) == (3, 330, "mixed")
    assert guard_of(clean) == (0, 330, "passed")
    assert guard_of(fallback) == (0, 330, "fallback: no mix")
    assert guard_of(replace(plan, quality={"passed": False, "kept_fp32": [], "total_nodes": 9})) == (0, 9, "fallback")
    candidate = replace(result.rows[1], kept_fp32=3, total_nodes=330, guard="mixed")
    served_fp32 = replace(result.rows[1], label="fp16 fell back", kept_fp32=0, total_nodes=330, guard="fallback: x")
    guarded = replace(result, rows=[result.rows[0], candidate, served_fp32])
    assert guarded.has_guard
    assert [row["fp32 nodes"] for row in guarded.cells()] == ["-", "3/330", "fp32 (fallback)"]
    assert guarded.key_columns()[-1] == "fp32 nodes"
    assert "fp32 nodes" not in result.cells()[1]
    assert json.loads(json.dumps(guarded.to_dict()))["models"][1]["kept_fp32"] == 3


def test_a_budget_in_violations(reference: Path, x: dict[str, np.ndarray], tmp_path: Path) -> None:
    from edgerun.quality import QualityBudget

    candidate = onnx_factory.save(scaled_matmul(-1.0), tmp_path / "neg.onnx")
    result = compare([reference, candidate], x, names=["ref", "negated"], **FAST)
    problems = result.violations(budget=QualityBudget.for_precision("int8"))
    assert problems[0].startswith("negated: output 'y' has a mean cosine similarity of -1.00000")
    assert any("top-1 agreement of 0.00%" in p for p in problems)
    assert compare([reference, reference], x, **FAST).violations(budget=QualityBudget.for_precision("fp16")) == []
