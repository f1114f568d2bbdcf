"""INT8 Q/DQ quantization: what lands in the ONNX file, how it runs, and every way it refuses.

Structure is read back with ``onnx`` (a DequantizeLinear of an INT8 initializer feeding each
Conv/Gemm weight), behaviour with ``edgerun.load``; accuracy is measured on the held-out
digits test split while calibration uses only ``digits-calib.npz`` or ``calibration/digits``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgerun
from edgerun import models
from edgerun.data.preprocess import PreprocessSpec
from edgerun.data.samples import load_samples
from edgerun.errors import ConfigError, ConversionError
from edgerun.precision.calibration import CalibrationData, open_calibration
from edgerun.precision.quantize import METHODS, QuantizeOptions, QuantizeResult, head_nodes, quantize
from edgerun.runtime.modelfile import ModelFile

from .. import onnx_factory
from ..precision_helpers import (
    DIGITS_CALIB,
    DIGITS_FOLDER,
    TEXTLINES_FOLDER,
    compute_ops_of,
    conv_map,
    correct_on_digits_test,
    digits_test,
    files_under,
    inspect_qdq,
    relu_only,
    two_matmuls,
)

TEACHER = models.path("digits-teacher")
CLS = models.path("ppocr-cls")
TEACHER_HEAD = "/head/head.4/Gemm"
Quantizer = Callable[..., QuantizeResult]


@pytest.fixture(scope="module")
def teacher_calib() -> CalibrationData:
    return open_calibration(DIGITS_CALIB, ModelFile.open(TEACHER).inputs)


@pytest.fixture(scope="module")
def cls_calib() -> CalibrationData:
    card = models.card("ppocr-cls")
    spec = PreprocessSpec.from_dict(card.preprocessing)
    return open_calibration(card.folder / "calibration", ModelFile.open(CLS).inputs, preprocess=spec, samples=8)


@pytest.fixture(scope="module")
def quantized(
    tmp_path_factory: pytest.TempPathFactory, teacher_calib: CalibrationData, cls_calib: CalibrationData
) -> Quantizer:
    """Quantize a bundled model once per option set in this module; the same result afterwards."""
    folder = tmp_path_factory.mktemp("quantized")
    done: dict[tuple[str, QuantizeOptions], QuantizeResult] = {}

    def get(name: str, **options: object) -> QuantizeResult:
        key = (name, QuantizeOptions(**options))  # type: ignore[arg-type]
        if key not in done:
            data = teacher_calib if name == "digits-teacher" else cls_calib
            done[key] = quantize(models.path(name), folder / f"{name}-{len(done)}.onnx", data, key[1])
        return done[key]

    return get


# --- acceptance --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["digits-teacher", "ppocr-cls"])
@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_every_conv_and_gemm_gets_int8_weights_and_qdq_inputs(quantized: Quantizer, name: str, target: str) -> None:
    result = quantized(name, target=target)
    report = inspect_qdq(result.output)
    float_ops = compute_ops_of(models.path(name))
    assert sum(report.compute_ops.values()) == sum(float_ops.values()), "no compute node lost or added"
    compute_names = sorted(report.int8_weight_ops)
    assert len(compute_names) == sum(report.compute_ops.values()), "every Conv/Gemm weight is an INT8 DQ"
    assert report.float_weight_ops == []
    assert sorted(report.quantized_activation_ops) == compute_names, "every data input passes through Q/DQ"
    assert report.weight_dtypes == {onnx.TensorProto.INT8}
    assert result.quantized == dict(report.compute_ops)
    assert result.float_ops == {}
    assert result.qdq_nodes == report.qdq_nodes
    assert report.qdq_nodes >= 2 * len(compute_names)
    assert result.warnings == []
    assert result.mode == "static"
    if name == "digits-teacher":
        assert dict(report.compute_ops) == {"Conv": 3, "Gemm": 2}
    else:
        assert report.compute_ops["Conv"] == 53
        assert report.opset >= 13, "ppocr-cls is opset 11: raised for Q/DQ"
    assert ModelFile.open(result.output).precision == "int8"


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_quantized_digits_teacher_runs_in_onnx_runtime_close_to_fp32(quantized: Quantizer, target: str) -> None:
    images, _ = digits_test()
    with edgerun.load(quantized("digits-teacher", target=target).output) as int8, edgerun.load(TEACHER) as fp32:
        assert int8.model.precision == "int8"
        assert int8.plan.precision == "int8"
        got, want = int8.run(images)["logits"], fp32.run(images)["logits"]
    assert got.shape == want.shape == (360, 10)
    assert got.dtype == np.float32
    assert np.abs(got - want).max() <= 0.1 * np.abs(want).max()
    assert (got.argmax(axis=1) == want.argmax(axis=1)).mean() >= 0.99


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_quantized_ppocr_cls_runs_on_real_text_lines(quantized: Quantizer, target: str) -> None:
    spec = PreprocessSpec.from_dict(models.card("ppocr-cls").preprocessing)
    lines = load_samples(TEXTLINES_FOLDER, ModelFile.open(CLS).inputs, preprocess=spec, samples=24).inputs["x"]
    with edgerun.load(quantized("ppocr-cls", target=target).output) as int8, edgerun.load(CLS) as fp32:
        assert int8.model.precision == "int8"
        (name,) = [o.name for o in fp32.outputs]
        got, want = int8.run(lines)[name], fp32.run(lines)[name]
    assert got.shape == want.shape == (24, 2)
    assert np.all(np.isfinite(got))
    assert np.allclose(got.sum(axis=1), 1, atol=0.02), "still a softmax"
    assert (got.argmax(axis=1) == want.argmax(axis=1)).mean() >= 0.9


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
@pytest.mark.parametrize("source", ["npz", "folder"])
def test_digits_teacher_int8_loses_at_most_one_point(tmp_path: Path, target: str, source: str) -> None:
    model = ModelFile.open(TEACHER)
    if source == "npz":
        data = open_calibration(DIGITS_CALIB, model.inputs)
    else:
        spec = PreprocessSpec.from_dict(models.card("digits-teacher").preprocessing)
        data = open_calibration(DIGITS_FOLDER, model.inputs, preprocess=spec)
    result = quantize(TEACHER, tmp_path / "int8.onnx", data, QuantizeOptions(target=target))
    fp32, int8 = correct_on_digits_test(TEACHER), correct_on_digits_test(result.output)
    assert fp32 == 358, "the card's figure; the test split was never used for calibration"
    assert (fp32 - int8) / 360 * 100 <= 1.0, f"int8 {int8}/360 vs fp32 {fp32}/360"


def test_tensorrt_target_is_symmetric_int8_with_zero_points_0(quantized: Quantizer) -> None:
    for name in ("digits-teacher", "ppocr-cls"):
        report = inspect_qdq(quantized(name, target="tensorrt").output)
        assert report.activation_zero_points, name
        assert {zp.dtype for zp in report.activation_zero_points} == {np.dtype(np.int8)}, name
        assert all(np.all(zp == 0) for zp in report.activation_zero_points), name
        assert {zp.dtype for zp in report.weight_zero_points} == {np.dtype(np.int8)}, name
        assert all(np.all(zp == 0) for zp in report.weight_zero_points), name


def int32_dequantized(path: Path) -> list[str]:
    """DequantizeLinear nodes reading an INT32 initializer (quantized biases)."""
    proto = onnx.load(str(path))
    int32 = {t.name for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT32}
    return [n.name for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in int32]


def test_tensorrt_target_keeps_biases_float(quantized: Quantizer) -> None:
    """TensorRT's ONNX parser refuses DequantizeLinear of INT32 ("only activation types allowed as input")."""
    for name in ("digits-teacher", "ppocr-cls"):
        assert int32_dequantized(quantized(name, target="tensorrt").output) == [], name
    assert int32_dequantized(quantized("digits-teacher", target="cpu").output), "the CPU layout quantizes biases"


def test_cpu_target_has_uint8_activations_and_symmetric_int8_weights(quantized: Quantizer) -> None:
    report = inspect_qdq(quantized("digits-teacher", target="cpu").output)
    assert {zp.dtype for zp in report.activation_zero_points} == {np.dtype(np.uint8)}
    assert any(np.any(zp != 0) for zp in report.activation_zero_points), "asymmetric activations use zero points"
    assert {zp.dtype for zp in report.weight_zero_points} == {np.dtype(np.int8)}
    assert all(np.all(zp == 0) for zp in report.weight_zero_points)


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_per_channel_weight_scales(quantized: Quantizer, target: str) -> None:
    per_tensor = inspect_qdq(quantized("digits-teacher", target=target, per_channel=False).output)
    per_channel = inspect_qdq(quantized("digits-teacher", target=target, per_channel=True).output)
    assert all(scale.size == 1 for scale in per_tensor.weight_scales.values())
    teacher = onnx.load(str(TEACHER))
    out_channels = [
        {t.name: t.dims for t in teacher.graph.initializer}[n.input[1]][0]
        for n in teacher.graph.node
        if n.op_type == "Conv"
    ]
    conv_scales = [s for name, s in per_channel.weight_scales.items() if "Conv" in name]
    assert sorted(s.size for s in conv_scales) == sorted(out_channels)
    assert all(s.size > 1 for s in conv_scales)
    assert set(per_channel.weight_scales) == set(per_tensor.weight_scales)


def test_calibration_methods_all_work_and_differ(quantized: Quantizer) -> None:
    scales = {}
    for method in METHODS:
        result = quantized("digits-teacher", method=method)
        assert result.quantized == {"Conv": 3, "Gemm": 2}, method
        assert result.calibration_cache is not None
        assert f"-{method}-" in result.calibration_cache.name
        assert (358 - correct_on_digits_test(result.output)) / 360 * 100 <= 1.0, method
        proto = onnx.load(str(result.output))
        inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
        scales[method] = {
            n.input[0]: float(inits[n.input[1]]) for n in proto.graph.node if n.op_type == "QuantizeLinear"
        }
    assert scales["minmax"].keys() == scales["percentile"].keys()
    assert scales["minmax"] != scales["percentile"], "the method must change the activation ranges"
    assert all(scales["percentile"][k] <= scales["minmax"][k] * (1 + 1e-6) for k in scales["minmax"])


def test_entropy_ranges_differ_from_minmax(tmp_path: Path, teacher_calib: CalibrationData) -> None:
    ranges = {}
    for method in ("minmax", "entropy"):
        result = quantize(TEACHER, tmp_path / f"{method}.onnx", teacher_calib, QuantizeOptions(method=method))
        proto = onnx.load(str(result.output))
        inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
        ranges[method] = [float(inits[n.input[1]]) for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    assert ranges["entropy"] != ranges["minmax"]
    assert all(e <= m * (1 + 1e-6) for e, m in zip(ranges["entropy"], ranges["minmax"], strict=True))


def test_options_are_validated() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown calibration method 'kl'; choose one of: minmax, entropy, percentile"
    ):
        QuantizeOptions(method="kl")
    with pytest.raises(ConfigError, match=r"unknown quantization mode 'qat'; choose one of: static, dynamic"):
        QuantizeOptions(mode="qat")
    with pytest.raises(ConfigError, match=r"unknown quantization target 'tpu'; choose one of: tensorrt, cpu"):
        QuantizeOptions(target="tpu")
    assert QuantizeOptions(target="tensorrt").resolved_reduce_range() is False
    assert QuantizeOptions(target="cpu", reduce_range=True).resolved_reduce_range() is True
    assert QuantizeOptions(exclude=("b", "a")).key()["exclude"] == ["a", "b"]


# --- what stays float --------------------------------------------------------------------------


def test_exclude_by_operator_type_leaves_those_nodes_float(quantized: Quantizer) -> None:
    result = quantized("digits-teacher", exclude=("Gemm",))
    report = inspect_qdq(result.output)
    assert sorted(report.float_weight_ops) == ["/head/head.1/Gemm", TEACHER_HEAD]
    assert sorted(report.int8_weight_ops) == [f"/features/features.{i}/Conv" for i in (0, 3, 7)]
    assert result.quantized == {"Conv": 3}
    assert result.float_ops == {"Gemm": 2}
    assert result.excluded_nodes == ("/head/head.1/Gemm", TEACHER_HEAD)


def test_exclude_by_node_name_leaves_only_that_node_float(quantized: Quantizer) -> None:
    result = quantized("digits-teacher", exclude=("/features/features.3/Conv",))
    report = inspect_qdq(result.output)
    assert report.float_weight_ops == ["/features/features.3/Conv"]
    assert len(report.int8_weight_ops) == 4
    assert result.quantized == {"Conv": 2, "Gemm": 2}
    assert result.float_ops == {"Conv": 1}
    assert result.excluded_nodes == ("/features/features.3/Conv",)


def test_exclusion_naming_no_node_lists_the_operator_types(tmp_path: Path, teacher_calib: CalibrationData) -> None:
    with pytest.raises(ConfigError) as info:
        quantize(TEACHER, tmp_path / "x.onnx", teacher_calib, QuantizeOptions(exclude=("Conv", "Softmax")))
    message = str(info.value)
    assert "--exclude 'Softmax' names no node or operator type" in message
    assert "operator types: Conv, Flatten, Gemm, MaxPool, Relu" in message
    assert "node names like: /features/features.0/Conv" in message
    assert not (tmp_path / "x.onnx").exists()


def test_keep_head_float_keeps_the_last_gemm_float(quantized: Quantizer) -> None:
    assert head_nodes(onnx.load(str(TEACHER))) == [TEACHER_HEAD]
    result = quantized("digits-teacher", keep_head_float=True)
    report = inspect_qdq(result.output)
    assert report.float_weight_ops == [TEACHER_HEAD]
    assert len(report.int8_weight_ops) == 4
    assert result.excluded_nodes == (TEACHER_HEAD,)
    assert result.float_ops == {"Gemm": 1}
    assert (358 - correct_on_digits_test(result.output)) / 360 * 100 <= 1.0


def test_head_nodes_walk_back_through_non_compute_ops(tmp_path: Path) -> None:
    proto = two_matmuls()
    assert head_nodes(proto) == ["second"]
    assert head_nodes(onnx.load(str(CLS))) != []


@pytest.mark.parametrize("options", [{"keep_head_float": True}, {"exclude": ("Relu",)}])
def test_exclusions_in_a_model_with_unnamed_nodes(tmp_path: Path, options: dict[str, object]) -> None:
    path = onnx_factory.save(two_matmuls(named=False), tmp_path / "unnamed.onnx")
    data = open_calibration(np.random.default_rng(0).random((16, 4), dtype=np.float32), ModelFile.open(path).inputs)
    result = quantize(path, tmp_path / "q.onnx", data, QuantizeOptions(**options))  # type: ignore[arg-type]
    expected = 1 if options.get("keep_head_float") else 2
    assert result.quantized == {"MatMul": expected}, "only the head (or nothing, for Relu) may stay float"


# --- modes -------------------------------------------------------------------------------------


def test_dynamic_mode_is_refused_for_conv_models_unless_forced(tmp_path: Path) -> None:
    with pytest.raises(ConversionError) as info:
        quantize(TEACHER, tmp_path / "dyn.onnx", None, QuantizeOptions(mode="dynamic"))
    message = str(info.value)
    assert "refusing dynamic INT8 for a convolutional model (3 Conv nodes)" in message
    assert "static INT8 with --calib" in message
    assert "--force" in message
    assert not (tmp_path / "dyn.onnx").exists()
    result = quantize(TEACHER, tmp_path / "dyn.onnx", None, QuantizeOptions(mode="dynamic", force=True))
    assert result.mode == "dynamic"
    assert result.quantized == {"ConvInteger": 3, "MatMulInteger": 2}
    assert result.calibration_cache is None
    assert (358 - correct_on_digits_test(result.output)) <= 4


def test_dynamic_mode_on_a_matmul_model(tmp_path: Path) -> None:
    path = onnx_factory.save(onnx_factory.matmul_with_weight(), tmp_path / "mm.onnx")
    result = quantize(path, tmp_path / "mm-int8.onnx", None, QuantizeOptions(mode="dynamic"))
    assert result.quantized == {"MatMulInteger": 1}
    assert result.qdq_nodes == 0
    assert result.warnings == []
    ops = [n.op_type for n in onnx.load(str(result.output)).graph.node]
    assert "MatMulInteger" in ops
    assert "MatMul" not in ops
    x = np.random.default_rng(0).random((5, 4), dtype=np.float32)
    weight = np.arange(16, dtype=np.float32).reshape(4, 4) / 16
    with edgerun.load(result.output) as session:
        assert session.model.precision == "int8"
        y = session.run({"x": x})["y"]
    assert np.abs(y - x @ weight).max() < 0.05


def test_static_mode_needs_calibration(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match=r"model\.onnx: static INT8 needs calibration data \(--calib\)"):
        quantize(TEACHER, tmp_path / "x.onnx", None)


# --- nothing quantized, refusals, files --------------------------------------------------------


def test_a_model_without_compute_ops_warns_that_nothing_was_quantized(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = onnx_factory.save(relu_only(), tmp_path / "relu.onnx")
    data = open_calibration(
        np.random.default_rng(0).random((8, 4), dtype=np.float32) - 0.5, ModelFile.open(path).inputs
    )
    with caplog.at_level(logging.WARNING, logger="edgerun"):
        result = quantize(path, tmp_path / "relu-int8.onnx", data)
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith("NOTHING WAS QUANTIZED in relu.onnx")
    assert result.quantized_count == 0
    records = [r for r in caplog.records if r.levelno == logging.WARNING and "NOTHING WAS QUANTIZED" in r.message]
    assert len(records) == 1
    assert records[0].name == "edgerun"
    assert result.output.is_file()


def test_excluding_every_compute_op_also_warns(
    tmp_path: Path, teacher_calib: CalibrationData, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="edgerun"):
        result = quantize(TEACHER, tmp_path / "x.onnx", teacher_calib, QuantizeOptions(exclude=("Conv", "Gemm")))
    assert result.quantized == {}
    assert result.float_ops == {"Conv": 3, "Gemm": 2}
    assert any("NOTHING WAS QUANTIZED" in w for w in result.warnings)
    assert any("NOTHING WAS QUANTIZED" in r.message for r in caplog.records)


def test_models_with_compute_ops_do_not_warn(
    tmp_path: Path, teacher_calib: CalibrationData, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="edgerun"):
        result = quantize(TEACHER, tmp_path / "q.onnx", teacher_calib, QuantizeOptions(per_channel=True))
    assert result.warnings == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_quantize_leaves_no_files_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, teacher_calib: CalibrationData
) -> None:
    work, temp, out = tmp_path / "cwd", tmp_path / "tmp", tmp_path / "out"
    for folder in (work, temp, out):
        folder.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    result = quantize(TEACHER, out / "teacher-int8.onnx", teacher_calib, QuantizeOptions(method="entropy"))
    quantize(TEACHER, out / "teacher-dyn.onnx", None, QuantizeOptions(mode="dynamic", force=True))
    assert os.listdir(work) == []
    assert files_under(temp) == [], "temporary folders are removed"
    assert files_under(out) == ["teacher-dyn.onnx", "teacher-int8.onnx"]
    assert result.output == out / "teacher-int8.onnx"


def test_a_relative_output_lands_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, teacher_calib: CalibrationData
) -> None:
    monkeypatch.chdir(tmp_path)
    quantize(TEACHER, "int8.onnx", teacher_calib)
    assert os.listdir(tmp_path) == ["int8.onnx"]


def test_a_failed_quantization_leaves_no_output(tmp_path: Path, teacher_calib: CalibrationData) -> None:
    target = tmp_path / "out.onnx"
    with pytest.raises(ConfigError):
        quantize(TEACHER, target, teacher_calib, QuantizeOptions(exclude=("nothing-like-this",)))
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(
    not Path("/dev/shm").is_dir() or os.stat("/dev/shm").st_dev == os.stat(tempfile.gettempdir()).st_dev,
    reason="needs a temporary folder on another file system than the output",
)
def test_output_on_another_file_system_than_the_temp_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, teacher_calib: CalibrationData
) -> None:
    shm = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="edgerun-test-"))
    try:
        monkeypatch.setattr(tempfile, "tempdir", str(shm))
        result = quantize(TEACHER, tmp_path / "int8.onnx", teacher_calib)
        assert result.output.is_file()
    finally:
        monkeypatch.undo()
        for path in sorted(shm.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        shm.rmdir()


def test_an_already_quantized_model_is_refused(quantized: Quantizer, tmp_path: Path) -> None:
    static = quantized("digits-teacher", target="tensorrt").output
    data = open_calibration(DIGITS_CALIB, ModelFile.open(static).inputs)
    with pytest.raises(ConversionError, match=r"already quantized \(it has Q/DQ or integer operators\)"):
        quantize(static, tmp_path / "twice.onnx", data)
    mm = onnx_factory.save(onnx_factory.matmul_with_weight(), tmp_path / "mm.onnx")
    dynamic = quantize(mm, tmp_path / "mm-dyn.onnx", None, QuantizeOptions(mode="dynamic")).output
    with pytest.raises(ConversionError, match=r"mm-dyn\.onnx: already quantized"):
        quantize(dynamic, tmp_path / "twice.onnx", None, QuantizeOptions(mode="dynamic"))
    assert not (tmp_path / "twice.onnx").exists()


def test_an_fp16_model_is_refused(tmp_path: Path) -> None:
    path = onnx_factory.save(onnx_factory.matmul_with_weight(onnx.TensorProto.FLOAT16), tmp_path / "half.onnx")
    with pytest.raises(
        ConversionError, match=r"half\.onnx: INT8 quantization starts from an fp32 model, this one is fp16"
    ):
        quantize(path, tmp_path / "x.onnx", None, QuantizeOptions(mode="dynamic"))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    scale=st.floats(0.01, 100.0),
    target=st.sampled_from(["tensorrt", "cpu"]),
    per_channel=st.booleans(),
)
def test_static_int8_of_a_conv_tracks_fp32_for_any_input_range(
    tmp_path: Path, scale: float, target: str, per_channel: bool
) -> None:
    path = onnx_factory.save(conv_map(), tmp_path / "conv.onnx")
    rng = np.random.default_rng(0)
    calib = (rng.random((16, 1, 8, 8), dtype=np.float32) * scale).astype(np.float32)
    data = open_calibration(calib, ModelFile.open(path).inputs)
    options = QuantizeOptions(target=target, per_channel=per_channel)
    result = quantize(path, tmp_path / "conv-int8.onnx", data, options, cache=tmp_path / "ranges")
    assert result.quantized == {"Conv": 1}
    feed = (rng.random((2, 1, 8, 8), dtype=np.float32) * scale).astype(np.float32)
    with edgerun.load(result.output) as int8, edgerun.load(path) as fp32:
        got, want = int8.run(feed)["y"], fp32.run(feed)["y"]
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max() + 1e-6
