"""``load(..., precision="int8"|"fp16")``: converted models built once, cached, checked, rebuilt when corrupt."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import edgerun
from edgerun import models
from edgerun.errors import CacheWriteError, CalibrationError, UnsupportedPrecisionError
from edgerun.precision.artifacts import precision_artifact
from edgerun.precision.quantize import QuantizeOptions
from edgerun.runtime.modelfile import ModelFile
from edgerun.storage import cache_dir

from .. import onnx_factory
from ..precision_helpers import DIGITS_FOLDER, digits_test, inspect_qdq, relu_only

MATMUL_WEIGHT = np.arange(16, dtype=np.float32).reshape(4, 4) / 16


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache of this test's own, so that hits and misses do not depend on other tests."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("EDGERUN_CACHE_DIR", str(folder))
    return folder


def artifact_of(session: edgerun.Session) -> Path:
    assert session.plan.artifact is not None
    return Path(session.plan.artifact)


@pytest.mark.parametrize("name", ["digits-teacher", "digits-student", "ppocr-cls"])
@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_bundled_models_load_at_another_precision(cache: Path, name: str, precision: str) -> None:
    with edgerun.load(name, precision=precision) as session:
        path = artifact_of(session)
        assert session.plan.precision == precision
        assert session.model.precision == precision
        assert session.model.path == path
        assert path.is_relative_to(cache / "models")
        assert path.parent.name == ModelFile.open(models.path(name)).sha256[:16]
        assert path.name.startswith(f"{precision}-")
        assert any(r.startswith(f"model: {precision}") for r in session.plan.reasons)
        assert session.label == name, "messages still name the bundled model"
        shape = [2, *next(iter(models.card(name).input_shapes.values()))[1:]]
        (out,) = session.run(np.zeros(shape, np.float32)).values()
        assert out.shape[0] == 2
        assert np.all(np.isfinite(out))
    manifest = json.loads(path.with_suffix(".json").read_text())
    assert manifest["source_sha256"] == ModelFile.open(models.path(name)).sha256
    assert manifest["settings"]["precision"] == precision
    assert manifest["sha256"] == ModelFile.open(path).sha256


def test_the_plan_says_where_the_int8_model_came_from(cache: Path) -> None:
    with edgerun.load("digits-teacher", precision="int8") as session:
        reason = session.plan.reasons[-1]
        assert "int8 Q/DQ (minmax, per-tensor) calibrated on 256 samples of" in reason
        assert "int8 checked against fp32 on 64 samples of" in reason  # the card's held-out check set
        assert session.plan.quality is not None
        assert session.plan.quality["passed"] is True
        assert "digits-calib.npz" in reason
        assert f"cached at {session.plan.artifact}" in reason
        assert "as requested, from the fp32 model by conversion" in " ".join(session.plan.reasons)


def test_int8_accuracy_through_load_stays_within_a_point(cache: Path) -> None:
    images, labels = digits_test()
    with edgerun.load("digits-teacher", precision="int8") as int8, edgerun.load("digits-teacher") as fp32:
        got = int(((int8.run(images)["logits"]).argmax(axis=1) == labels).sum())
        want = int(((fp32.run(images)["logits"]).argmax(axis=1) == labels).sum())
    assert (want - got) / 360 * 100 <= 1.0


def test_the_int8_model_is_shaped_for_what_runs_it(cache: Path) -> None:
    with edgerun.load("digits-teacher", precision="int8") as session:
        assert (session.plan.backend, session.plan.device) == ("onnxruntime", "cpu")
        cpu = inspect_qdq(artifact_of(session))
    assert {zp.dtype for zp in cpu.activation_zero_points} == {np.dtype(np.uint8)}
    options = QuantizeOptions(target="tensorrt", per_channel=True)
    with edgerun.load("digits-teacher", precision="int8", quantization=options) as session:
        trt = inspect_qdq(artifact_of(session))
        assert "per-channel" in session.plan.reasons[-1]
    assert {zp.dtype for zp in trt.activation_zero_points} == {np.dtype(np.int8)}
    assert all(np.all(zp == 0) for zp in trt.activation_zero_points)
    assert len(list((cache / "models").rglob("int8-*.onnx"))) == 2, "other options, other entry"


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_second_load_comes_from_the_cache(cache: Path, precision: str) -> None:
    with edgerun.load("digits-teacher", precision=precision) as first:
        path = artifact_of(first)
    stamp = path.stat().st_mtime_ns
    manifest = path.with_suffix(".json").read_text()
    with edgerun.load(models.path("digits-teacher"), precision=precision) as second:
        assert artifact_of(second) == path, "a bundled model's path shares its name's entry"
        assert f"{precision} model from the cache ({path})" in second.plan.reasons[-1]
    assert path.stat().st_mtime_ns == stamp
    assert path.with_suffix(".json").read_text() == manifest


@pytest.mark.parametrize("precision", ["int8", "fp16"])
@pytest.mark.parametrize("damage", ["truncate", "empty", "flip a byte", "corrupt manifest", "delete manifest"])
def test_a_damaged_entry_is_rebuilt_with_a_warning_never_loaded(
    cache: Path, caplog: pytest.LogCaptureFixture, precision: str, damage: str
) -> None:
    with edgerun.load("digits-teacher", precision=precision) as first:
        path = artifact_of(first)
    good = path.read_bytes()
    manifest = path.with_suffix(".json")
    if damage == "truncate":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "flip a byte":
        path.write_bytes(good[:-10] + bytes([good[-10] ^ 0x55]) + good[-9:])
    elif damage == "corrupt manifest":
        manifest.write_text('{"sha256": ')
    else:
        manifest.unlink()
    with caplog.at_level(logging.WARNING, logger="edgerun"):
        second = edgerun.load("digits-teacher", precision=precision)
    with second:
        assert artifact_of(second) == path
        assert "cached at" in second.plan.reasons[-1], "rebuilt, not read from the cache"
        images, _ = digits_test()
        assert second.run(images[:4])["logits"].shape == (4, 10)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"cached {precision} model {path} is stale or corrupt: rebuilding it" in w for w in warnings)
    assert path.read_bytes() == good, "the conversion is deterministic"
    assert json.loads(manifest.read_text())["sha256"] == ModelFile.open(path).sha256


def test_int8_for_a_user_model_needs_calibration(tmp_path: Path) -> None:
    path = onnx_factory.save(onnx_factory.matmul_with_weight(), tmp_path / "mm.onnx")
    with pytest.raises(UnsupportedPrecisionError) as info:
        edgerun.load(path, precision="int8")
    message = str(info.value)
    assert message.startswith(f"{path}: precision int8 needs calibration data")
    assert "calibration=" in message
    assert "edgerun quantize" in message
    copy = shutil.copy(models.path("digits-teacher"), tmp_path / "teacher.onnx")
    with pytest.raises(UnsupportedPrecisionError, match="needs calibration data"):
        edgerun.load(copy, precision="int8")  # a copy is a user model: no card, no packaged data


def test_int8_with_an_array_works_for_a_user_model(cache: Path, tmp_path: Path) -> None:
    path = onnx_factory.save(onnx_factory.matmul_with_weight(), tmp_path / "mm.onnx")
    calibration = np.random.default_rng(0).random((32, 4), dtype=np.float32)
    x = np.random.default_rng(1).random((5, 4), dtype=np.float32)
    with edgerun.load(path, precision="int8", calibration=calibration) as session:
        assert session.model.precision == "int8"
        assert artifact_of(session).is_relative_to(cache)
        assert inspect_qdq(artifact_of(session)).int8_weight_ops != []
        y = session.run({"x": x})["y"]
    assert np.abs(y - x @ MATMUL_WEIGHT).max() < 0.05
    other = np.random.default_rng(2).random((32, 4), dtype=np.float32) * 3
    with edgerun.load(path, precision="int8", calibration=other) as session:
        assert "cached at" in session.plan.reasons[-1], "other data: a new entry"
    with edgerun.load(path, precision="int8", calibration=calibration.copy()) as session:
        assert "from the cache" in session.plan.reasons[-1], "equal data: the same entry"


def test_int8_with_a_folder_for_a_bundled_model(cache: Path) -> None:
    with edgerun.load("digits-teacher", precision="int8") as packaged:
        default = artifact_of(packaged)
    with edgerun.load("digits-teacher", precision="int8", calibration=DIGITS_FOLDER) as session:
        assert artifact_of(session) != default
        assert f"calibrated on 200 samples of {DIGITS_FOLDER}" in session.plan.reasons[-1]
        images, labels = digits_test()
        correct = int((session.run(images)["logits"].argmax(axis=1) == labels).sum())
    assert correct >= 358 - 3
    with edgerun.load("digits-teacher", precision="int8", calibration=str(DIGITS_FOLDER)) as again:
        assert "from the cache" in again.plan.reasons[-1]


def test_int8_with_calibration_that_does_not_fit(cache: Path, tmp_path: Path) -> None:
    path = onnx_factory.save(onnx_factory.matmul_with_weight(), tmp_path / "mm.onnx")
    with pytest.raises(CalibrationError, match=r"have size 5 at axis 1, mm\.onnx expects 4"):
        edgerun.load(path, precision="int8", calibration=np.zeros((8, 5), np.float32))
    with pytest.raises(CalibrationError, match="data source not found"):
        edgerun.load(path, precision="int8", calibration=tmp_path / "missing")
    assert not list(cache.rglob("*.onnx")), "nothing half-built is left in the cache"


def test_bf16_is_refused(cache: Path) -> None:
    with pytest.raises(UnsupportedPrecisionError) as info:
        edgerun.load("digits-teacher", precision="bf16")
    assert "precision bf16" in str(info.value)
    assert "possible: fp32, int8, fp16" in str(info.value)
    with pytest.raises(UnsupportedPrecisionError, match="cannot convert an fp32 model to bf16"):
        precision_artifact(ModelFile.open(models.path("digits-teacher")), "bf16")
    assert not cache.exists() or not list(cache.rglob("*.onnx"))


def test_stored_precision_needs_no_artifact(cache: Path) -> None:
    with edgerun.load("digits-teacher", precision="fp32") as session:
        assert session.plan.artifact is None
        assert session.model.path == models.path("digits-teacher")
    assert not cache.exists()


def test_the_cache_follows_edgerun_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("EDGERUN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "edgerun"
    monkeypatch.setenv("EDGERUN_CACHE_DIR", str(tmp_path / "explicit"))
    assert cache_dir() == tmp_path / "explicit"


def test_int8_that_quantizes_nothing_is_refused(cache: Path, tmp_path: Path) -> None:
    path = onnx_factory.save(relu_only(), tmp_path / "relu.onnx")
    with pytest.raises(UnsupportedPrecisionError, match=r"relu\.onnx: INT8 quantization quantized nothing"):
        edgerun.load(path, precision="int8", calibration=np.zeros((4, 4), np.float32))


def test_a_refused_int8_build_leaves_nothing_in_the_cache(cache: Path, tmp_path: Path) -> None:
    path = onnx_factory.save(relu_only(), tmp_path / "relu.onnx")
    with pytest.raises(UnsupportedPrecisionError):
        edgerun.load(path, precision="int8", calibration=np.zeros((4, 4), np.float32))
    assert list((cache / "models").rglob("*.onnx")) == []


def test_calibration_given_as_a_dict_is_keyed_by_its_content(cache: Path, tmp_path: Path) -> None:
    path = onnx_factory.save(onnx_factory.matmul_with_weight(), tmp_path / "mm.onnx")
    first = np.zeros((400, 4), np.float32)
    second = first.copy()
    second[200] = 5.0  # inside the part repr() leaves out
    with edgerun.load(path, precision="int8", calibration={"x": first}) as a:
        entry = artifact_of(a)
    with edgerun.load(path, precision="int8", calibration={"x": second}) as b:
        assert artifact_of(b) != entry


# --- a full disk, and two processes converting one model ----------------------------------------


def _full_disk_on_save(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``onnx.save`` filling the disk part-way, as it does on a full cache disk; returns the paths it was given."""
    import onnx

    written: list[str] = []

    def save(proto: object, path: str, *args: object, **kwargs: object) -> None:
        written.append(str(path))
        Path(path).write_bytes(b"\x08\x07 half a model")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(onnx, "save", save)
    return written


def test_a_full_disk_during_load_is_a_typed_error_and_leaves_nothing(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = _full_disk_on_save(monkeypatch)
    with pytest.raises(CacheWriteError) as info:
        edgerun.load("ppocr-det", precision="fp16")
    assert written, "the conversion reached onnx.save"
    error = info.value
    assert error.errno == errno.ENOSPC
    assert error.folder == str(cache / "models")
    message = str(error)
    assert f"in edgerun's cache folder {cache / 'models'}: No space left on device (needs about" in message
    assert "EDGERUN_CACHE_DIR=" in message
    assert Path(error.path).name.startswith("fp16-")
    assert [p for p in (cache / "models").rglob("*") if p.is_file()] == [], "no partial model, temp file or lock"


def test_a_full_disk_in_precision_artifact_names_the_folder_it_was_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ModelFile.open(onnx_factory.save(onnx_factory.matmul_with_weight(), tmp_path / "mm.onnx"))
    _full_disk_on_save(monkeypatch)
    folder = tmp_path / "converted"
    with pytest.raises(CacheWriteError, match=rf"cache folder {re.escape(str(folder))}: No space left") as info:
        precision_artifact(model, "fp16", folder=folder)
    assert isinstance(info.value, OSError), "generic handlers still catch it"
    assert [p for p in folder.rglob("*") if p.is_file()] == []
    monkeypatch.undo()
    artifact = precision_artifact(model, "fp16", folder=folder)
    assert artifact.built, "the next try, with room, builds it"


CONVERTER = """
import pathlib, sys, time
import edgerun.precision.convert as convert
from edgerun.precision.artifacts import precision_artifact
from edgerun.runtime.modelfile import ModelFile

model, folder, ready, go = sys.argv[1:5]
real = convert.convert_fp16

def slow(*args, **kwargs):
    time.sleep(0.5)  # a long conversion: the other process arrives meanwhile
    return real(*args, **kwargs)

convert.convert_fp16 = slow
pathlib.Path(ready).touch()
while not pathlib.Path(go).exists():
    time.sleep(0.002)
artifact = precision_artifact(ModelFile.open(pathlib.Path(model)), "fp16", folder=pathlib.Path(folder))
print("built" if artifact.built else "cached", artifact.path)
"""


def test_two_processes_converting_one_model_build_it_once(tmp_path: Path) -> None:
    model = onnx_factory.save(onnx_factory.matmul_with_weight(), tmp_path / "mm.onnx")
    folder, go = tmp_path / "converted", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONVERTER, str(model), str(folder), str(tmp_path / f"ready{i}"), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        assert time.monotonic() < deadline, "the converters did not start"
        time.sleep(0.01)
    go.touch()
    outputs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        outputs.append(stdout.split())
    assert sorted(word for word, _ in outputs) == ["built", "cached"]
    assert outputs[0][1] == outputs[1][1]
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == sorted(
        [Path(outputs[0][1]).name, Path(outputs[0][1]).with_suffix(".json").name]
    )
