"""What the installed ONNX Runtime can run, probed once instead of assumed from the newest release.

JetPack 6 users get older releases (1.18-1.20 era) than the package index's newest, and their CPU
kernels differ: onnxruntime 1.20.1 has no ``ConvInteger`` for int8 weights ("Could not find an
implementation for ConvInteger(10)"), which onnxruntime 1.32 runs. Each probe builds a one-node model
and opens it, so the answer is this installation's, whatever its version says.
"""

from __future__ import annotations

import functools


@functools.cache
def conv_integer_int8_weights() -> bool:
    """Whether the CPU execution provider runs ``ConvInteger`` with uint8 activations and int8 weights."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((1, 1, 1, 1), np.int8), "w")
    graph = helper.make_graph(
        [helper.make_node("ConvInteger", ["x", "w"], ["y"])],
        "conv_integer_probe",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 1, 2, 2])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 10)])
    model.ir_version = 7
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception:  # "Could not find an implementation for ConvInteger(10)": ORT raises its own types
        return False
    return True


def onnxruntime_version() -> str:
    import onnxruntime as ort

    return str(ort.__version__)
