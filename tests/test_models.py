"""Bundled models: cards complete, licenses present, and the cards' accuracy re-measured from data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgerun
from edgerun import models
from edgerun.compare.accuracy import classification_accuracy, text_direction_set
from edgerun.runtime.modelfile import ModelFile

REPO = Path(__file__).resolve().parents[1]


def test_bundled_names_and_default() -> None:
    assert models.names() == ("digits-student", "digits-teacher", "ppocr-cls", "ppocr-det", "silero-vad")
    assert models.DEFAULT in models.names()
    assert models.path("ppocr-cls").name == "model.onnx"


@pytest.mark.parametrize("name", models.names())
def test_card_is_complete_and_licensed(name: str) -> None:
    card = models.card(name)
    for field in ("title", "task", "source", "license", "summary"):
        assert getattr(card, field), f"{name}: card field {field} is empty"
    assert card.path.is_file()
    license_names = {p.name for p in card.license_files}
    assert {"LICENSE", "NOTICE"} <= license_names
    license_text = (card.folder / "LICENSE").read_text()
    assert any(mark in license_text for mark in ("Apache License", "MIT License")), f"{name}: {card.license}"
    model = ModelFile.open(card.path)
    assert list(card.input_shapes) == [spec.name for spec in model.inputs]
    for spec in model.inputs:  # each typical shape fits the declared one
        assert spec.concrete_shape(None, card.input_shapes) == tuple(card.input_shapes[spec.name])
    if card.preprocessing:  # images: the preprocessing produces what the (only) input takes
        image_spec = edgerun.PreprocessSpec.from_dict(card.preprocessing)
        (only_input,) = model.inputs
        assert tuple(card.input_shapes[only_input.name][1:]) == image_spec.sample_shape
    if card.accuracy is None:  # allowed only where no labelled data exists, and the card must say so
        assert any("accuracy" in note for note in card.notes), f"{name}: no accuracy and no note why"
    if card.calibration is not None:
        assert (card.folder / card.calibration["source"]).exists(), f"{name}: calibration data missing"


def test_digits_accuracy_matches_the_cards() -> None:
    data = np.load(models.card("digits-student").folder / "digits-test.npz")
    images, labels = data["images"], data["labels"]
    assert images.shape == (360, 1, 8, 8)
    assert images.dtype == np.float32
    assert np.bincount(labels).min() >= 35, "stratified split: every digit is present"
    for name in ("digits-teacher", "digits-student"):
        card = models.card(name)
        assert card.accuracy is not None
        with edgerun.load(name) as session:
            result = classification_accuracy(session, images, labels)
        assert result.samples == card.accuracy["samples"] == 360
        assert result.correct == card.accuracy["correct"], f"{name}: card says {card.accuracy['correct']}"


def test_student_is_a_real_distillation_of_the_teacher() -> None:
    teacher, student = models.card("digits-teacher"), models.card("digits-student")
    assert teacher.accuracy is not None
    assert student.accuracy is not None
    ratio = teacher.size["params"] / student.size["params"]
    assert 5 <= ratio <= 10, f"student should be 5-10x smaller, is {ratio:.1f}x"
    assert student.size["bytes"] < teacher.size["bytes"] / 5
    assert student.accuracy["value"] / teacher.accuracy["value"] >= 0.9
    assert student.accuracy["retention_vs_teacher"] == pytest.approx(
        student.accuracy["value"] / teacher.accuracy["value"], abs=1e-4
    )


def test_ppocr_text_direction_accuracy_matches_the_card() -> None:
    card = models.card("ppocr-cls")
    assert card.accuracy is not None
    images = sorted((REPO / card.accuracy["data_file"]).glob("*.jpg"))
    assert len(images) * 2 == card.accuracy["samples"]
    inputs, labels = text_direction_set(images, edgerun.PreprocessSpec.from_dict(card.preprocessing))
    with edgerun.load("ppocr-cls") as session:
        result = classification_accuracy(session, inputs, labels)
    # Decoding JPEGs may differ by a grey level between libjpeg builds: allow one flipped line.
    assert abs(result.correct - card.accuracy["correct"]) <= 1
    assert result.accuracy > 0.9


def test_ppocr_preprocessing_matches_paddleocr_reference() -> None:
    """The card's spec reproduces PaddleOCR's resize_norm_img for the classifier exactly."""
    import math

    import cv2

    image = cv2.imread(str(REPO / "calibration/textlines/line_003.jpg"))
    spec = edgerun.PreprocessSpec.from_dict(models.card("ppocr-cls").preprocessing)
    h, w = image.shape[:2]
    resized_w = min(192, math.ceil(48 * w / h))
    reference = cv2.resize(image, (resized_w, 48)).astype("float32").transpose(2, 0, 1) / 255
    reference = (reference - 0.5) / 0.5
    padded = np.zeros((3, 48, 192), np.float32)
    padded[:, :, :resized_w] = reference
    np.testing.assert_allclose(spec.apply(image), padded, atol=1e-6)


def test_every_bundled_file_is_in_the_package_data() -> None:
    """A file under edgerun/models/ that no package-data glob matches would be missing from the wheel."""
    import re

    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    line = re.search(r'^"edgerun\.models" = \[(.*)\]$', pyproject, re.MULTILINE)
    assert line is not None, "pyproject.toml names no package data for edgerun.models"
    globs = [re.escape(g).replace(r"\*", "[^/]*") for g in re.findall(r'"([^"]+)"', line.group(1))]  # * stops at /
    root = models.card(models.DEFAULT).folder.parent
    missing = [
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file()
        and path.suffix not in (".py", ".pyc")
        and not any(re.fullmatch(g, path.relative_to(root).as_posix()) for g in globs)
    ]
    assert not missing, f"not in pyproject's package data (so not in a wheel): {missing}"
