"""`make_plan()` on the fake device profiles: choices, reasons, fallbacks, and every rejected request."""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid
from functools import cache
from importlib import util
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import edgerun
from edgerun import logs as _logging
from edgerun import models
from edgerun.logs import log_once
from edgerun.registry import make_plan
from edgerun.runtime.device import DeviceProfile
from edgerun.runtime.modelfile import ModelFile

DEVICES = Path(__file__).resolve().parents[1] / "fixtures" / "devices"
TREES = ("jetson-orin", "jetson-xavier", "rpi4", "x86-desktop", "x86-cpu-only")
NO_GPU = ("rpi4", "x86-cpu-only")
WITH_GPU = ("jetson-orin", "jetson-xavier", "x86-desktop")
FALLBACK = "TensorRT not available: using onnxruntime CPU"
TRT_MISSING = (
    "the tensorrt Python package is not importable "
    "(JetPack: apt install python3-libnvinfer; desktop: pip install 'edgerun[tensorrt]')"
)
EXPECTED_THREADS = {"jetson-orin": 12, "jetson-xavier": 8, "rpi4": 4, "x86-desktop": 16, "x86-cpu-only": 1}
EXPECTED_KIND = {
    "jetson-orin": "jetson",
    "jetson-xavier": "jetson",
    "rpi4": "raspberry-pi",
    "x86-desktop": "cuda-gpu",
    "x86-cpu-only": "cpu",
}

cpu_only_host = pytest.mark.skipif(
    util.find_spec("tensorrt") is not None or "CUDAExecutionProvider" in ort.get_available_providers(),
    reason="expects a host without TensorRT and with a CPU-only onnxruntime",
)


@cache
def profile(name: str) -> DeviceProfile:
    return DeviceProfile.detect(root=DEVICES / name)


@cache
def student() -> ModelFile:
    return ModelFile.open(models.path("digits-student"))


def with_tensorrt(name: str, version: str) -> DeviceProfile:
    """The fake profile as if the tensorrt package (of ``version``) were importable."""
    base = profile(name)
    return dataclasses.replace(base, versions={**base.versions, "tensorrt": version})


def trt_reason(name: str) -> str:
    kind = EXPECTED_KIND[name]
    return TRT_MISSING if name in WITH_GPU else f"no NVIDIA GPU on this {kind} device; {TRT_MISSING}"


# --- what auto chooses --------------------------------------------------------------------------


@cpu_only_host
@pytest.mark.parametrize("name", TREES)
def test_auto_plan_is_onnxruntime_cpu_with_the_tensorrt_fallback_explained(name: str) -> None:
    plan = make_plan(student(), profile(name))
    assert plan.backend == "onnxruntime"
    assert plan.backend_version == ort.__version__
    assert plan.device == "cpu"
    assert plan.device_kind == EXPECTED_KIND[name]
    assert plan.targets == ("CPUExecutionProvider",)
    assert plan.precision == "fp32"
    assert plan.threads == EXPECTED_THREADS[name]
    assert plan.options == {}
    assert plan.fallbacks == (f"{FALLBACK} ({trt_reason(name)})",)
    assert f"fallback: {FALLBACK} (" in plan.describe()


@cpu_only_host
@pytest.mark.parametrize("name", TREES)
def test_reasons_name_device_backend_precision_and_threads(name: str) -> None:
    plan = make_plan(student(), profile(name))
    device, backend, precision, threads = plan.reasons
    assert device.startswith(f"device {EXPECTED_KIND[name]} ({profile(name).model})")
    assert "tensorrt, onnxruntime" in device
    assert backend.startswith("onnxruntime: CPU execution provider")
    if name in WITH_GPU:
        assert "no CUDA execution provider" in backend
    assert precision == "precision fp32: stored in the model"
    assert threads.startswith("threads: ")
    assert f"{profile(name).cores} cores" in threads
    assert ("1 thread gives the lowest" in threads) == (EXPECTED_THREADS[name] == 1)
    for reason in plan.reasons:
        assert f"why: {reason}" in plan.describe()


def test_plan_to_dict_matches_the_plan() -> None:
    plan = make_plan(student(), profile("rpi4"), options={"graph_optimization": "basic"})
    data = plan.to_dict()
    assert data["backend"] == plan.backend
    assert data["device_kind"] == "raspberry-pi"
    assert data["threads"] == 4
    assert data["targets"] == list(plan.targets)
    assert data["options"] == {"graph_optimization": "basic"}
    assert data["reasons"] == list(plan.reasons)
    assert data["fallbacks"] == list(plan.fallbacks)


@pytest.mark.parametrize(("threads", "text"), [(1, "threads: 1 thread as requested"), (3, "threads: 3 threads")])
def test_requested_threads_override_the_default(threads: int, text: str) -> None:
    plan = make_plan(student(), profile("jetson-orin"), options={"threads": threads})
    assert plan.threads == threads
    assert plan.reasons[-1].startswith(text)
    assert "threads" not in plan.options


def test_requested_precision_is_recorded_as_requested() -> None:
    plan = make_plan(student(), profile("rpi4"), precision="fp32")
    assert plan.precision == "fp32"
    assert "precision fp32: as requested (stored in the model)" in plan.reasons


def test_named_backend_is_tried_alone_without_fallback() -> None:
    plan = make_plan(student(), profile("jetson-orin"), backend="onnxruntime")
    assert plan.backend == "onnxruntime"
    assert plan.fallbacks == ()


@cpu_only_host
def test_device_cpu_on_a_jetson_says_so_in_the_fallback() -> None:
    plan = make_plan(student(), profile("jetson-orin"), device="cpu")
    assert plan.device == "cpu"
    assert plan.fallbacks == (f"{FALLBACK} (device cpu requested; {TRT_MISSING})",)
    assert plan.reasons[1] == "onnxruntime: CPU execution provider"


@cpu_only_host
def test_tensorrt_listed_by_the_profile_but_not_importable_here_is_explained() -> None:
    """The probe asks the running Python, not the profile: a copied profile cannot fake TensorRT."""
    orin = with_tensorrt("jetson-orin", "10.3.0")
    plan = make_plan(student(), orin)
    assert plan.fallbacks == (f"{FALLBACK} ({TRT_MISSING})",)
    with pytest.raises(edgerun.BackendUnavailableError, match="tensorrt Python package is not importable"):
        make_plan(student(), orin, backend="tensorrt")


# --- requests that cannot be met ----------------------------------------------------------------


@cpu_only_host
@pytest.mark.parametrize("name", TREES)
def test_backend_tensorrt_raises_with_the_reason(name: str) -> None:
    with pytest.raises(edgerun.BackendUnavailableError) as info:
        make_plan(student(), profile(name), backend="tensorrt")
    assert type(info.value) is edgerun.BackendUnavailableError
    message = str(info.value)
    assert message.startswith("backend tensorrt cannot run ")
    assert "model.onnx" in message
    assert message.endswith(f"here: {trt_reason(name)}")


@pytest.mark.parametrize(
    ("what", "value", "valid"),
    [
        ("backend", "tensorrtx", "auto, onnxruntime, tensorrt"),
        ("backend", "ONNXRuntime", "auto, onnxruntime, tensorrt"),
        ("backend", "", "auto, onnxruntime, tensorrt"),
        ("precision", "fp64", "auto, fp32, fp16, bf16, int8"),
        ("precision", "FP16", "auto, fp32, fp16, bf16, int8"),
        ("device", "gpu", "auto, cpu, cuda, cuda:N"),
        ("device", "cuda:", "auto, cpu, cuda, cuda:N"),
        ("device", "cuda:x", "auto, cpu, cuda, cuda:N"),
        ("device", "CPU", "auto, cpu, cuda, cuda:N"),
        ("device", "cpu ", "auto, cpu, cuda, cuda:N"),
        ("device", "", "auto, cpu, cuda, cuda:N"),
    ],
)
def test_unknown_strings_raise_config_error_listing_valid_values(what: str, value: str, valid: str) -> None:
    with pytest.raises(edgerun.ConfigError) as info:
        make_plan(student(), profile("rpi4"), **{what: value})
    assert isinstance(info.value, ValueError)
    assert str(info.value) == f"unknown {what} {value!r}; choose one of: {valid}"


@pytest.mark.parametrize("device", [None, 0, b"cpu"])
def test_non_string_device_raises_config_error(device: object) -> None:
    with pytest.raises(edgerun.ConfigError, match="choose one of: auto, cpu, cuda, cuda:N"):
        make_plan(student(), profile("rpi4"), device=device)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", NO_GPU)
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_on_a_device_without_nvidia_gpu_raises(name: str, device: str) -> None:
    with pytest.raises(edgerun.BackendUnavailableError) as info:
        make_plan(student(), profile(name), device=device)
    message = str(info.value)
    assert f"device {device!r} requested" in message
    assert f"this {EXPECTED_KIND[name]} device ({profile(name).model}) has no NVIDIA GPU" in message


@cpu_only_host
@pytest.mark.parametrize("name", WITH_GPU)
def test_cuda_on_a_gpu_device_without_a_cuda_onnxruntime_raises(name: str) -> None:
    with pytest.raises(edgerun.BackendUnavailableError) as info:
        make_plan(student(), profile(name), device="cuda")
    message = str(info.value)
    assert f"tensorrt: {TRT_MISSING}" in message
    assert "onnxruntime: this onnxruntime build has no CUDA execution provider (install onnxruntime-gpu)" in message


@pytest.mark.parametrize("backend", ["auto", "onnxruntime"])
def test_a_precision_edgerun_cannot_convert_to_raises_unsupported_precision(backend: str) -> None:
    with pytest.raises(edgerun.UnsupportedPrecisionError) as info:
        make_plan(student(), profile("jetson-orin"), backend=backend, precision="bf16")
    assert isinstance(info.value, edgerun.BackendUnavailableError)
    assert "precision bf16 is not possible for this fp32 model (possible: fp32, int8, fp16)" in str(info.value)


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_int8_and_fp16_of_an_fp32_model_are_planned_as_conversions(precision: str) -> None:
    plan = make_plan(student(), profile("rpi4"), precision=precision)
    assert plan.backend == "onnxruntime"
    assert plan.precision == precision
    assert f"precision {precision}: as requested, from the fp32 model by conversion" in plan.reasons
    assert plan.artifact is None, "the planner only decides; load() builds the converted model"


@pytest.mark.parametrize("threads", [0, -1, "2", True, False, 2.0, np.int8(0)])
def test_bad_threads_raise_config_error(threads: object) -> None:
    with pytest.raises(edgerun.ConfigError) as info:
        make_plan(student(), profile("rpi4"), options={"threads": threads})
    assert str(info.value) == f"option threads must be an integer >= 1, got {threads!r}"


def test_threads_none_means_the_default() -> None:
    assert make_plan(student(), profile("rpi4"), options={"threads": None}).threads == 4


def test_unknown_option_raises_config_error_listing_known_options() -> None:
    with pytest.raises(edgerun.ConfigError) as info:
        make_plan(student(), profile("rpi4"), options={"thread": 2})
    assert str(info.value) == "unknown option thread for backend onnxruntime; known: graph_optimization, threads"
    with pytest.raises(edgerun.ConfigError, match=r"^unknown options bogus, other for backend onnxruntime; known: "):
        make_plan(student(), profile("rpi4"), options={"other": 1, "bogus": 2, "threads": 2})


def test_make_plan_does_not_change_the_callers_options() -> None:
    options = {"threads": 2, "graph_optimization": "basic"}
    plan = make_plan(student(), profile("rpi4"), options=options)
    assert options == {"threads": 2, "graph_optimization": "basic"}
    assert plan.options == {"graph_optimization": "basic"}


# --- load() with a fake profile -----------------------------------------------------------------


def test_load_with_a_raspberry_pi_profile_plans_for_it_and_runs() -> None:
    with edgerun.load(models.path("digits-student"), device=profile("rpi4")) as session:
        assert isinstance(session, edgerun.Session)
        assert session.backend == "onnxruntime"
        assert session.plan.device_kind == "raspberry-pi"
        assert session.plan.threads == 4
        assert session.plan.device == "cpu"
        outputs = session.run(np.zeros((1, 1, 8, 8), dtype=np.float32))
    (logits,) = outputs.values()
    assert logits.shape == (1, 10)
    assert logits.dtype == np.float32
    assert np.isfinite(logits).all()


def test_load_with_a_two_core_profile_uses_one_thread_unless_told() -> None:
    with edgerun.load("digits-student", device=profile("x86-cpu-only")) as session:
        assert session.plan.threads == 1
    with edgerun.load("digits-student", device=profile("x86-cpu-only"), threads=2) as session:
        assert session.plan.threads == 2
        assert session.run(np.zeros((3, 1, 8, 8), dtype=np.float32))["logits"].shape == (3, 10)


def test_load_with_a_profile_still_rejects_bad_requests() -> None:
    with pytest.raises(edgerun.BackendUnavailableError, match="no NVIDIA GPU"):
        edgerun.load("digits-student", device=profile("rpi4"), backend="tensorrt")
    with pytest.raises(edgerun.ConfigError, match="unknown option"):
        edgerun.load("digits-student", device=profile("rpi4"), bogus=1)


# --- fallback logging ---------------------------------------------------------------------------


def _records(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "edgerun" and text in r.getMessage()]


@cpu_only_host
def test_fallback_is_logged_once_per_process(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="edgerun")
    first = make_plan(student(), profile("rpi4"))
    second = make_plan(student(), profile("rpi4"))
    assert first.fallbacks == second.fallbacks, "the plan always records the fallback"
    logged = _records(caplog, first.fallbacks[0])
    assert len(logged) <= 1, "earlier tests may have logged it already, but never twice"
    assert all(r.levelno == logging.INFO for r in logged), "no GPU: a fallback is expected, not a warning"
    caplog.clear()
    make_plan(student(), profile("rpi4"))
    assert _records(caplog, FALLBACK) == []


@cpu_only_host
@pytest.mark.parametrize("name", TREES)
def test_fallback_is_logged_once_at_info_without_gpu_and_warning_with_one(
    name: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_logging, "_seen", set())  # as in a fresh process; restored afterwards
    caplog.set_level(logging.DEBUG, logger="edgerun")
    plans = [make_plan(student(), profile(name)) for _ in range(3)]
    (logged,) = _records(caplog, FALLBACK)
    assert logged.getMessage() == plans[0].fallbacks[0]
    assert logged.levelno == (logging.WARNING if name in WITH_GPU else logging.INFO)


@cpu_only_host
def test_fallback_on_a_gpu_device_is_a_warning_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="edgerun")
    _logging._seen.clear()  # earlier tests logged the same message
    orin = profile("jetson-orin")
    plan = make_plan(student(), orin)
    (logged,) = _records(caplog, plan.fallbacks[0])
    assert logged.levelno == logging.WARNING
    assert logged.getMessage() == plan.fallbacks[0]
    make_plan(student(), orin)
    make_plan(student(), orin)
    assert len(_records(caplog, plan.fallbacks[0])) == 1


def test_log_once_logs_a_new_message_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="edgerun")
    logger = logging.getLogger("edgerun")
    message = f"fresh message {uuid.uuid4().hex}"
    assert log_once(logger, logging.INFO, message) is True
    assert log_once(logger, logging.INFO, message) is False
    assert log_once(logger, logging.WARNING, message) is False, "the level is not part of the key"
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.INFO, message)]


def test_log_once_is_per_logger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="edgerun")  # the CLI sets this logger's level; children inherit it
    message = f"shared message {uuid.uuid4().hex}"
    assert log_once(logging.getLogger("edgerun"), logging.INFO, message)
    assert log_once(logging.getLogger("edgerun.test"), logging.INFO, message)
    assert not log_once(logging.getLogger("edgerun.test"), logging.INFO, message)
    assert sorted(r.name for r in caplog.records if r.getMessage() == message) == ["edgerun", "edgerun.test"]


def test_log_once_logs_once_across_threads(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="edgerun")
    logger = logging.getLogger("edgerun")
    message = f"raced message {uuid.uuid4().hex}"
    start = threading.Barrier(16)
    results: list[bool] = []

    def worker() -> None:
        start.wait()
        results.append(log_once(logger, logging.INFO, message))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 15 + [True]
    assert len([r for r in caplog.records if r.getMessage() == message]) == 1


# --- regressions ------------------------------------------------------------------------------


def test_a_named_backend_reason_lists_only_that_backend() -> None:
    plan = make_plan(student(), profile("jetson-orin"), backend="onnxruntime")
    assert "backends tried in order onnxruntime" in plan.reasons[0]


@cpu_only_host
def test_asking_for_the_cpu_on_a_gpu_device_is_logged_as_info_not_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="edgerun"):
        _logging._seen.clear()
        make_plan(student(), profile("x86-desktop"), device="cpu")
    records = [r for r in caplog.records if FALLBACK in r.getMessage()]
    assert [r.levelno for r in records] == [logging.INFO]


def test_strings_are_validated_before_the_device_is_checked() -> None:
    with pytest.raises(edgerun.ConfigError, match="unknown backend 'bogus'"):
        make_plan(student(), profile("rpi4"), device="cuda", backend="bogus")


@pytest.mark.parametrize("threads", [np.int64(4), np.int32(4), 4])
def test_numpy_integers_are_accepted_for_threads(threads: object) -> None:
    plan = make_plan(student(), profile("rpi4"), options={"threads": threads})
    assert plan.threads == 4
    assert type(plan.threads) is int


def test_cuda_index_reaches_the_gpu_execution_providers() -> None:
    from edgerun.runtime.backends.onnxruntime_backend import _providers

    plan = dataclasses.replace(
        make_plan(student(), profile("rpi4")),
        device="cuda:1",
        targets=("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
    )
    providers = _providers(plan)
    trt_name, trt_options = providers[0]
    assert trt_name == "TensorrtExecutionProvider"
    assert trt_options["device_id"] == "1"
    assert trt_options["trt_engine_cache_enable"] == "True"
    assert Path(trt_options["trt_engine_cache_path"]).parent.name == "ort-tensorrt", (
        "ORT's engines go to edgerun's cache"
    )
    assert providers[1:] == [("CUDAExecutionProvider", {"device_id": "1"}), "CPUExecutionProvider"]
    assert _providers(make_plan(student(), profile("rpi4"))) == ["CPUExecutionProvider"]


def test_ort_tensorrt_cache_folder_changes_with_tensorrt_ort_and_gpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """ORT asks to clear its TensorRT engine cache when TensorRT, ORT or the GPU changes: one folder per combination."""
    from edgerun.runtime import device as device_module
    from edgerun.runtime.backends.onnxruntime_backend import _providers, ort_tensorrt_cache_folder

    monkeypatch.setenv("EDGERUN_CACHE_DIR", str(tmp_path))

    def folder_for(tensorrt: str, ort_version: str, gpu: str, capability: str) -> Path:
        fake = dataclasses.replace(
            profile("rpi4"),
            gpu_name=gpu,
            compute_capability=capability,
            versions={**profile("rpi4").versions, "tensorrt": tensorrt},
        )
        monkeypatch.setattr(device_module, "current_device", lambda: fake)
        plan = dataclasses.replace(
            make_plan(student(), profile("rpi4")),
            device="cuda:0",
            backend_version=ort_version,
            targets=("TensorrtExecutionProvider", "CPUExecutionProvider"),
        )
        name, options = _providers(plan)[0]
        assert name == "TensorrtExecutionProvider"
        assert options["trt_timing_cache_path"] == options["trt_engine_cache_path"]
        return Path(options["trt_engine_cache_path"])

    jetpack6 = folder_for("10.3.0", "1.20.0", "Orin", "8.7")
    assert jetpack6.name == "trt10.3.0-ort1.20.0-orin-sm87"
    others = {
        folder_for("10.7.0", "1.20.0", "Orin", "8.7"),  # JetPack or pip TensorRT upgrade
        folder_for("10.3.0", "1.22.0", "Orin", "8.7"),  # ORT upgrade
        folder_for("10.3.0", "1.20.0", "NVIDIA GeForce RTX 4090", "8.9"),  # another GPU
    }
    assert jetpack6 not in others
    assert len(others) == 3
    assert all(f.parent == jetpack6.parent for f in others)
    unknown = ort_tensorrt_cache_folder(tmp_path, tensorrt=None, onnxruntime=None, gpu=None, compute_capability=None)
    assert unknown == tmp_path / "trtunknown-ortunknown-gpu"
    jetpack = {"tensorrt": "unknown", "onnxruntime": "1.20.0", "gpu": "Orin", "compute_capability": "8.7"}
    before = ort_tensorrt_cache_folder(tmp_path, **jetpack, l4t="36.4.0")
    assert before.name == "trtunknown-ort1.20.0-orin-sm87-l4t36.4.0"
    assert before != ort_tensorrt_cache_folder(tmp_path, **jetpack, l4t="36.4.3"), "a JetPack upgrade rebuilds"
