"""``tune``: every variant built and measured, the fastest within the quality budget written out."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgerun
from edgerun import models
from edgerun.compare import tune as tune_module
from edgerun.compare.comparison import Comparison
from edgerun.compare.tune import TuneResult, Variant, default_variants, tune
from edgerun.precision.calibration import CalibrationData, open_calibration
from edgerun.precision.quantize import QuantizeOptions
from edgerun.quality import QualityBudget
from edgerun.runtime.modelfile import ModelFile

from .. import onnx_factory
from ..precision_helpers import DIGITS_CALIB, conv_map, digits_test

TEACHER = models.path("digits-teacher")


@pytest.fixture(scope="module")
def calib() -> CalibrationData:
    return open_calibration(DIGITS_CALIB, ModelFile.open(TEACHER).inputs)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory, calib: CalibrationData) -> TuneResult:
    images, labels = digits_test()
    return tune(
        TEACHER,
        tmp_path_factory.mktemp("tune") / "best" / "teacher.onnx",
        calibration=calib,
        inputs={"image": images},
        labels=labels,
        max_accuracy_drop=1.0,
        source="digits test split",
        iterations=5,
    )


def test_default_variants() -> None:
    variants = default_variants("tensorrt")
    assert variants[0] == Variant("fp16", "fp16")
    int8 = [v for v in variants if v.precision == "int8"]
    assert len(int8) == 5
    assert all(v.quantization is not None and v.quantization.target == "tensorrt" for v in int8)
    assert {v.quantization.method for v in int8 if v.quantization} == {"minmax", "entropy", "percentile"}
    assert any(v.quantization and v.quantization.keep_head_float for v in int8)
    assert len({v.name for v in variants}) == len(variants)
    assert all(v.quantization and v.quantization.target == "cpu" for v in default_variants()[1:])


def test_tune_with_labels_chooses_a_variant_within_budget(tuned: TuneResult) -> None:
    labels = [row.label for row in tuned.comparison.rows]
    assert labels == ["fp32 (reference)"] + [v.name for v in default_variants()]
    assert tuned.skipped == {}
    assert tuned.criterion == "accuracy points vs the reference"
    assert tuned.chosen in labels
    assert tuned.drops[tuned.chosen] <= 1.0
    ref = tuned.comparison.reference
    for row in tuned.comparison.rows:
        assert row.accuracy is not None
        assert tuned.drops[row.label] == pytest.approx(max(0.0, (ref.accuracy - row.accuracy) * 100))  # type: ignore[operator]
    for name, why in tuned.refused.items():
        row = next(row for row in tuned.comparison.rows if row.label == name)
        assert why == "; ".join(QualityBudget.for_precision(row.precision).violations(row.outputs))
    eligible = [
        row for row in tuned.comparison.rows if tuned.drops[row.label] <= 1.0 and row.label not in tuned.refused
    ]
    assert tuned.chosen == min(eligible, key=lambda row: row.latency_ms.p50).label, "the fastest eligible one"


def test_the_chosen_model_is_written_and_runs(tuned: TuneResult) -> None:
    assert tuned.output.is_file()
    chosen = next(row for row in tuned.comparison.rows if row.label == tuned.chosen)
    written = ModelFile.open(tuned.output)
    assert written.precision == chosen.precision
    assert written.size_bytes == chosen.size_bytes
    if tuned.chosen == "fp32 (reference)":
        assert tuned.output.read_bytes() == TEACHER.read_bytes()
    images, labels = digits_test()
    with edgerun.load(tuned.output) as session:
        correct = int((session.run(images)["logits"].argmax(axis=1) == labels).sum())
    assert correct == chosen.correct


def test_tune_result_as_json(tuned: TuneResult) -> None:
    data = json.loads(json.dumps(tuned.to_dict()))
    assert data["chosen"] == tuned.chosen
    assert data["output"] == str(tuned.output)
    assert data["drops"] == tuned.drops
    assert data["comparison"]["source"] == "digits test split"
    assert len(data["comparison"]["models"]) == 7


def test_an_over_budget_variant_is_never_chosen_even_when_fastest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real builds and a real comparison; only the timings are replaced, so the choice is deterministic."""
    images, labels = digits_test()
    with np.load(DIGITS_CALIB) as raw:
        squeezed = CalibrationData({"image": raw["images"] * np.float32(0.02)})  # ranges far too small: clipping
    real_compare = tune_module.compare
    order = {"int8 clipped": 0.01, "fp16": 0.02}

    def compare_with_fixed_timings(*args: Any, **kwargs: Any) -> Comparison:
        result = real_compare(*args, **kwargs)
        rows = [replace(row, latency_ms=replace(row.latency_ms, p50=order.get(row.label, 1.0))) for row in result.rows]
        return replace(result, rows=rows)

    monkeypatch.setattr(tune_module, "compare", compare_with_fixed_timings)
    result = tune(
        TEACHER,
        tmp_path / "t.onnx",
        calibration=squeezed,
        inputs={"image": images},
        labels=labels,
        max_accuracy_drop=1.0,
        variants=[Variant("int8 clipped", "int8", QuantizeOptions(target="cpu")), Variant("fp16", "fp16")],
        iterations=2,
    )
    assert result.drops["int8 clipped"] > 50, "the clipped INT8 model is useless"
    assert result.drops["fp16"] <= 1.0
    assert result.chosen == "fp16", "the fastest within budget, not the fastest overall"
    assert ModelFile.open(result.output).precision == "fp16"


def test_without_labels_the_criterion_is_top1_agreement(tmp_path: Path, calib: CalibrationData) -> None:
    images, _ = digits_test()
    variants = [Variant("fp16", "fp16"), Variant("int8", "int8", QuantizeOptions(target="cpu"))]
    result = tune(
        TEACHER, tmp_path / "t.onnx", calibration=calib, inputs={"image": images[:100]}, variants=variants, iterations=3
    )
    assert result.criterion == "100 x (1 - top-1 agreement with the reference)"
    assert result.comparison.reference.accuracy is None
    for row in result.comparison.rows[1:]:
        assert result.drops[row.label] == pytest.approx((1 - row.outputs[0].top1_agreement) * 100)  # type: ignore[operator]
    assert result.drops["fp32 (reference)"] == 0
    assert result.drops[result.chosen] <= 1.0


def test_non_classifier_outputs_use_cosine(tmp_path: Path) -> None:
    path = onnx_factory.save(conv_map(), tmp_path / "conv.onnx")
    rng = np.random.default_rng(0)
    calibration = open_calibration(rng.random((16, 1, 8, 8), dtype=np.float32), ModelFile.open(path).inputs)
    result = tune(
        path,
        tmp_path / "best.onnx",
        calibration=calibration,
        inputs={"x": rng.random((8, 1, 8, 8), dtype=np.float32)},
        variants=[Variant("int8", "int8", QuantizeOptions())],
        max_accuracy_drop=0.5,
        iterations=3,
    )
    assert result.criterion == "100 x (1 - mean cosine similarity to the reference)"
    row = result.comparison.rows[1]
    assert result.drops["int8"] == pytest.approx((1 - row.outputs[0].cosine_mean) * 100)


def test_a_zero_budget_keeps_what_loses_nothing(tmp_path: Path, calib: CalibrationData) -> None:
    images, labels = digits_test()
    result = tune(
        TEACHER,
        tmp_path / "t.onnx",
        calibration=calib,
        inputs={"image": images},
        labels=labels,
        max_accuracy_drop=0.0,
        variants=[Variant("fp16", "fp16")],
        iterations=3,
    )
    assert result.drops[result.chosen] == 0


def test_variants_that_cannot_be_built_are_skipped_with_the_reason(tmp_path: Path, calib: CalibrationData) -> None:
    images, _ = digits_test()
    variants = [
        Variant("bf16", "bf16"),
        Variant("int8 bad exclude", "int8", QuantizeOptions(exclude=("Nope",))),
        Variant("int8 all float", "int8", QuantizeOptions(exclude=("Conv", "Gemm"))),
        Variant("fp16", "fp16"),
    ]
    result = tune(
        TEACHER, tmp_path / "t.onnx", calibration=calib, inputs={"image": images[:50]}, variants=variants, iterations=3
    )
    assert set(result.skipped) == {"bf16", "int8 bad exclude", "int8 all float"}
    assert "unknown variant precision bf16" in result.skipped["bf16"]
    assert "--exclude 'Nope' names no node" in result.skipped["int8 bad exclude"]
    assert "INT8 quantization quantized nothing" in result.skipped["int8 all float"]
    assert [row.label for row in result.comparison.rows] == ["fp32 (reference)", "fp16"]
    assert result.chosen in ("fp32 (reference)", "fp16")


def test_when_no_variant_can_be_built_the_reasons_are_reported(tmp_path: Path, calib: CalibrationData) -> None:
    images, _ = digits_test()
    variants = [Variant("int8 all float", "int8", QuantizeOptions(exclude=("Conv", "Gemm")))]
    with pytest.raises(edgerun.ConversionError, match="no variant could be built") as caught:
        tune(TEACHER, tmp_path / "t.onnx", calibration=calib, inputs={"image": images[:50]}, variants=variants)
    assert "int8 all float: " in str(caught.value)
    assert "quantized nothing" in str(caught.value)


def test_a_negative_budget_is_a_config_error(tmp_path: Path, calib: CalibrationData) -> None:
    images, labels = digits_test()
    with pytest.raises(edgerun.EdgerunError, match="max"):
        tune(
            TEACHER,
            tmp_path / "t.onnx",
            calibration=calib,
            inputs={"image": images[:50]},
            labels=labels[:50],
            max_accuracy_drop=-1.0,
            variants=[Variant("fp16", "fp16")],
            iterations=3,
        )


def test_tune_never_certifies_a_detector_that_loses_detections(tmp_path: Path) -> None:
    """The issue: naive INT8 of a YOLO-style head had a mean cosine of 0.9993 and was certified with "quality
    drop 0.07 points". Now its drop counts the detections lost, and its INT8 budget refuses it at any points budget."""
    from ..precision_models import YOLO_CONCAT_NODE, yolo_detector, yolo_inputs

    path = onnx_factory.save(yolo_detector(), tmp_path / "yolo.onnx")
    calibration = CalibrationData({"images": yolo_inputs(16, seed=1)})
    variants = [
        Variant("int8 naive", "int8", QuantizeOptions(target="cpu")),
        Variant("int8 float head", "int8", QuantizeOptions(target="cpu", exclude=(YOLO_CONCAT_NODE,))),
    ]
    result = tune(
        path,
        tmp_path / "best.onnx",
        calibration=calibration,
        inputs={"images": yolo_inputs(8)},
        variants=variants,
        max_accuracy_drop=100.0,
        iterations=2,
    )
    rows = {row.label: row for row in result.comparison.rows}
    # the guard mixed the naive variant (its plain conversion keeps < 50%: see test_guard) before tune measured it
    assert rows["int8 naive"].guard == "mixed"
    assert rows["int8 naive"].kept_fp32 is not None
    assert rows["int8 naive"].kept_fp32 >= 1
    for label in ("int8 naive", "int8 float head"):
        (output,) = rows[label].outputs
        assert output.detections_kept is not None
        assert output.detections_kept >= 0.9, f"{label} certified while losing detections"
        assert result.drops[label] >= 100 * (1 - output.detections_kept)
    assert "100 x (1 - share of FP32 detections kept)" in result.criterion
    cells = {row["model"]: row for row in result.cells()}
    assert cells["int8 naive"]["fp32 nodes"] == f"{rows['int8 naive'].kept_fp32}/{rows['int8 naive'].total_nodes}"
    assert "fp32 nodes" in result.key_columns()


def test_a_given_budget_replaces_the_precision_defaults(tmp_path: Path, calib: CalibrationData) -> None:
    images, _ = digits_test()
    impossible = QualityBudget.for_precision("fp16").with_overrides(min_cosine=1.0, min_top1=1.0)
    # the guard holds every variant to the given budget: no mix meets it, so none is built
    with pytest.raises(edgerun.ConversionError, match="no variant could be built") as caught:
        tune(
            TEACHER,
            tmp_path / "t.onnx",
            calibration=calib,
            inputs={"image": images[:60]},
            variants=[Variant("int8", "int8", QuantizeOptions(target="cpu"))],
            max_accuracy_drop=100.0,
            iterations=2,
            budget=impossible,
        )
    assert "below the budget's 1" in str(caught.value)
