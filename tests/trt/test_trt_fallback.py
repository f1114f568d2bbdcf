"""Where TensorRT cannot run: the planner falls back to ONNX Runtime and says why; asking for TensorRT
by name raises with everything that is missing; the backend's probe lists every missing piece at once."""

from __future__ import annotations

import dataclasses
from functools import cache
from importlib import util
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import edgerun
from edgerun import models
from edgerun.runtime.device import DeviceProfile
from edgerun.trt import entry as backend

DEVICES = Path(__file__).resolve().parents[1] / "fixtures" / "devices"
FALLBACK = "TensorRT not available: using onnxruntime CPU"
TRT_MISSING = (
    "the tensorrt Python package is not importable "
    "(JetPack: apt install python3-libnvinfer; desktop: pip install 'edgerun[tensorrt]')"
)

pytestmark = pytest.mark.skipif(
    util.find_spec("tensorrt") is not None or "CUDAExecutionProvider" in ort.get_available_providers(),
    reason="expects a host without TensorRT and with a CPU-only onnxruntime",
)


@cache
def device(name: str) -> DeviceProfile:
    return DeviceProfile.detect(root=DEVICES / name)


def test_the_orin_fixture_is_a_jetson_with_a_gpu() -> None:
    orin = device("jetson-orin")
    assert orin.kind == "jetson"
    assert orin.has_nvidia_gpu


def test_load_on_a_jetson_without_tensorrt_falls_back_to_onnxruntime_and_runs() -> None:
    feeds = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    with edgerun.load("digits-student", device=device("jetson-orin")) as session:
        plan = session.plan
        assert session.backend == "onnxruntime"
        assert plan.device == "cpu"
        assert plan.device_kind == "jetson"
        assert plan.fallbacks == (f"{FALLBACK} ({TRT_MISSING})",)
        assert "tensorrt" in plan.fallbacks[0]
        assert f"fallback: {FALLBACK}" in plan.describe()
        got = session.run(feeds)
    reference = ort.InferenceSession(str(models.path("digits-student")), providers=["CPUExecutionProvider"])
    (expected,) = reference.run(None, {"image": feeds})
    np.testing.assert_array_equal(got["logits"], expected)


def test_naming_tensorrt_on_a_jetson_without_it_raises_saying_what_is_missing() -> None:
    with pytest.raises(edgerun.BackendUnavailableError) as info:
        edgerun.load("digits-student", device=device("jetson-orin"), backend="tensorrt")
    message = str(info.value)
    assert message.startswith("backend tensorrt cannot run ")
    assert "digits-student/model.onnx" in message
    assert message.endswith(f"here: {TRT_MISSING}")


def test_naming_tensorrt_with_tensorrt_options_still_raises_the_reason_not_an_option_error() -> None:
    with pytest.raises(edgerun.BackendUnavailableError, match="tensorrt Python package is not importable"):
        edgerun.load("ppocr-cls", device=device("jetson-orin"), backend="tensorrt", precision="fp16", batch="1:4:8")


@pytest.mark.parametrize(
    ("tree", "request_", "pieces"),
    [
        ("jetson-orin", "auto", [TRT_MISSING]),
        ("jetson-orin", "cpu", ["device cpu requested", TRT_MISSING]),
        ("x86-desktop", "auto", [TRT_MISSING]),
        ("rpi4", "auto", ["no NVIDIA GPU on this raspberry-pi device", TRT_MISSING]),
        ("rpi4", "cpu", ["device cpu requested", "no NVIDIA GPU on this raspberry-pi device", TRT_MISSING]),
        ("x86-cpu-only", "cpu", ["device cpu requested", "no NVIDIA GPU on this cpu device", TRT_MISSING]),
    ],
)
def test_probe_reports_every_missing_piece_at_once(tree: str, request_: str, pieces: list[str]) -> None:
    availability = backend.probe(device(tree), request_)
    assert availability.available is False
    assert availability.reason == "; ".join(pieces)
    assert availability.targets == ()


def test_probe_reports_the_version_the_device_lists_even_when_it_cannot_import_it() -> None:
    orin = device("jetson-orin")
    listed = dataclasses.replace(orin, versions={**orin.versions, "tensorrt": "10.3.0"})
    availability = backend.probe(listed, "auto")
    assert availability.available is False
    assert availability.version == "10.3.0"
    assert availability.reason == TRT_MISSING
    assert backend.probe(orin, "auto").version is None
