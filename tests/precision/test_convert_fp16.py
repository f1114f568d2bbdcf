"""FP16 conversion: FP16 weights, FP32 inputs and outputs, checked by running it, and what it refuses."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import edgerun
from edgerun import models
from edgerun.errors import ConversionError
from edgerun.precision.convert import SENSITIVE_OPS, ConvertResult, convert_fp16
from edgerun.runtime.modelfile import ModelFile

from .. import onnx_factory
from ..precision_helpers import correct_on_digits_test, digits_test, model_proto, relu_only

TEACHER = models.path("digits-teacher")
CLS = models.path("ppocr-cls")


@pytest.fixture(scope="module")
def teacher_fp16(tmp_path_factory: pytest.TempPathFactory) -> ConvertResult:
    return convert_fp16(TEACHER, tmp_path_factory.mktemp("fp16") / "teacher-fp16.onnx")


def test_io_stays_float32_and_weights_become_float16(teacher_fp16: ConvertResult) -> None:
    proto = onnx.load(str(teacher_fp16.output))
    assert [(i.name, i.type.tensor_type.elem_type) for i in proto.graph.input] == [("image", TensorProto.FLOAT)]
    assert [(o.name, o.type.tensor_type.elem_type) for o in proto.graph.output] == [("logits", TensorProto.FLOAT)]
    kinds = [t.data_type for t in proto.graph.initializer]
    assert kinds.count(TensorProto.FLOAT16) == teacher_fp16.fp16_tensors == 10
    assert TensorProto.FLOAT not in kinds
    model = ModelFile.open(teacher_fp16.output)
    assert model.precision == "fp16"
    assert model.parameters == ModelFile.open(TEACHER).parameters
    assert model.size_bytes < 0.6 * ModelFile.open(TEACHER).size_bytes


def test_the_validation_run_is_reported(teacher_fp16: ConvertResult) -> None:
    assert teacher_fp16.validated_shapes == {"image": [1, 1, 8, 8]}
    assert teacher_fp16.max_abs_error is not None
    assert 0 < teacher_fp16.max_abs_error < 0.05
    assert set(SENSITIVE_OPS) <= set(teacher_fp16.blocked_ops)
    assert teacher_fp16.seconds > 0


def test_fp16_accuracy_equals_fp32_within_one_sample(teacher_fp16: ConvertResult) -> None:
    assert abs(correct_on_digits_test(teacher_fp16.output) - correct_on_digits_test(TEACHER)) <= 1
    images, _ = digits_test()
    with edgerun.load(teacher_fp16.output) as half, edgerun.load(TEACHER) as full:
        got, want = half.run(images)["logits"], full.run(images)["logits"]
    assert got.dtype == np.float32
    assert np.abs(got - want).max() < 0.05
    assert (got.argmax(axis=1) == want.argmax(axis=1)).mean() >= 359 / 360


def test_an_fp16_model_is_refused(tmp_path: Path, teacher_fp16: ConvertResult) -> None:
    with pytest.raises(ConversionError, match=r"teacher-fp16\.onnx: FP16 conversion starts from an fp32 model, this"):
        convert_fp16(teacher_fp16.output, tmp_path / "again.onnx")
    half = onnx_factory.save(onnx_factory.matmul_with_weight(TensorProto.FLOAT16), tmp_path / "half.onnx")
    with pytest.raises(ConversionError, match=r"half\.onnx: .* this one is fp16"):
        convert_fp16(half, tmp_path / "again.onnx")
    assert not (tmp_path / "again.onnx").exists()


def test_an_int8_model_is_refused(tmp_path: Path) -> None:
    from edgerun.precision.quantize import QuantizeOptions, quantize

    mm = onnx_factory.save(onnx_factory.matmul_with_weight(), tmp_path / "mm.onnx")
    int8 = quantize(mm, tmp_path / "mm-int8.onnx", None, QuantizeOptions(mode="dynamic")).output
    with pytest.raises(ConversionError, match=r"this one is int8"):
        convert_fp16(int8, tmp_path / "x.onnx")


def test_a_model_without_float_weights_is_refused(tmp_path: Path) -> None:
    path = onnx_factory.save(relu_only(), tmp_path / "relu.onnx")
    with pytest.raises(ConversionError, match=r"relu\.onnx: FP16 conversion changed no weights"):
        convert_fp16(path, tmp_path / "relu16.onnx")
    assert os.listdir(tmp_path) == ["relu.onnx"]


def test_models_with_free_dims_are_only_loaded_unless_shapes_are_given(tmp_path: Path) -> None:
    loaded = convert_fp16(CLS, tmp_path / "cls16.onnx")
    assert loaded.max_abs_error is None
    assert loaded.validated_shapes is None
    assert ModelFile.open(loaded.output).precision == "fp16"
    with edgerun.load(loaded.output) as session:  # it does load and run
        (out,) = session.run(np.zeros((1, 3, 48, 192), np.float32)).values()
        assert out.shape == (1, 2)
    run = convert_fp16(CLS, tmp_path / "cls16-run.onnx", shapes={"x": [2, 3, 48, 160]})
    assert run.validated_shapes == {"x": [2, 3, 48, 160]}
    assert run.max_abs_error is not None
    assert run.max_abs_error < 0.01
    assert run.output.read_bytes() == loaded.output.read_bytes(), "shapes only change the check, not the model"


@pytest.mark.parametrize("shapes", [{"x": [1, 3, 48]}, {"input": [1, 3, 48, 192]}])
def test_shapes_that_do_not_fit_are_an_error(tmp_path: Path, shapes: dict[str, list[int]]) -> None:
    with pytest.raises(edgerun.EdgerunError):
        convert_fp16(CLS, tmp_path / "cls16.onnx", shapes=shapes)


def exp_head() -> onnx.ModelProto:
    """y = Exp(x @ W): Exp is on the default block list."""
    weight = numpy_helper.from_array(np.full((4, 4), 0.1, np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"), helper.make_node("Exp", ["h"], ["y"], name="exp")],
        "exp_head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [weight],
    )
    return model_proto(graph)


def _input_types(path: Path, op: str) -> list[int]:
    """Element types reaching ``op``'s inputs, from the Cast nodes in front of it (FLOAT if uncast)."""
    proto = onnx.load(str(path))
    producer = {out: n for n in proto.graph.node for out in n.output}
    node = next(n for n in proto.graph.node if n.op_type == op)
    kinds = []
    for name in node.input:
        source = producer.get(name)
        if source is not None and source.op_type == "Cast":
            kinds.append(next(a.i for a in source.attribute if a.name == "to"))
        elif source is None and name in {t.name for t in proto.graph.initializer}:
            kinds.append(next(t.data_type for t in proto.graph.initializer if t.name == name))
        else:
            kinds.append(-1)  # produced by another converted node: FLOAT16
    return kinds


def test_sensitive_ops_stay_float32_and_block_adds_more(tmp_path: Path) -> None:
    path = onnx_factory.save(exp_head(), tmp_path / "exp.onnx")
    default = convert_fp16(path, tmp_path / "exp16.onnx")
    assert "Exp" in default.blocked_ops
    assert _input_types(default.output, "Exp") == [TensorProto.FLOAT]
    assert _input_types(default.output, "MatMul")[1] == TensorProto.FLOAT16
    unblocked = convert_fp16(path, tmp_path / "exp16-all.onnx", block=())
    assert "Exp" not in unblocked.blocked_ops
    assert _input_types(unblocked.output, "Exp") == [-1], "without the block list Exp runs in FP16"
    with pytest.raises(ConversionError, match="changed no weights"):
        convert_fp16(path, tmp_path / "none.onnx", block=(*SENSITIVE_OPS, "MatMul"))
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    with edgerun.load(default.output) as session:
        y = session.run({"x": x})["y"]
    assert np.allclose(y, np.exp(x @ np.full((4, 4), 0.1, np.float32)), rtol=2e-3)


def test_conversion_writes_only_its_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    out = tmp_path / "out"
    out.mkdir()
    convert_fp16(TEACHER, out / "t16.onnx")
    assert os.listdir(work) == []
    assert os.listdir(out) == ["t16.onnx"]


def test_weights_beyond_fp16_range_are_counted_as_clamped(tmp_path: Path) -> None:
    model = onnx_factory.matmul_with_weight()
    weight = numpy_helper.to_array(model.graph.initializer[0]).copy()
    weight[0, 0], weight[1, 1] = 1e-9, 1e6
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(weight, "W"))
    path = onnx_factory.save(model, tmp_path / "wide.onnx")
    result = convert_fp16(path, tmp_path / "wide16.onnx")
    assert result.clamped_values >= 1
    plain = convert_fp16(
        onnx_factory.save(onnx_factory.matmul_with_weight(), tmp_path / "mm.onnx"), tmp_path / "p.onnx"
    )
    assert plain.clamped_values == 0


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(height=st.integers(33, 64), width=st.integers(16, 256), batch=st.integers(1, 3))
def test_fp16_ppocr_cls_tracks_fp32_at_any_shape(tmp_path: Path, height: int, width: int, batch: int) -> None:
    """Any shape the FP32 model is defined at by ONNX: below 33 rows its last MaxPool (kernel 2, stride 2, no
    padding) gets 1 row, which ONNX's formula floors to 0 (onnxruntime 1.20 then fails; 1.32 gives 1 row)."""
    target = tmp_path / "cls16.onnx"
    if not target.exists():
        shutil.copy(convert_fp16(CLS, tmp_path / "made.onnx").output, target)
    x = np.random.default_rng(height * width).random((batch, 3, height, width), dtype=np.float32) * 2 - 1
    with edgerun.load(target) as half, edgerun.load(CLS) as full:
        (got,) = half.run(x).values()
        (want,) = full.run(x).values()
    assert np.abs(got - want).max() < 0.02


def test_kept_nodes_stay_fp32_and_are_reported(tmp_path: Path, teacher_fp16: ConvertResult) -> None:
    assert teacher_fp16.kept_nodes == ()
    assert teacher_fp16.total_nodes == 12
    head = "/head/head.4/Gemm"
    mixed = convert_fp16(TEACHER, tmp_path / "mixed.onnx", keep=[head])
    assert mixed.kept_nodes == (head,)
    assert mixed.total_nodes == 12
    assert mixed.fp16_tensors == teacher_fp16.fp16_tensors - 2
    proto = onnx.load(str(mixed.output))
    gemm = next(n for n in proto.graph.node if n.name == head)
    kinds = {t.name: t.data_type for t in proto.graph.initializer}
    assert [kinds[name] for name in gemm.input[1:]] == [TensorProto.FLOAT, TensorProto.FLOAT]
    assert abs(correct_on_digits_test(mixed.output) - correct_on_digits_test(TEACHER)) <= 1
    assert mixed.max_abs_error is not None
    assert mixed.max_abs_error < 0.05


def test_nodes_to_keep_must_exist(tmp_path: Path) -> None:
    with pytest.raises(edgerun.EdgerunError, match=r"not found in the model: nonesuch"):
        convert_fp16(TEACHER, tmp_path / "x.onnx", keep=["nonesuch"])
    assert not (tmp_path / "x.onnx").exists()


def cdist_model() -> onnx.ModelProto:
    """x @ W -> com.microsoft CDist: onnxruntime runs it in FP32 only (float and double kernels)."""
    rng = np.random.default_rng(12)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
            helper.make_node("CDist", ["h", "C"], ["y"], name="cdist", domain="com.microsoft", metric="euclidean"),
        ],
        "cdist",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [
            numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "W"),
            numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), "C"),
        ],
    )
    return onnx_factory._model(graph, extra_domains=("com.microsoft",))


def test_a_model_onnxruntime_rejects_names_the_source_never_the_temporary_file(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    cache = tmp_path / "cache-4d2f"
    cache.mkdir()
    source = onnx_factory.save(cdist_model(), tmp_path / "models" / "cdist.onnx")
    target = cache / ".fp16-0123abcd.onnx.x7k2p9qz.tmp"  # where an artifact is converted: a temporary name
    with pytest.raises(ConversionError) as raised:
        convert_fp16(source, target)
    message = str(raised.value)
    assert message.startswith(f"{source}: the FP16 model does not load: ")
    assert "cache-4d2f" not in message
    assert ".tmp" not in message
    # the whole of onnxruntime's message, to its last words (not cut at a line or a colon)
    assert "Type 'tensor(float16)' of input parameter (h) of operator (CDist) in node (cdist) is invalid." in message
    assert "add its type to block" in message
    assert os.listdir(cache) == []
    blocked = convert_fp16(source, target, block=(*SENSITIVE_OPS, "CDist"))
    assert blocked.kept_nodes == ("cdist",)
    assert blocked.max_abs_error is not None
    assert blocked.max_abs_error < 0.01
