"""INT8 coverage of compute ops inside ``If``/``Loop`` subgraphs, checked against the output graph itself.

Measured on the installed onnxruntime: static (QDQ) quantization leaves every subgraph in float
(``EnableSubgraph`` does not change that), dynamic quantization quantizes MatMul inside subgraphs
once ``EnableSubgraph`` is set (edgerun sets it). What `quantize` reports must match what a walk
of the written graph finds, subgraphs included, and float subgraph ops must be named with the reason.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgerun.precision.calibration import CalibrationData
from edgerun.precision.quantize import QuantizeOptions, _coverage, quantize

from .. import onnx_factory

RNG = np.random.default_rng(11)
W_IN = RNG.standard_normal((8, 8)).astype(np.float32)
W_OUT = RNG.standard_normal((8, 8)).astype(np.float32)
COMPUTE = {"MatMul", "Gemm", "Conv", "ConvTranspose", "LSTM", "GRU"}
INTEGER = {"MatMulInteger", "ConvInteger", "QLinearMatMul", "QLinearConv", "DynamicQuantizeMatMul"}


def _model(
    nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], inits: list[onnx.TensorProto]
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "subgraphs", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])], inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgerun-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _branches(then_out: str) -> tuple[onnx.GraphProto, onnx.GraphProto]:
    """then: Relu(x @ W_IN) (weight in the branch's own initializers); else: x."""
    then = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w_in"], ["mm"], name="then_matmul"),
            helper.make_node("Relu", ["mm"], [then_out], name="then_relu"),
        ],
        "then",
        [],
        [helper.make_tensor_value_info(then_out, TensorProto.FLOAT, ["batch", 8])],
        [numpy_helper.from_array(W_IN, "w_in")],
    )
    other = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["passed"], name="else_identity")],
        "else",
        [],
        [helper.make_tensor_value_info("passed", TensorProto.FLOAT, ["batch", 8])],
    )
    return then, other


def sample_rate_model(outer_matmul: bool = True) -> onnx.ModelProto:
    """x [batch, 8], scalar int64 ``sr``; ``If(sr == 16000)`` then MatMul+Relu else x; then an outer MatMul."""
    then, other = _branches("then_y")
    last = "branch" if outer_matmul else "y"
    nodes = [
        helper.make_node("Constant", [], ["k16000"], value=numpy_helper.from_array(np.array(16000, np.int64))),
        helper.make_node("Equal", ["sr", "k16000"], ["is_16k"], name="is_16k"),
        helper.make_node("If", ["is_16k"], [last], then_branch=then, else_branch=other, name="by_rate"),
    ]
    if outer_matmul:
        nodes.append(helper.make_node("MatMul", ["branch", "w_out"], ["y"], name="outer_matmul"))
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8]),
        helper.make_tensor_value_info("sr", TensorProto.INT64, []),
    ]
    return _model(nodes, inputs, [numpy_helper.from_array(W_OUT, "w_out")] if outer_matmul else [])


def sign_model(outer_matmul: bool = True) -> onnx.ModelProto:
    """The same If, its condition computed from x (``ReduceMax(x) > 0``): one float input, for static calibration."""
    then, other = _branches("then_y")
    last = "branch" if outer_matmul else "y"
    nodes = [
        helper.make_node("ReduceMax", ["x"], ["peak"], keepdims=0, name="peak"),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, np.float32))),
        helper.make_node("Greater", ["peak", "zero"], ["positive"], name="positive"),
        helper.make_node("If", ["positive"], [last], then_branch=then, else_branch=other, name="by_sign"),
    ]
    if outer_matmul:
        nodes.append(helper.make_node("MatMul", ["branch", "w_out"], ["y"], name="outer_matmul"))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])]
    return _model(nodes, inputs, [numpy_helper.from_array(W_OUT, "w_out")] if outer_matmul else [])


def loop_model() -> onnx.ModelProto:
    """A Loop of 3 trips whose body holds an If whose then-branch holds the MatMul: subgraphs two deep."""
    then, other = _branches("then_y")
    # Inside the body the carried value is "x": the branches read it from the outer scope (the body).
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going"),
            helper.make_node("If", ["cond_in"], ["x_next"], then_branch=then, else_branch=other, name="in_loop"),
        ],
        "body",
        [
            helper.make_tensor_value_info("trip", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x_next", TensorProto.FLOAT, ["batch", 8]),
        ],
    )
    nodes = [
        helper.make_node("Constant", [], ["trips"], value=numpy_helper.from_array(np.array(3, np.int64))),
        helper.make_node("Constant", [], ["go"], value=numpy_helper.from_array(np.array(True))),
        helper.make_node("Loop", ["trips", "go", "x0"], ["looped"], body=body, name="loop"),
        helper.make_node("MatMul", ["looped", "w_out"], ["y"], name="outer_matmul"),
    ]
    inputs = [helper.make_tensor_value_info("x0", TensorProto.FLOAT, ["batch", 8])]
    return _model(nodes, inputs, [numpy_helper.from_array(W_OUT, "w_out")])


def graph_census(path: Path) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """(integer ops anywhere, float compute ops anywhere, float compute ops inside subgraphs), read from the file.

    A compute op counts as quantized when it is an integer operator, or when its weight comes out of a
    DequantizeLinear (static QDQ); otherwise float.
    """
    model = onnx.load(str(path))
    integer: Counter[str] = Counter()
    floats: Counter[str] = Counter()
    nested: Counter[str] = Counter()

    def walk(graph: onnx.GraphProto, dequantized: set[str], depth: int) -> None:
        dequantized = dequantized | {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
        for node in graph.node:
            if node.op_type in INTEGER:
                integer[node.op_type] += 1
            elif node.op_type in COMPUTE and node.input[1] not in dequantized:
                floats[node.op_type] += 1
                if depth:
                    nested[node.op_type] += 1
            for attr in node.attribute:
                for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                    walk(sub, dequantized, depth + 1)

    walk(model.graph, set(), 0)
    return integer, floats, nested


def run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def calibration(count: int = 16) -> CalibrationData:
    return CalibrationData({"x": np.random.default_rng(0).random((count, 8), dtype=np.float32)})


# --- dynamic: the If on a scalar sample rate ------------------------------------------------------


def test_dynamic_quantizes_the_matmul_inside_the_if_and_counts_it(tmp_path: Path) -> None:
    source = onnx_factory.save(sample_rate_model(), tmp_path / "vad.onnx")
    result = quantize(source, tmp_path / "vad-int8.onnx", None, QuantizeOptions(mode="dynamic", force=True))
    integer, floats, nested = graph_census(result.output)
    assert integer == Counter({"MatMulInteger": 2}), "the then-branch MatMul and the outer one"
    assert not floats
    assert not nested
    assert result.quantized == dict(integer)
    assert result.subgraph_quantized == {"MatMulInteger": 1}
    assert result.float_ops == {}
    assert result.subgraph_float_ops == {}
    assert result.warnings == []
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    for rate in (16000, 8000):  # both branches still run, close to fp32
        feeds = {"x": x, "sr": np.array(rate, np.int64)}
        want, got = run(source, feeds), run(result.output, feeds)
        assert np.allclose(got, want, atol=0.1 * np.abs(want).max()), rate


def test_dynamic_exclusion_by_type_keeps_subgraph_ops_float_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = onnx_factory.save(sample_rate_model(), tmp_path / "vad.onnx")
    with caplog.at_level(logging.WARNING, logger="edgerun"):
        result = quantize(source, tmp_path / "q.onnx", None, QuantizeOptions(mode="dynamic", exclude=("MatMul",)))
    integer, floats, nested = graph_census(result.output)
    assert not integer
    assert floats == Counter({"MatMul": 2})
    assert nested == Counter({"MatMul": 1})
    assert result.quantized == {}
    assert result.float_ops == {"MatMul": 2}
    assert result.subgraph_float_ops == {"MatMul": 1}
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith(
        "NOTHING WAS QUANTIZED in vad.onnx: 1 MatMul inside If subgraphs left in float"
    )
    assert "excluded" in result.warnings[0]
    assert any("inside If subgraphs" in r.message for r in caplog.records)


def test_dynamic_walks_a_loop_body_and_the_if_inside_it(tmp_path: Path) -> None:
    source = onnx_factory.save(loop_model(), tmp_path / "loop.onnx")
    result = quantize(source, tmp_path / "loop-int8.onnx", None, QuantizeOptions(mode="dynamic"))
    integer, floats, _ = graph_census(result.output)
    assert result.quantized == dict(integer) == {"MatMulInteger": 2}
    assert result.subgraph_quantized == {"MatMulInteger": 1}
    assert not floats
    assert result.float_ops == {}
    assert result.warnings == []
    x = np.random.default_rng(2).random((2, 8), dtype=np.float32)
    want, got = run(source, {"x0": x}), run(result.output, {"x0": x})
    assert np.allclose(got, want, atol=0.1 * np.abs(want).max())


# --- static QDQ: onnxruntime leaves subgraphs in float ---------------------------------------------


def test_static_leaves_the_if_branch_float_and_names_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = onnx_factory.save(sign_model(), tmp_path / "sign.onnx")
    with caplog.at_level(logging.WARNING, logger="edgerun"):
        result = quantize(source, tmp_path / "sign-int8.onnx", calibration(), cache=tmp_path / "cache")
    integer, floats, nested = graph_census(result.output)
    assert not integer
    assert floats == Counter({"MatMul": 1})
    assert nested == Counter({"MatMul": 1})
    assert result.quantized == {"MatMul": 1}, "the outer MatMul has an INT8 weight"
    assert result.float_ops == {"MatMul": 1}
    assert result.subgraph_float_ops == {"MatMul": 1}
    assert result.subgraph_quantized == {}
    assert len(result.warnings) == 1
    warning = result.warnings[0]
    assert warning.startswith("sign.onnx: 1 MatMul inside If subgraphs left in float")
    assert "does not quantize subgraphs in static (QDQ) mode" in warning
    assert "NOTHING WAS QUANTIZED" not in warning
    assert any("1 MatMul inside If subgraphs" in r.message for r in caplog.records)


def test_static_with_every_compute_op_in_subgraphs_says_why_nothing_was_quantized(tmp_path: Path) -> None:
    source = onnx_factory.save(sign_model(outer_matmul=False), tmp_path / "inner.onnx")
    result = quantize(source, tmp_path / "inner-int8.onnx", calibration(), cache=tmp_path / "cache")
    _, floats, nested = graph_census(result.output)
    assert floats == nested == Counter({"MatMul": 1})
    assert result.quantized == {}
    assert result.float_ops == result.subgraph_float_ops == {"MatMul": 1}
    assert len(result.warnings) == 1
    warning = result.warnings[0]
    assert warning.startswith("NOTHING WAS QUANTIZED in inner.onnx: 1 MatMul inside If subgraphs left in float")
    assert "static (QDQ)" in warning
    assert "the top-level graph has no compute op of its own" in warning


def test_dynamic_on_the_same_model_quantizes_what_static_could_not(tmp_path: Path) -> None:
    source = onnx_factory.save(sign_model(outer_matmul=False), tmp_path / "inner.onnx")
    result = quantize(source, tmp_path / "inner-dyn.onnx", None, QuantizeOptions(mode="dynamic"))
    assert result.quantized == result.subgraph_quantized == {"MatMulInteger": 1}
    assert result.warnings == []


# --- the counter alone, on graphs quantized elsewhere ----------------------------------------------


def _dq(weight: str) -> list[onnx.NodeProto]:
    return [helper.make_node("DequantizeLinear", [f"{weight}_q", f"{weight}_s"], [f"{weight}_dq"])]


def _int8(name: str) -> list[onnx.TensorProto]:
    return [
        numpy_helper.from_array(np.ones((8, 8), np.int8), f"{name}_q"),
        numpy_helper.from_array(np.array(0.1, np.float32), f"{name}_s"),
    ]


def test_coverage_sees_int8_weights_from_the_outer_graph_and_from_the_subgraph_itself(tmp_path: Path) -> None:
    """then: MatMul on a weight dequantized in the outer graph; else: MatMul on its own INT8 initializer,
    then a float MatMul; the outer graph: one float MatMul."""
    then = helper.make_graph(
        [helper.make_node("MatMul", ["x", "outer_dq"], ["t"], name="then_outer_weight")],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, ["batch", 8])],
    )
    other = helper.make_graph(
        [
            *_dq("inner"),
            helper.make_node("MatMul", ["x", "inner_dq"], ["e1"], name="else_own_weight"),
            helper.make_node("MatMul", ["e1", "w_float"], ["e"], name="else_float"),
        ],
        "else",
        [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, ["batch", 8])],
        _int8("inner"),
    )
    nodes = [
        *_dq("outer"),
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.array(True))),
        helper.make_node("If", ["c"], ["b"], then_branch=then, else_branch=other, name="if"),
        helper.make_node("MatMul", ["b", "w_float"], ["y"], name="outer_float"),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])]
    model = _model(nodes, inputs, [*_int8("outer"), numpy_helper.from_array(W_OUT, "w_float")])
    coverage = _coverage(onnx_factory.save(model, tmp_path / "m.onnx"))
    assert coverage.qdq_nodes == 2
    assert coverage.quantized == coverage.subgraph_quantized == {"MatMul": 2}
    assert coverage.float_ops == {"MatMul": 2}
    assert coverage.subgraph_float_ops == {"MatMul": 1}
    assert coverage.float_hosts == {"If": 1}
    assert coverage.top_level_compute == 1


def test_onnxruntime_static_qdq_still_skips_subgraphs_even_with_enable_subgraph(tmp_path: Path) -> None:
    """Tripwire for the static warning's claim: if a newer onnxruntime quantizes If branches in QDQ, this fails."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    source = onnx_factory.save(sign_model(), tmp_path / "sign.onnx")
    output = tmp_path / "ort-static.onnx"
    quantize_static(
        str(source),
        str(output),
        calibration(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        extra_options={"EnableSubgraph": True},
    )
    _, floats, nested = graph_census(output)
    assert floats == nested == Counter({"MatMul": 1})


def test_dynamic_falls_back_to_the_top_level_when_the_quantizer_fails_on_subgraphs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime.quantization as ortq

    real = ortq.quantize_dynamic

    def fails_on_subgraphs(*args: object, **kwargs: object) -> None:
        if kwargs.get("extra_options"):
            raise RuntimeError("unsupported subgraph")
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ortq, "quantize_dynamic", fails_on_subgraphs)
    source = onnx_factory.save(sample_rate_model(), tmp_path / "vad.onnx")
    result = quantize(source, tmp_path / "q.onnx", None, QuantizeOptions(mode="dynamic"))
    assert result.quantized == {"MatMulInteger": 1}
    assert result.subgraph_float_ops == {"MatMul": 1}
    assert result.warnings == [
        "vad.onnx: 1 MatMul inside If subgraphs left in float: onnxruntime's dynamic quantizer failed on the "
        "subgraphs (unsupported subgraph)."
    ]
