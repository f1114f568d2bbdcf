"""The calibration range cache: keyed by model + data + method, reused byte for byte, rebuilt when corrupt."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgerun import models
from edgerun.data.preprocess import PreprocessSpec
from edgerun.errors import ConversionError
from edgerun.precision.calibration import CalibrationData, open_calibration
from edgerun.precision.quantize import QuantizeOptions, quantize
from edgerun.runtime.modelfile import ModelFile

from ..precision_helpers import DIGITS_CALIB, DIGITS_FOLDER

TEACHER = models.path("digits-teacher")


@pytest.fixture(scope="module")
def calib() -> CalibrationData:
    return open_calibration(DIGITS_CALIB, ModelFile.open(TEACHER).inputs)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, calib: CalibrationData) -> dict[str, Any]:
    """A minmax quantization from an empty cache: its model bytes and its cache file's text."""
    folder = tmp_path_factory.mktemp("clean")
    result = quantize(TEACHER, folder / "clean.onnx", calib, cache=folder / "ranges")
    assert result.calibration_cache is not None
    return {"model": result.output.read_bytes(), "cache": result.calibration_cache.read_text()}


def test_second_quantize_is_a_hit_with_identical_bytes(tmp_path: Path, calib: CalibrationData) -> None:
    cache = tmp_path / "ranges"
    first = quantize(TEACHER, tmp_path / "a.onnx", calib, cache=cache)
    second = quantize(TEACHER, tmp_path / "b.onnx", calib, cache=cache)
    assert first.calibration_cache_hit is False
    assert second.calibration_cache_hit is True
    assert first.calibration_cache == second.calibration_cache
    assert first.calibration_cache is not None
    assert first.calibration_cache.parent == cache
    assert [p.name for p in cache.iterdir()] == [first.calibration_cache.name]
    assert first.output.read_bytes() == second.output.read_bytes()


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_methods_are_cached_faithfully(tmp_path: Path, calib: CalibrationData, method: str) -> None:
    options = QuantizeOptions(method=method)
    first = quantize(TEACHER, tmp_path / "a.onnx", calib, options, cache=tmp_path)
    second = quantize(TEACHER, tmp_path / "b.onnx", calib, options, cache=tmp_path)
    assert (first.calibration_cache_hit, second.calibration_cache_hit) == (False, True)
    assert first.output.read_bytes() == second.output.read_bytes()


def test_the_default_cache_lives_under_edgerun_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calib: CalibrationData
) -> None:
    monkeypatch.setenv("EDGERUN_CACHE_DIR", str(tmp_path / "cache"))
    result = quantize(TEACHER, tmp_path / "a.onnx", calib)
    assert result.calibration_cache is not None
    assert result.calibration_cache.parent == tmp_path / "cache" / "calibration"
    assert result.calibration_cache.name.startswith(ModelFile.open(TEACHER).sha256[:16] + "-minmax-")
    assert quantize(TEACHER, tmp_path / "b.onnx", calib).calibration_cache_hit is True


def test_the_same_data_from_another_source_is_a_hit(tmp_path: Path, calib: CalibrationData) -> None:
    quantize(TEACHER, tmp_path / "a.onnx", calib, cache=tmp_path)
    with np.load(DIGITS_CALIB) as raw:
        same = CalibrationData({"image": raw["images"].copy()}, batch_size=8, source="<arrays>")
    assert quantize(TEACHER, tmp_path / "b.onnx", same, cache=tmp_path).calibration_cache_hit is True


def test_options_that_do_not_change_ranges_reuse_them(tmp_path: Path, calib: CalibrationData) -> None:
    quantize(TEACHER, tmp_path / "a.onnx", calib, cache=tmp_path)
    for options in (
        QuantizeOptions(per_channel=True),
        QuantizeOptions(target="cpu"),
        QuantizeOptions(keep_head_float=True),
    ):
        assert quantize(TEACHER, tmp_path / "b.onnx", calib, options, cache=tmp_path).calibration_cache_hit, options


def test_different_data_method_or_model_is_a_miss(tmp_path: Path, calib: CalibrationData) -> None:
    model = ModelFile.open(TEACHER)
    base = quantize(TEACHER, tmp_path / "base.onnx", calib, cache=tmp_path)
    subset = open_calibration(DIGITS_CALIB, model.inputs, samples=128)
    spec = PreprocessSpec.from_dict(models.card("digits-teacher").preprocessing)
    folder = open_calibration(DIGITS_FOLDER, model.inputs, preprocess=spec)
    misses = [
        quantize(TEACHER, tmp_path / "subset.onnx", subset, cache=tmp_path),
        quantize(TEACHER, tmp_path / "folder.onnx", folder, cache=tmp_path),
        quantize(TEACHER, tmp_path / "pct.onnx", calib, QuantizeOptions(method="percentile"), cache=tmp_path),
        quantize(models.path("digits-student"), tmp_path / "student.onnx", calib, cache=tmp_path),
    ]
    assert [r.calibration_cache_hit for r in misses] == [False] * 4
    files = {base.calibration_cache} | {r.calibration_cache for r in misses}
    assert len(files) == 5, "each key has its own file"
    assert base.output.read_bytes() != misses[0].output.read_bytes(), "other data, other ranges"


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(index=st.integers(0, 255 * 64), delta=st.floats(0.01, 2.0))
def test_one_changed_value_is_a_miss(tmp_path: Path, calib: CalibrationData, index: int, delta: float) -> None:
    folder = tmp_path / f"ranges-{index}-{delta}"
    quantize(TEACHER, tmp_path / "a.onnx", calib, cache=folder)
    changed = calib.samples["image"].copy()
    changed.flat[index] += np.float32(delta)
    again = quantize(TEACHER, tmp_path / "b.onnx", CalibrationData({"image": changed}), cache=folder)
    assert again.calibration_cache_hit is False


CORRUPTIONS = {
    "truncated": lambda text: text[: len(text) // 2],
    "empty": lambda text: "",
    "binary": lambda text: "\x00\xff\xfe garbage",
    "json object without ranges": lambda text: "{}",
    "json list": lambda text: "[]",
    "a range that is not a number": lambda text: json.dumps(_first_float_to_text(json.loads(text))),
}


def _first_float_to_text(node: Any, done: list[bool] | None = None) -> Any:
    """The JSON value with its first float replaced by "x" (ORT's range format or edgerun's, on older ORT)."""
    done = [False] if done is None else done
    if isinstance(node, float) and not done[0]:
        done[0] = True
        return "x"
    if isinstance(node, dict):
        return {key: _first_float_to_text(value, done) for key, value in node.items()}
    if isinstance(node, list):
        return [_first_float_to_text(value, done) for value in node]
    return node


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupt_cache_file_is_rebuilt_with_a_warning(
    tmp_path: Path, calib: CalibrationData, clean: dict[str, Any], caplog: pytest.LogCaptureFixture, corruption: str
) -> None:
    first = quantize(TEACHER, tmp_path / "a.onnx", calib, cache=tmp_path / "ranges")
    assert first.calibration_cache is not None
    first.calibration_cache.write_text(CORRUPTIONS[corruption](clean["cache"]))
    with caplog.at_level(logging.WARNING, logger="edgerun"):
        rebuilt = quantize(TEACHER, tmp_path / "b.onnx", calib, cache=tmp_path / "ranges")
    assert rebuilt.calibration_cache_hit is False
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"calibration cache {first.calibration_cache} is corrupt" in w and "rebuilding" in w for w in warnings)
    assert rebuilt.output.read_bytes() == clean["model"], "the rebuilt result equals the clean one"
    assert json.loads(first.calibration_cache.read_text()) == json.loads(clean["cache"]), "and the cache is whole again"
    assert quantize(TEACHER, tmp_path / "c.onnx", calib, cache=tmp_path / "ranges").calibration_cache_hit is True


def _edit(text: str, change: Any) -> str:
    data = json.loads(text)
    change(data)
    return json.dumps(data)


SEMANTIC_CORRUPTIONS = {
    "no tensors": lambda text: _edit(text, lambda d: d.__setitem__("data", {})),
    "a tensor missing": lambda text: _edit(text, lambda d: d["data"].pop("logits")),
    "another method": lambda text: _edit(
        text, lambda d: d.__setitem__("calibration_method", {"CLS": "CalibrationMethod", "value": "Entropy"})
    ),
}


@pytest.mark.parametrize("corruption", list(SEMANTIC_CORRUPTIONS))
def test_a_parsable_but_wrong_cache_file_is_rebuilt(
    tmp_path: Path, calib: CalibrationData, clean: dict[str, Any], caplog: pytest.LogCaptureFixture, corruption: str
) -> None:
    first = quantize(TEACHER, tmp_path / "a.onnx", calib, cache=tmp_path / "ranges")
    assert first.calibration_cache is not None
    first.calibration_cache.write_text(SEMANTIC_CORRUPTIONS[corruption](clean["cache"]))
    with caplog.at_level(logging.WARNING, logger="edgerun"):
        rebuilt = quantize(TEACHER, tmp_path / "b.onnx", calib, cache=tmp_path / "ranges")
    assert rebuilt.calibration_cache_hit is False
    assert any("corrupt" in r.getMessage() for r in caplog.records)
    assert rebuilt.output.read_bytes() == clean["model"]


def test_a_cache_path_that_is_a_folder_is_an_error_not_a_crash(tmp_path: Path, calib: CalibrationData) -> None:
    first = quantize(TEACHER, tmp_path / "a.onnx", calib, cache=tmp_path / "ranges")
    assert first.calibration_cache is not None
    first.calibration_cache.unlink()
    first.calibration_cache.mkdir()
    with pytest.raises(ConversionError, match="is a folder, not a calibration cache file"):
        quantize(TEACHER, tmp_path / "b.onnx", calib, cache=tmp_path / "ranges")
