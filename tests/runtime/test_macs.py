"""MACs counted from an ONNX graph: each counted operator against its formula, and the bundled models' figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from edgerun import models
from edgerun.errors import InputError
from edgerun.runtime.macs import count_macs


def conv_gemm_matmul(cin: int, cout: int, kernel: int, hidden: int, group: int) -> onnx.ModelProto:
    """x [N, cin, 8, 8] -> Conv (cout, kernel, 'same', groups) -> GlobalAveragePool -> Flatten -> Gemm -> MatMul."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((cout, cin // group, kernel, kernel)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal((cout, hidden)).astype(np.float32), "g"),
        numpy_helper.from_array(rng.standard_normal((hidden, 3)).astype(np.float32), "m"),
    ]
    pad = kernel // 2
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[pad] * 4, group=group),
        helper.make_node("GlobalAveragePool", ["c"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "g"], ["h"]),
        helper.make_node("MatMul", ["h", "m"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "macs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", cin, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@settings(max_examples=15, deadline=None)
@given(st.sampled_from([(4, 8, 1), (4, 8, 2), (8, 8, 4), (3, 6, 3)]), st.sampled_from([1, 3]),
       st.integers(2, 32), st.integers(1, 4))  # fmt: skip
def test_each_operator_is_counted_by_its_formula(
    tmp_path_factory: pytest.TempPathFactory, channels: tuple[int, int, int], kernel: int, hidden: int, batch: int
) -> None:
    cin, cout, group = channels
    path = tmp_path_factory.mktemp("macs") / "m.onnx"
    onnx.save(conv_gemm_matmul(cin, cout, kernel, hidden, group), str(path))
    conv = batch * cout * 8 * 8 * (cin // group) * kernel * kernel
    gemm = batch * hidden * cout  # the Gemm reads the pooled conv output: K = cout, N = hidden
    matmul = batch * 3 * hidden
    assert count_macs(path, {"x": (batch, cin, 8, 8)}) == conv + gemm + matmul


def test_the_bundled_models_figures() -> None:
    """digits-teacher's convolutions and linears at batch 1, and ppocr-cls's 16 M quoted in the benchmarks."""
    assert count_macs(models.path("digits-teacher"), {"image": (1, 1, 8, 8)}) == (
        64 * 32 * 9 + 64 * 64 * 32 * 9 + 16 * 128 * 64 * 9 + 512 * 256 + 256 * 10
    )
    assert 16e6 < count_macs(models.path("ppocr-cls"), {"x": (1, 3, 48, 192)}) < 17e6


def test_an_input_without_a_shape_is_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(conv_gemm_matmul(4, 8, 3, 8, 1), str(path))
    with pytest.raises(InputError, match="no shape given for input x"):
        count_macs(path, {"image": (1, 4, 8, 8)})
