"""`load(..., precision=...)` through the guard: checked models, figures in the plan, FP32 when nothing passes."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

import edgerun
from edgerun import models
from edgerun.data.preprocess import PreprocessSpec
from edgerun.data.samples import load_samples
from edgerun.runtime.modelfile import ModelFile

REPO = Path(__file__).resolve().parents[2]
IMPOSSIBLE = {"min_cosine": 1.0, "min_top1": 1.0}
"""Exact FP32 outputs: only a model with (nearly) every node in FP32 meets it, which is no conversion."""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EDGERUN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_ppocr_det_fp16_is_guarded_and_matches_fp32(cache: Path) -> None:
    """The issue's detector: plain FP16 gave mean cosine 0.15; the guard keeps its one culprit in FP32."""
    with edgerun.load("ppocr-det", precision="fp16") as fp16, edgerun.load("ppocr-det") as fp32:
        quality = fp16.plan.quality
        assert quality is not None
        assert quality["passed"] is True
        assert quality["kept_fp32"] == ["p2o.BatchNormalization.1"]
        assert "9.79e+07 > 65504" in quality["kept"][0]["why"]
        assert quality["before"][0]["cosine_mean"] < 0.9  # what TensorRT would have been given
        assert quality["after"][0]["mask_iou"] >= 0.95
        assert "1 of 330 nodes kept in FP32" in fp16.plan.describe()
        card = models.card("ppocr-det")
        for size in (224, 480):
            spec = PreprocessSpec.from_dict({**card.preprocessing, "height": size, "width": size})
            images = load_samples(REPO / "calibration/photos", fp32.inputs, preprocess=spec).inputs["x"]
            want = np.concatenate([fp32.run(image[None])["sigmoid_0.tmp_0"] for image in images])
            got = np.concatenate([fp16.run(image[None])["sigmoid_0.tmp_0"] for image in images])
            a, b = want >= 0.3, got >= 0.3
            assert np.logical_and(a, b).sum() / np.logical_or(a, b).sum() >= 0.95, size


def test_a_cached_model_loads_without_checking_again(cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    with edgerun.load("digits-teacher", precision="fp16") as first:
        assert first.plan.quality is not None
        summary = first.plan.quality["summary"]
    with caplog.at_level(logging.DEBUG, logger="edgerun"), edgerun.load("digits-teacher", precision="fp16") as again:
        assert again.plan.quality is not None
        assert again.plan.quality["summary"] == summary  # from the manifest, not a new check
        assert "from the cache" in " ".join(again.plan.reasons)


def test_no_mix_meets_the_budget_so_the_plan_falls_back_to_fp32(cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="edgerun"):
        session = edgerun.load("digits-teacher", precision="fp16", max_quality_loss=IMPOSSIBLE)
    with session:
        assert session.plan.precision == "fp32"
        assert session.plan.artifact is None
        assert ModelFile.open(models.path("digits-teacher")).sha256 == session.model.sha256
        (fallback,) = [f for f in session.plan.fallbacks if "quality check" in f]
        assert "fp16 failed its quality check against fp32, running fp32" in fallback
        assert "below the budget's 1" in fallback
        assert session.plan.quality is not None
        assert session.plan.quality["passed"] is False
    assert sum("failed its quality check" in r.message for r in caplog.records) == 1
    # the verdict is cached: a second load falls back at once, with the same reason
    with edgerun.load("digits-teacher", precision="fp16", max_quality_loss=IMPOSSIBLE) as again:
        assert again.plan.precision == "fp32"
        assert again.plan.fallbacks[-1] == fallback
    assert list(cache.glob("models/*/fp16-*.verdict"))


def test_the_budget_is_part_of_the_cache_key(cache: Path) -> None:
    with edgerun.load("digits-teacher", precision="fp16", max_quality_loss=IMPOSSIBLE) as refused:
        assert refused.plan.precision == "fp32"
    with edgerun.load("digits-teacher", precision="fp16") as default:
        assert default.plan.precision == "fp16"


def test_an_unknown_budget_field_is_a_config_error(cache: Path) -> None:
    with pytest.raises(edgerun.ConfigError, match="min_cosinus"):
        edgerun.load("digits-teacher", precision="fp16", max_quality_loss={"min_cosinus": 0.9})


def test_ppocr_det_int8_invents_text_on_photos_so_fp32_is_served(cache: Path) -> None:
    """Calibrated on text lines, INT8 finds text in china.jpg where FP32 finds none; no mix under half the nodes
    fixes it at the card's 480x480, so load() serves FP32 and says why instead of returning wrong masks."""
    with edgerun.load("ppocr-det", precision="int8") as session:
        assert session.plan.precision == "fp32"
        assert session.plan.quality is not None
        assert session.plan.quality["passed"] is False
        assert any("int8 failed its quality check" in f and "check set" in f for f in session.plan.fallbacks)


def test_info_shows_the_recorded_check_once_a_load_made_it(cache: Path) -> None:
    from edgerun.info import model_report
    from edgerun.runtime.device import current_device

    def summary(precision: str) -> object:
        plan = model_report("digits-teacher", current_device(), precision=precision)["plan"]
        assert plan["converted"] is (precision != "fp32")
        return None if plan["quality"] is None else plan["quality"]["summary"]

    assert summary("fp16") is None  # not made yet: info never converts
    assert not list(cache.glob("models/*/*.onnx"))
    with edgerun.load("digits-teacher", precision="fp16") as session:
        assert session.plan.quality is not None
        made = session.plan.quality["summary"]
    assert summary("fp16") == made
    assert summary("fp32") is None
    with edgerun.load("digits-teacher", precision="fp16", max_quality_loss=IMPOSSIBLE):
        pass
    assert summary("fp16") == made, "another budget is another cache entry"
