"""Triton export with roles: batch axes from roles, observed output dims, implicit state for stateful models."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgerun import ConfigError
from edgerun.export.triton import export_triton

from .. import sequence_models as sm

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
from google.protobuf import text_format  # noqa: E402


def parse(path: Path) -> object:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_silero_vad_exports_without_batching_and_with_implicit_state(tmp_path: Path) -> None:
    result = export_triton("silero-vad", tmp_path)
    config = parse(result.folder / "config.pbtxt")
    assert config.max_batch_size == 0
    assert any("keeps its batch on axis 1" in note and "re-export" in note for note in result.notes)
    assert not config.HasField("dynamic_batching")
    assert [i.name for i in config.input] == ["input", "sr"]  # the state is kept by Triton
    assert list(config.input[1].dims) == [1]  # a scalar: Triton needs non-empty dims
    (state,) = config.sequence_batching.state
    assert (state.input_name, state.output_name, list(state.dims)) == ("state", "stateN", [2, 1, 128])
    assert state.initial_state[0].zero_data
    assert list(config.output[1].dims) == [2, -1, 128]  # observed, not [AddstateN_dim_0, batch, ...]
    with pytest.raises(ConfigError, match="axis 1"):
        export_triton("silero-vad", tmp_path / "other", max_batch_size=4)


def test_a_lying_model_exports_its_observed_dims(tmp_path: Path) -> None:
    path = sm.save(sm.lying_output_model(), tmp_path / "lying.onnx")
    result = export_triton(path, tmp_path / "repo")
    config = parse(result.folder / "config.pbtxt")
    assert list(config.output[0].dims) == [3, -1, 10]
    assert config.max_batch_size == 0  # the batch comes back on axis 1
    assert any("declared [1, seqlen]" in note for note in result.notes)


def test_digits_student_is_unchanged(tmp_path: Path) -> None:
    result = export_triton("digits-student", tmp_path)
    config = parse(result.folder / "config.pbtxt")
    assert config.max_batch_size == 8
    assert result.notes == ()
    assert (list(config.input[0].dims), list(config.output[0].dims)) == ([1, 8, 8], [10])
    assert config.HasField("dynamic_batching")
