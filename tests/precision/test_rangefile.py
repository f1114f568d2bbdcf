"""The range cache on ONNX Runtime releases without one of their own (1.20, JetPack 6's era).

Where ORT writes and reads the cache itself, these tests force edgerun's own path (its JSON and the
fixed-ranges calibrator), so both paths are checked on every release: the same ranges must give the
same quantized model, a hit must not calibrate, and a corrupt own-format file must be rebuilt.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerun import models
from edgerun.precision import rangefile
from edgerun.precision.calibration import CalibrationData, open_calibration
from edgerun.precision.ortfeatures import conv_integer_int8_weights
from edgerun.precision.quantize import QuantizeOptions, quantize
from edgerun.runtime.modelfile import ModelFile

from ..precision_helpers import DIGITS_CALIB

TEACHER = models.path("digits-teacher")


@pytest.fixture(scope="module")
def calib() -> CalibrationData:
    return open_calibration(DIGITS_CALIB, ModelFile.open(TEACHER).inputs)


@pytest.fixture
def own_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """edgerun's own range file and calibrator, whatever this onnxruntime can do."""
    monkeypatch.setattr(rangefile, "native_cache", lambda: False)


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_own_path_gives_the_model_the_native_path_gives(
    tmp_path: Path, calib: CalibrationData, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = QuantizeOptions(method=method)
    native = quantize(TEACHER, tmp_path / "native.onnx", calib, options, cache=tmp_path / "native")
    monkeypatch.setattr(rangefile, "native_cache", lambda: False)
    first = quantize(TEACHER, tmp_path / "a.onnx", calib, options, cache=tmp_path / "own")
    second = quantize(TEACHER, tmp_path / "b.onnx", calib, options, cache=tmp_path / "own")
    assert (first.calibration_cache_hit, second.calibration_cache_hit) == (False, True)
    assert first.calibration_cache is not None
    assert json.loads(first.calibration_cache.read_text())["format"] == rangefile.FORMAT
    assert first.output.read_bytes() == second.output.read_bytes() == native.output.read_bytes()


def test_a_hit_on_the_own_path_does_not_calibrate(
    tmp_path: Path, calib: CalibrationData, own_path: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    quantize(TEACHER, tmp_path / "a.onnx", calib, cache=tmp_path)

    def no_calibration(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cache hit calibrated again")

    monkeypatch.setattr("edgerun.precision.quantize.calibrate", no_calibration)
    assert quantize(TEACHER, tmp_path / "b.onnx", calib, cache=tmp_path).calibration_cache_hit


@pytest.mark.parametrize(
    "text",
    ['{"format": "edgerun-ranges-1"}', '{"format": "other", "calibration_method": "MinMax", "data": {}}',
     "not json", '{"format": "edgerun-ranges-1", "calibration_method": "MinMax", "data": {"t": {"lowest": "x"}}}'],
)  # fmt: skip
def test_a_corrupt_own_file_is_rebuilt(
    tmp_path: Path, calib: CalibrationData, own_path: None, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    first = quantize(TEACHER, tmp_path / "a.onnx", calib, cache=tmp_path / "ranges")
    assert first.calibration_cache is not None
    clean = first.output.read_bytes()
    first.calibration_cache.write_text(text)
    with caplog.at_level(logging.WARNING, logger="edgerun"):
        again = quantize(TEACHER, tmp_path / "b.onnx", calib, cache=tmp_path / "ranges")
    assert again.calibration_cache_hit is False
    assert any("is corrupt" in r.getMessage() for r in caplog.records)
    assert again.output.read_bytes() == clean


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e4, 0), st.floats(0, 1e4), st.integers(0, 3)), min_size=1, max_size=6))
def test_ranges_round_trip_through_the_own_format(entries: list[tuple[float, float, int]]) -> None:
    import tempfile

    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData

    data = {}
    for i, (low, high, channels) in enumerate(entries):
        shape = () if channels == 0 else (channels,)
        data[f"t{i}"] = TensorData(lowest=np.full(shape, low, np.float32), highest=np.full(shape, high, np.float32))
    ranges = TensorsData(CalibrationMethod.Entropy, data)
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        patch.setattr(rangefile, "native_cache", lambda: False)
        path = Path(folder) / "r.json"
        rangefile.save_ranges(ranges, path)
        loaded = rangefile.load_ranges(path)
    assert loaded.calibration_method == CalibrationMethod.Entropy
    assert list(loaded.data) == list(data)
    for name, tensor in data.items():
        for got, want in zip(loaded.data[name].range_value, tensor.range_value, strict=True):
            np.testing.assert_array_equal(got, want)
            assert np.asarray(got).shape == np.asarray(want).shape


def test_the_calibrator_is_restored_after_a_failed_quantization() -> None:
    from onnxruntime.quantization import quantize_static

    real = quantize_static.__globals__["create_calibrator"]
    swapped = []

    def fail_inside() -> None:
        with rangefile.fixed_ranges(object()):
            swapped.append(quantize_static.__globals__["create_calibrator"])
            raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        fail_inside()
    assert swapped
    assert swapped[0] is not real
    assert quantize_static.__globals__["create_calibrator"] is real


def test_dynamic_int8_of_a_conv_model_runs_on_this_onnxruntime(tmp_path: Path) -> None:
    """onnxruntime 1.20 cannot run ConvInteger with int8 weights: the weights go uint8 there, and the model loads."""
    import edgerun

    options = QuantizeOptions(mode="dynamic", force=True)
    result = quantize(TEACHER, tmp_path / "dyn.onnx", None, options)
    with edgerun.load(result.output) as session, edgerun.load(TEACHER) as full:
        x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
        (got,) = session.run(x).values()
        (want,) = full.run(x).values()
    assert np.argmax(got, axis=1).tolist() == np.argmax(want, axis=1).tolist()
    assert isinstance(conv_integer_int8_weights(), bool)
