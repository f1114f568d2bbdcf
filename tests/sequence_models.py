"""Small ONNX models built in code for sequence, stateful and text tests (opset 17, no torch).

Weights come from seeded numpy generators, so every builder returns the same model on every call
and the numpy references below can recompute the same weights from the same sizes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FloatArray = np.ndarray


def save(model: onnx.ModelProto, path: Path) -> Path:
    """Write ``model`` to ``path`` and return the path."""
    onnx.save(model, str(path))
    return path


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgerun-tests")
    model.ir_version = 8
    return model


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _normal(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> FloatArray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _info(name: str, dtype: int, shape: list[str | int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def _ints(name: str, values: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, np.int64), name)


def _sigmoid(x: FloatArray) -> FloatArray:
    result: FloatArray = 1.0 / (1.0 + np.exp(-x))
    return result


# --- 1. GRU step ---------------------------------------------------------------------------------


def gru_weights(features: int = 8, hidden: int = 16, classes: int = 3) -> dict[str, FloatArray]:
    """The GRU classifier's weights in ONNX layout: W [1, 3H, F], R [1, 3H, H], B [1, 6H], W_out, b_out."""
    rng = _rng(1)
    return {
        "W": _normal(rng, (1, 3 * hidden, features), 0.3),
        "R": _normal(rng, (1, 3 * hidden, hidden), 0.3),
        "B": _normal(rng, (1, 6 * hidden), 0.1),
        "W_out": _normal(rng, (hidden, classes), 0.3),
        "b_out": _normal(rng, (classes,), 0.1),
    }


def gru_step_model(features: int = 8, hidden: int = 16, classes: int = 3) -> onnx.ModelProto:
    """One streaming GRU step: x [batch, F], h [1, batch, H] -> logits [batch, classes], hn [1, batch, H]."""
    weights = gru_weights(features, hidden, classes)
    inits = [numpy_helper.from_array(value, name) for name, value in weights.items()]
    inits.append(_ints("axis0", [0]))
    nodes = [
        helper.make_node("Unsqueeze", ["x", "axis0"], ["x_seq"]),
        helper.make_node("GRU", ["x_seq", "W", "R", "B", "", "h"], ["Y", "hn"], hidden_size=hidden, layout=0),
        helper.make_node("Squeeze", ["hn", "axis0"], ["h_flat"]),
        helper.make_node("MatMul", ["h_flat", "W_out"], ["mm"]),
        helper.make_node("Add", ["mm", "b_out"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "gru_step",
        [_info("x", TensorProto.FLOAT, ["batch", features]), _info("h", TensorProto.FLOAT, [1, "batch", hidden])],
        [
            _info("logits", TensorProto.FLOAT, ["batch", classes]),
            _info("hn", TensorProto.FLOAT, [1, "batch", hidden]),
        ],
        inits,
    )
    return _model(graph)


def gru_step_reference(x: FloatArray, h: FloatArray, classes: int = 3) -> tuple[FloatArray, FloatArray]:
    """Numpy ONNX GRU (gates z, r, h; linear_before_reset=0; sigmoid/tanh) plus the classifier head."""
    features, hidden = x.shape[1], h.shape[2]
    w = gru_weights(features, hidden, classes)
    wz, wr, wh = np.split(w["W"][0], 3)
    rz, rr, rh = np.split(w["R"][0], 3)
    wbz, wbr, wbh, rbz, rbr, rbh = np.split(w["B"][0], 6)
    prev = h[0]
    z = _sigmoid(x @ wz.T + prev @ rz.T + wbz + rbz)
    r = _sigmoid(x @ wr.T + prev @ rr.T + wbr + rbr)
    cand = np.tanh(x @ wh.T + (r * prev) @ rh.T + rbh + wbh)
    new = (1.0 - z) * cand + z * prev
    logits = new @ w["W_out"] + w["b_out"]
    return logits.astype(np.float32), new[None].astype(np.float32)


# --- 2. LSTM step --------------------------------------------------------------------------------


def lstm_weights(features: int = 8, hidden: int = 16) -> dict[str, FloatArray]:
    """The LSTM's weights in ONNX layout (gates i, o, f, c): W [1, 4H, F], R [1, 4H, H], B [1, 8H]."""
    rng = _rng(2)
    return {
        "W": _normal(rng, (1, 4 * hidden, features), 0.3),
        "R": _normal(rng, (1, 4 * hidden, hidden), 0.3),
        "B": _normal(rng, (1, 8 * hidden), 0.1),
    }


def lstm_step_model(features: int = 8, hidden: int = 16) -> onnx.ModelProto:
    """One LSTM step: x [batch, F], h, c [1, batch, H] -> y [batch, H] (squeezed hn), hn, cn."""
    inits = [numpy_helper.from_array(value, name) for name, value in lstm_weights(features, hidden).items()]
    inits.append(_ints("axis0", [0]))
    nodes = [
        helper.make_node("Unsqueeze", ["x", "axis0"], ["x_seq"]),
        helper.make_node("LSTM", ["x_seq", "W", "R", "B", "", "h", "c"], ["Y", "hn", "cn"], hidden_size=hidden),
        helper.make_node("Squeeze", ["hn", "axis0"], ["y"]),
    ]
    state: list[str | int] = [1, "batch", hidden]
    graph = helper.make_graph(
        nodes,
        "lstm_step",
        [
            _info("x", TensorProto.FLOAT, ["batch", features]),
            _info("h", TensorProto.FLOAT, state),
            _info("c", TensorProto.FLOAT, state),
        ],
        [
            _info("y", TensorProto.FLOAT, ["batch", hidden]),
            _info("hn", TensorProto.FLOAT, state),
            _info("cn", TensorProto.FLOAT, state),
        ],
        inits,
    )
    return _model(graph)


def lstm_step_reference(x: FloatArray, h: FloatArray, c: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Numpy ONNX LSTM step (no peepholes, sigmoid/tanh/tanh): returns y, hn, cn."""
    w = lstm_weights(x.shape[1], h.shape[2])
    wi, wo, wf, wc = np.split(w["W"][0], 4)
    ri, ro, rf, rc = np.split(w["R"][0], 4)
    wbi, wbo, wbf, wbc, rbi, rbo, rbf, rbc = np.split(w["B"][0], 8)
    prev_h, prev_c = h[0], c[0]
    i = _sigmoid(x @ wi.T + prev_h @ ri.T + wbi + rbi)
    f = _sigmoid(x @ wf.T + prev_h @ rf.T + wbf + rbf)
    cand = np.tanh(x @ wc.T + prev_h @ rc.T + wbc + rbc)
    new_c = f * prev_c + i * cand
    o = _sigmoid(x @ wo.T + prev_h @ ro.T + wbo + rbo)
    new_h = o * np.tanh(new_c)
    return new_h.astype(np.float32), new_h[None].astype(np.float32), new_c[None].astype(np.float32)


# --- 3. Text classifier --------------------------------------------------------------------------


def text_classifier_model(
    vocab: int = 1000, dim: int = 32, classes: int = 4, type_vocab: int | None = None
) -> onnx.ModelProto:
    """Embedding + one masked single-head attention layer + FFN + masked mean pooling -> logits [batch, classes].

    No position embedding, so tokens whose ``attention_mask`` is 0 never change the logits; ids >= vocab fail in ORT.
    """
    rng = _rng(3)
    hidden = 4 * dim
    weights = {
        "embedding": _normal(rng, (vocab, dim), 0.5),
        "Wq": _normal(rng, (dim, dim), dim**-0.5),
        "Wk": _normal(rng, (dim, dim), dim**-0.5),
        "Wv": _normal(rng, (dim, dim), dim**-0.5),
        "W1": _normal(rng, (dim, hidden), dim**-0.5),
        "b1": _normal(rng, (hidden,), 0.1),
        "W2": _normal(rng, (hidden, dim), hidden**-0.5),
        "b2": _normal(rng, (dim,), 0.1),
        "Wc": _normal(rng, (dim, classes), dim**-0.5),
        "bc": _normal(rng, (classes,), 0.1),
        "scale": np.array(dim**-0.5, np.float32),
        "one": np.array(1.0, np.float32),
        "neg": np.array(-10000.0, np.float32),
        "min_count": np.array(1.0, np.float32),
    }
    if type_vocab is not None:
        weights["type_embedding"] = _normal(rng, (type_vocab, dim), 0.5)
    inits = [numpy_helper.from_array(value, name) for name, value in weights.items()]
    inits += [_ints("axis1", [1]), _ints("axis2", [2])]
    seq: list[str | int] = ["batch", "sequence"]
    inputs = [_info("input_ids", TensorProto.INT64, seq), _info("attention_mask", TensorProto.INT64, seq)]
    nodes = [helper.make_node("Gather", ["embedding", "input_ids"], ["tokens"], axis=0)]
    if type_vocab is not None:
        inputs.append(_info("token_type_ids", TensorProto.INT64, seq))
        nodes += [
            helper.make_node("Gather", ["type_embedding", "token_type_ids"], ["types"], axis=0),
            helper.make_node("Add", ["tokens", "types"], ["emb"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["tokens"], ["emb"]))
    nodes += [
        # mask [B, S] -> additive key bias [B, 1, S] = (1 - mask) * -10000
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one", "maskf"], ["inverted"]),
        helper.make_node("Mul", ["inverted", "neg"], ["bias2d"]),
        helper.make_node("Unsqueeze", ["bias2d", "axis1"], ["bias"]),
        # single-head self-attention with a residual
        helper.make_node("MatMul", ["emb", "Wq"], ["q"]),
        helper.make_node("MatMul", ["emb", "Wk"], ["k"]),
        helper.make_node("MatMul", ["emb", "Wv"], ["v"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["raw_scores"]),
        helper.make_node("Mul", ["raw_scores", "scale"], ["scaled_scores"]),
        helper.make_node("Add", ["scaled_scores", "bias"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["attn"], axis=-1),
        helper.make_node("MatMul", ["attn", "v"], ["context"]),
        helper.make_node("Add", ["emb", "context"], ["h1"]),
        # feed-forward dim -> 4 dim -> dim with a residual
        helper.make_node("MatMul", ["h1", "W1"], ["ff1"]),
        helper.make_node("Add", ["ff1", "b1"], ["ff1b"]),
        helper.make_node("Relu", ["ff1b"], ["ff1r"]),
        helper.make_node("MatMul", ["ff1r", "W2"], ["ff2"]),
        helper.make_node("Add", ["ff2", "b2"], ["ff2b"]),
        helper.make_node("Add", ["h1", "ff2b"], ["h2"]),
        # masked mean pooling over valid tokens (count clipped to >= 1)
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["h2", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["maskf", "axis1"], ["count"], keepdims=1),
        helper.make_node("Max", ["count", "min_count"], ["safe_count"]),
        helper.make_node("Div", ["summed", "safe_count"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "Wc"], ["cls"]),
        helper.make_node("Add", ["cls", "bc"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "text_classifier", inputs, [_info("logits", TensorProto.FLOAT, ["batch", classes])], inits
    )
    return _model(graph)


# --- 4. Time-major model -------------------------------------------------------------------------


def time_major_weight(features: int = 6, out: int = 5) -> FloatArray:
    """The projection W [features, out] of `time_major_model`."""
    return _normal(_rng(4), (features, out), 0.5)


def time_major_model(features: int = 6, out: int = 5) -> onnx.ModelProto:
    """x [sequence, batch, F] -> y = x @ W [sequence, batch, out] and pooled = mean_t y [batch, out]."""
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["y"]),
        helper.make_node("ReduceMean", ["y"], ["pooled"], axes=[0], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "time_major",
        [_info("x", TensorProto.FLOAT, ["sequence", "batch", features])],
        [
            _info("y", TensorProto.FLOAT, ["sequence", "batch", out]),
            _info("pooled", TensorProto.FLOAT, ["batch", out]),
        ],
        [numpy_helper.from_array(time_major_weight(features, out), "W")],
    )
    return _model(graph)


# --- 5. Lying output -----------------------------------------------------------------------------

LYING_STEPS = 3


def lying_output_weight(classes: int = 10) -> FloatArray:
    """The projection W [4, classes] of `lying_output_model`."""
    return _normal(_rng(5), (4, classes), 0.5)


def lying_output_model(classes: int = 10) -> onnx.ModelProto:
    """Declares ``probs`` as [1, "seqlen"] but returns Tile(x @ W) of shape [3, batch, classes].

    ORT 1.32 only logs a warning at session creation ("Error merging shape info for output 'probs' ... lenient
    merge"), then reports the output's shape as [] and runs, returning [3, batch, classes]; nothing at run time.
    ``onnx.checker`` passes, but ``full_check=True`` / strict shape inference reject it (rank 3 vs 2).
    """
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["mm"]),
        helper.make_node("Unsqueeze", ["mm", "axis0"], ["mm3"]),
        helper.make_node("Tile", ["mm3", "repeats"], ["probs"]),
    ]
    graph = helper.make_graph(
        nodes,
        "lying_output",
        [_info("x", TensorProto.FLOAT, ["batch", 4])],
        [_info("probs", TensorProto.FLOAT, [1, "seqlen"])],
        [
            numpy_helper.from_array(lying_output_weight(classes), "W"),
            _ints("axis0", [0]),
            _ints("repeats", [LYING_STEPS, 1, 1]),
        ],
    )
    return _model(graph)


# --- 6. Constant comparison (Silero-like If) -----------------------------------------------------

RATE = 16000


def constant_compare_weights() -> tuple[FloatArray, FloatArray]:
    """(W [16, 4] used when sr == 16000, W2 [16, 4] used otherwise)."""
    rng = _rng(6)
    return _normal(rng, (16, 4), 0.3), _normal(rng, (16, 4), 0.3)


def constant_compare_model() -> onnx.ModelProto:
    """output [batch, 4] = If(Equal(sr, Constant 16000)) then input @ W (MatMul) else input @ W2 (Conv).

    Each branch holds its own weight as a subgraph initializer, like Silero VAD's per-rate branches.
    """
    weight, weight2 = constant_compare_weights()
    out = _info("output", TensorProto.FLOAT, ["batch", 4])
    then_branch = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["then_out"])],
        "then_16k",
        [],
        [_info("then_out", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(weight, "W")],
    )
    # Conv over [batch, 1, 16] with kernel [4, 1, 16] gives [batch, 4, 1] = input @ W2.
    else_branch = helper.make_graph(
        [
            helper.make_node("Unsqueeze", ["input", "conv_axis1"], ["input3"]),
            helper.make_node("Conv", ["input3", "W2"], ["conv"], kernel_shape=[16]),
            helper.make_node("Squeeze", ["conv", "conv_axis2"], ["else_out"]),
        ],
        "else_other",
        [],
        [_info("else_out", TensorProto.FLOAT, ["batch", 4])],
        [
            numpy_helper.from_array(np.ascontiguousarray(weight2.T[:, None, :]), "W2"),
            _ints("conv_axis1", [1]),
            _ints("conv_axis2", [2]),
        ],
    )
    rate = numpy_helper.from_array(np.array(RATE, np.int64), "rate_value")
    nodes = [
        helper.make_node("Constant", [], ["rate"], value=rate),
        helper.make_node("Equal", ["sr", "rate"], ["is_16k"]),
        helper.make_node("If", ["is_16k"], ["output"], then_branch=then_branch, else_branch=else_branch),
    ]
    graph = helper.make_graph(
        nodes,
        "constant_compare",
        [_info("input", TensorProto.FLOAT, ["batch", 16]), _info("sr", TensorProto.INT64, [])],
        [out],
    )
    return _model(graph)
