"""`ModelFile.parameters`: weight elements, the same for a model and its FP16, Q/DQ and dynamically quantized forms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgerun import models
from edgerun.runtime.modelfile import ModelFile

from .. import onnx_factory

VOCAB, WIDTH, HIDDEN, TOKENS = 60, 16, 48, 5


def encoder_block() -> onnx.ModelProto:
    """A small transformer-style block: token embedding (Gather), MatMul + bias, LayerNorm, MatMul, with an int64
    Reshape shape and one weight held by a Constant node. Weights: 60*16 + 16*48 + 48 + 48*2 + 48*16 + 16 (Constant)."""
    rng = np.random.default_rng(0)
    weights = {
        "embedding": rng.standard_normal((VOCAB, WIDTH)),
        "W1": rng.standard_normal((WIDTH, HIDDEN)),
        "b1": rng.standard_normal(HIDDEN),
        "ln_scale": np.ones(HIDDEN),
        "ln_bias": np.zeros(HIDDEN),
        "W2": rng.standard_normal((HIDDEN, WIDTH)),
    }
    initializers = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    initializers.append(numpy_helper.from_array(np.array([-1, TOKENS * WIDTH], np.int64), "flat_shape"))
    constant = numpy_helper.from_array(rng.standard_normal(WIDTH).astype(np.float32), "out_bias_value")
    nodes = [
        helper.make_node("Gather", ["embedding", "ids"], ["tokens"], name="embed"),
        helper.make_node("MatMul", ["tokens", "W1"], ["h"], name="fc1"),
        helper.make_node("Add", ["h", "b1"], ["hb"], name="fc1_bias"),
        helper.make_node(
            "LayerNormalization", ["hb", "ln_scale", "ln_bias"], ["normed"], name="norm", axis=-1, epsilon=1e-5
        ),
        helper.make_node("Relu", ["normed"], ["act"], name="act"),
        helper.make_node("MatMul", ["act", "W2"], ["out"], name="fc2"),
        helper.make_node("Constant", [], ["out_bias"], name="out_bias_const", value=constant),
        helper.make_node("Add", ["out", "out_bias"], ["outb"], name="fc2_bias"),
        helper.make_node("Reshape", ["outb", "flat_shape"], ["y"], name="flatten"),
    ]
    graph = helper.make_graph(
        nodes,
        "encoder_block",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", TOKENS])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", TOKENS * WIDTH])],
        initializers,
    )
    return onnx_factory._model(graph)


WEIGHTS = VOCAB * WIDTH + WIDTH * HIDDEN + HIDDEN + 2 * HIDDEN + HIDDEN * WIDTH + WIDTH


@pytest.fixture(scope="module")
def fp32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return onnx_factory.save(encoder_block(), tmp_path_factory.mktemp("params") / "block.onnx")


def test_the_fp32_model_counts_its_weights_not_its_shapes(fp32: Path) -> None:
    assert ModelFile.open(fp32).parameters == WEIGHTS


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("weight_type", ["QInt8", "QUInt8"])
def test_dynamic_quantization_keeps_the_count(fp32: Path, tmp_path: Path, per_channel: bool, weight_type: str) -> None:
    """INT8 weights feeding MatMulInteger / Gather count; their scales and zero points do not."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = tmp_path / "dynamic.onnx"
    quantize_dynamic(
        fp32,
        target,
        weight_type=getattr(QuantType, weight_type),
        per_channel=per_channel,
        op_types_to_quantize=["MatMul", "Gather"],
    )
    quantized = ModelFile.open(target)
    ops = {node.op_type for node in onnx.load(str(target)).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    assert quantized.precision == "int8"
    assert quantized.parameters == WEIGHTS
    assert quantized.size_bytes < ModelFile.open(fp32).size_bytes


def test_fp16_and_qdq_versions_of_a_bundled_model_keep_the_count(tmp_path: Path) -> None:
    from edgerun.precision.calibration import CalibrationData
    from edgerun.precision.convert import convert_fp16
    from edgerun.precision.quantize import QuantizeOptions, quantize

    teacher = models.path("digits-teacher")
    expected = ModelFile.open(teacher).parameters
    convert_fp16(teacher, tmp_path / "fp16.onnx")
    assert ModelFile.open(tmp_path / "fp16.onnx").parameters == expected
    calibration = CalibrationData({"image": np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32)})
    for target in ("cpu", "tensorrt"):
        quantize(teacher, tmp_path / f"{target}.onnx", calibration, QuantizeOptions(target=target))
        assert ModelFile.open(tmp_path / f"{target}.onnx").parameters == expected, target
