"""The precision guard's stream check: errors that compound through a recurrent state over a stream.

A GRU step model whose update gate keeps 95% of its state (an integrator, as a VAD's state is) and a
candidate whose candidate-gate bias is shifted slightly (as INT8 rounding shifts a value): one step
from a real state moves the hidden state by 5% of the shift, fifty steps by nearly all of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgerun.errors import CalibrationError
from edgerun.precision.activations import open_session, run_model
from edgerun.precision.checks import CheckSamples, StreamSamples, run_streams, stream_samples
from edgerun.precision.guard import GuardResult, compare_streams
from edgerun.quality import QualityBudget, quality_of
from edgerun.runtime.modelfile import ModelFile
from tests.sequence_models import gru_step_model

HIDDEN = 16
STREAMS, STEPS = 8, 50
BUDGET = QualityBudget.for_precision("fp16")


def _gru(shift: float) -> onnx.ModelProto:
    """The GRU step model with its update gate held near 0.95 and its candidate-gate bias moved by ``shift``."""
    model = gru_step_model(hidden=HIDDEN)
    for tensor in model.graph.initializer:
        if tensor.name == "B":
            bias = numpy_helper.to_array(tensor).copy()
            bias[0, :HIDDEN] += 3.0  # update gate z = sigmoid(~3): the state keeps ~95% per step
            bias[0, 2 * HIDDEN : 3 * HIDDEN] += shift
            tensor.CopyFrom(numpy_helper.from_array(bias, "B"))
    return model


def _streams() -> StreamSamples:
    x = np.random.default_rng(0).standard_normal((STEPS, STREAMS, 8)).astype(np.float32)
    zeros = np.zeros((1, STREAMS, HIDDEN), np.float32)
    return StreamSamples({"x": x}, {"h": zeros}, {}, {"h": "hn"}, {"x": 0, "h": 1}, {"logits": 0, "hn": 1}, "test")


def _single_steps(reference: onnx.ModelProto, streams: StreamSamples, step: int) -> dict[str, np.ndarray]:
    """Step ``step`` of every stream with the real (FP32-carried) state: what a single-step check sees."""
    session = open_session(reference, "fp32")
    state = streams.initial["h"]
    for t in range(step):
        _, state = session.run(None, {"x": streams.steps["x"][t], "h": state})
    return {"x": streams.steps["x"][step], "h": state}


def test_a_drifting_candidate_passes_single_steps_but_fails_the_stream() -> None:
    reference, candidate = _gru(0.0), _gru(0.05)
    streams = _streams()
    single = _single_steps(reference, streams, 30)
    axes = {"x": 0, "h": 1}
    one = quality_of(
        run_model(open_session(reference, "r"), single, "r", axes),
        run_model(open_session(candidate, "c"), single, "c", axes),
    )
    assert BUDGET.violations(one) == []
    qualities, problems = compare_streams(open_session(reference, "r"), open_session(candidate, "c"), streams, BUDGET)
    assert [q.name for q in qualities] == ["logits"]  # the state output is carried, not judged
    assert qualities[0].samples == STREAMS * STEPS
    assert problems
    assert "logits" in problems[0]


def test_an_equal_candidate_passes_the_stream() -> None:
    reference = _gru(0.0)
    qualities, problems = compare_streams(
        open_session(reference, "r"), open_session(reference, "c"), _streams(), BUDGET
    )
    assert problems == []
    assert qualities[0].cosine_mean == 1.0


def test_each_model_carries_its_own_state_step_after_step() -> None:
    streams = _streams()
    session = open_session(_gru(0.0), "r")
    produced = run_streams(session, streams, "r")["logits"]
    state = streams.initial["h"]
    for t in range(STEPS):
        logits, state = session.run(None, {"x": streams.steps["x"][t], "h": state})
        np.testing.assert_array_equal(produced[t * STREAMS : (t + 1) * STREAMS], logits)


def test_stream_arrays_are_checked_and_start_from_zero_state(tmp_path: Path) -> None:
    path = tmp_path / "gru.onnx"
    onnx.save(_gru(0.0), str(path))
    model = ModelFile.open(path)
    x = np.zeros((STEPS, 3, 8), np.float32)
    found = stream_samples({"x": x}, model, model.roles, "arrays")
    assert (found.count, found.length) == (3, STEPS)
    assert found.initial["h"].shape == (1, 3, HIDDEN)
    assert not found.initial["h"].any()
    with pytest.raises(CalibrationError, match="stream_y"):
        stream_samples({"x": x, "y": x}, model, model.roles, "arrays")
    with pytest.raises(CalibrationError, match="disagree"):
        stream_samples({"x": x, "h": np.zeros((1, 2, HIDDEN), np.float32)}, model, model.roles, "arrays")
    single = CheckSamples({"x": x[0], "h": found.initial["h"]}, "arrays", batch_axes={"x": 0, "h": 1})
    assert single.with_streams(found).fingerprint() != single.fingerprint()


def test_the_guard_result_reports_streams_and_steps() -> None:
    fields = GuardResult.__dataclass_fields__
    assert {"streams", "stream_steps", "stream_before", "stream_after"} <= set(fields)
