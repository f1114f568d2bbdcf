"""Bad model files give one clear EdgerunError naming the file, never a library traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgerun
from edgerun import models
from edgerun.runtime.modelfile import ModelFile

from .. import onnx_factory


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "student.onnx"
    with pytest.raises(edgerun.ModelNotFoundError, match=r"student\.onnx: model file not found") as info:
        edgerun.load(missing)
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.path == str(missing)


def test_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(edgerun.ModelError, match="is a directory"):
        edgerun.load(tmp_path)


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(edgerun.ModelError, match=r"empty\.onnx: is empty \(0 bytes\)"):
        edgerun.load(empty)


def test_non_onnx_file_is_rejected(tmp_path: Path) -> None:
    image = tmp_path / "line.onnx"
    image.write_bytes((Path(__file__).parents[2] / "calibration/textlines/line_000.jpg").read_bytes())
    with pytest.raises(edgerun.ModelError, match=r"line\.onnx"):
        edgerun.load(image)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=4096))
def test_random_bytes_raise_model_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "random.onnx"
    path.write_bytes(data)
    with pytest.raises(edgerun.ModelError, match=r"random\.onnx"):
        ModelFile.open(path)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fraction=st.floats(min_value=0.0, max_value=0.999))
def test_truncated_model_raises_edgerun_error(tmp_path: Path, student_path: Path, fraction: float) -> None:
    data = student_path.read_bytes()
    cut = max(1, int(len(data) * fraction))
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[:cut])
    with pytest.raises(edgerun.EdgerunError, match=r"truncated\.onnx"):
        edgerun.load(path)


def test_unknown_operator_in_default_domain(tmp_path: Path) -> None:
    path = onnx_factory.save(onnx_factory.single_op("FancyConv"), tmp_path / "fancy.onnx")
    with pytest.raises(edgerun.ModelError, match=r"fancy\.onnx: invalid ONNX model: No Op registered for FancyConv"):
        edgerun.load(path)


def test_custom_domain_operator_onnxruntime_cannot_run(tmp_path: Path) -> None:
    model = onnx_factory.single_op("Foo", domain="acme.ops", extra_domains=("acme.ops",))
    path = onnx_factory.save(model, tmp_path / "custom.onnx")
    with pytest.raises(
        edgerun.UnsupportedModelError, match=r"custom\.onnx: onnxruntime cannot load it: .*acme\.ops:Foo"
    ):
        edgerun.load(path)


def test_opset_newer_than_onnxruntime(tmp_path: Path) -> None:
    path = onnx_factory.save(onnx_factory.single_op("Relu", opset=40), tmp_path / "future.onnx")
    with pytest.raises(edgerun.UnsupportedModelError, match=r"future\.onnx: .*Opset 40") as info:
        edgerun.load(path)
    assert "/onnxruntime_src/" not in str(info.value), "C++ source locations are stripped from ORT messages"


@pytest.mark.parametrize("location", ["../outside.bin", "../../etc/weights.bin", "sub/../../escape.bin"])
def test_external_data_escaping_the_model_folder_is_refused(tmp_path: Path, location: str) -> None:
    folder = tmp_path / "a" / "b"
    folder.mkdir(parents=True)
    path = onnx_factory.with_external_weight(folder, location)
    with pytest.raises(edgerun.ModelError, match=r"external data .* points outside the model's folder"):
        edgerun.load(path)


def test_external_data_absolute_path_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    path = onnx_factory.with_external_weight(folder, "w.bin")
    model = ModelFile.open(path)  # fine while relative
    assert model.external_data == ((folder / "w.bin").resolve(),)
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    proto.graph.initializer[0].external_data[0].value = str((folder / "w.bin").resolve())
    onnx.save(proto, str(path))
    with pytest.raises(edgerun.ModelError, match="points outside"):
        edgerun.load(path)


def test_external_data_inside_the_folder_loads_and_runs(tmp_path: Path) -> None:
    path = onnx_factory.with_external_weight(tmp_path, "weights/w.bin")
    with edgerun.load(path) as session:
        x = np.eye(4, dtype=np.float32)
        y = session.run({"x": x})["y"]
    np.testing.assert_array_equal(y, np.arange(16, dtype=np.float32).reshape(4, 4) / 16)
    # The hash covers the external weights: changing them changes the model's identity.
    before = ModelFile.open(path).sha256
    (tmp_path / "weights/w.bin").write_bytes(np.zeros(16, np.float32).tobytes())
    assert ModelFile.open(path).sha256 != before


def test_missing_external_data_file(tmp_path: Path) -> None:
    path = onnx_factory.with_external_weight(tmp_path, "w.bin")
    (tmp_path / "w.bin").unlink()
    with pytest.raises(edgerun.ModelError, match=r"external data file 'w\.bin' of tensor 'W' is missing"):
        edgerun.load(path)


def test_unknown_bundled_name_lists_the_known_ones() -> None:
    with pytest.raises(edgerun.UnknownModelError) as info:
        edgerun.load("mobilenet-v9")
    message = str(info.value)
    assert "mobilenet-v9" in message
    for name in models.names():
        assert name in message


def test_path_like_missing_name_is_a_missing_file_not_an_unknown_name() -> None:
    with pytest.raises(edgerun.ModelNotFoundError):
        edgerun.load("models/student.onnx")


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"backend": "openvino"}, r"unknown backend 'openvino'; choose one of: auto, onnxruntime, tensorrt"),
        ({"device": "npu"}, r"unknown device 'npu'; choose one of: auto, cpu, cuda, cuda:N"),
        ({"device": "cuda:x"}, r"unknown device 'cuda:x'"),
        ({"precision": "int4"}, r"unknown precision 'int4'; choose one of: auto, fp32, fp16, bf16, int8"),
        ({"threads": 0}, r"threads must be an integer >= 1"),
        ({"batch_size": 4}, r"unknown option batch_size for backend onnxruntime; known: graph_optimization, threads"),
    ],
)
def test_bad_load_arguments_raise_config_error(student_path: Path, kwargs: dict[str, object], pattern: str) -> None:
    with pytest.raises(edgerun.ConfigError, match=pattern):
        edgerun.load(student_path, **kwargs)  # type: ignore[arg-type]


def test_model_file_describes_the_bundled_models() -> None:
    student = ModelFile.open(models.path("digits-student"))
    assert [s.describe() for s in student.inputs] == ["image float32 [batch, 1, 8, 8]"]
    assert [s.describe() for s in student.outputs] == ["logits float32 [batch, 10]"]
    assert student.precision == "fp32"
    assert student.opset == 17
    assert student.has_dynamic_batch
    ppocr = ModelFile.open(models.path("ppocr-cls"))
    assert ppocr.inputs[0].shape == ("?", 3, "?", "?")  # exported with -1 and '?' dims
    assert ppocr.sha256 == "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"
    assert ppocr.producer == "PaddlePaddle"


def test_stored_precision_detects_fp16_weights(tmp_path: Path) -> None:
    from onnx import TensorProto

    path = onnx_factory.save(onnx_factory.matmul_with_weight(TensorProto.FLOAT16), tmp_path / "half.onnx")
    model = ModelFile.open(path)
    assert model.precision == "fp16"
    assert model.inputs[0].dtype == np.float16
    with pytest.raises(edgerun.UnsupportedPrecisionError, match="precision fp32 is not possible for this fp16 model"):
        edgerun.load(path, precision="fp32")
    with edgerun.load(path) as session:
        assert session.plan.precision == "fp16"
        y = session.run(np.ones((2, 4), np.float16))["y"]
    assert y.dtype == np.float16
