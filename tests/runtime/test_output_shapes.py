"""Outputs checked against their declared shapes: once on a session's first run, and observed at two sizes."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edgerun.loading import load
from edgerun.runtime.modelfile import ModelFile
from edgerun.runtime.outputshapes import check_outputs, observe_model, observed_output_specs
from edgerun.specs import TensorSpec

from .. import sequence_models as sm


def test_a_lying_output_warns_once_on_the_first_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = sm.save(sm.lying_output_model(), tmp_path / "lying.onnx")
    with load(path, device="cpu") as session, caplog.at_level(logging.WARNING, logger="edgerun"):
        assert session.output_mismatches == ()
        out = session.run(np.ones((2, 4), np.float32))
        assert out["probs"].shape == (3, 2, 10)
        warnings = [r.getMessage() for r in caplog.records if "declared" in r.getMessage()]
        assert len(warnings) == 1
        for part in ("'probs'", "[1, seqlen]", "[3, 2, 10]"):
            assert part in warnings[0]
        (mismatch,) = session.output_mismatches
        assert (mismatch.declared, mismatch.returned) == ((1, "seqlen"), (3, 2, 10))
        backend = session.opened_backend
        assert session.run_validated == backend.run  # swapped out: later calls pay nothing
        assert session._run_single == backend.run_single
        session.run(np.ones((2, 4), np.float32))
        session.run({"x": np.ones((5, 4), np.float32)})
        assert len([r for r in caplog.records if "declared" in r.getMessage()]) == 1


def test_an_honest_model_records_nothing(tmp_path: Path) -> None:
    path = sm.save(sm.gru_step_model(), tmp_path / "gru.onnx")
    with load(path, device="cpu") as session:
        session.run({"x": np.ones((2, 8), np.float32), "h": np.zeros((1, 2, 16), np.float32)})
        assert session.output_mismatches == ()


def test_observed_specs_follow_the_batch_symbol(tmp_path: Path) -> None:
    model = ModelFile.open(sm.save(sm.lying_output_model(), tmp_path / "lying.onnx"))
    observation = observe_model(model)
    assert observation.specs is not None
    (probs,) = observation.specs
    assert probs.shape == (3, "batch", 10)
    (mismatch,) = observation.mismatches(model.outputs)
    assert mismatch.returned == (3, "batch", 10)


def test_observed_specs_name_other_symbols_and_keep_fixed_dims() -> None:
    inputs = [TensorSpec("x", ("n", "t", 3), np.dtype(np.float32))]

    def run(feeds: object) -> dict[str, np.ndarray]:
        x = feeds["x"]  # type: ignore[index]
        return {"y": np.zeros((x.shape[1], 7, x.shape[0], 2 * x.shape[1]), np.float32)}

    (y,) = observed_output_specs(run, inputs, shapes={"t": [5]})
    assert y.shape == ("t", 7, "n", "?")
    assert check_outputs([TensorSpec("y", (1, 7), np.dtype(np.float32))], {"y": y})
