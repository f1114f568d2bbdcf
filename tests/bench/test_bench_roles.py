"""Bench inputs from the model's input roles: streams for stateful models, ids and masks for text, batch axes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgerun
from edgerun.bench.config import BenchConfig
from edgerun.bench.files import csv_row, markdown
from edgerun.bench.runner import benchmark
from edgerun.bench.scenarios import ScenarioRunner, bench_inputs
from edgerun.bench.schema import load_result_file
from edgerun.runtime.device import DeviceProfile

from .. import sequence_models as sm


def quick(**settings: Any) -> BenchConfig:
    """A short run: 5 timed queries after one warm-up."""
    return BenchConfig(min_queries=5, warmup=1, min_duration_s=0.0, **settings)


@pytest.fixture(scope="module")
def profile() -> DeviceProfile:
    return edgerun.current_device()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {
        "gru": sm.save(sm.gru_step_model(), folder / "gru.onnx"),
        "text": sm.save(sm.text_classifier_model(), folder / "text.onnx"),
        "time_major": sm.save(sm.time_major_model(), folder / "time_major.onnx"),
    }


def test_silero_vad_benches_as_a_stream_with_no_options(profile: DeviceProfile, tmp_path: Path) -> None:
    with edgerun.load("silero-vad") as session:
        result = benchmark(session, profile, quick())
    assert result.stream is not None
    assert result.stream["state"] == {"state": "stateN"}
    assert result.stream["steps"] == 1 + result.queries  # warm-up and timed steps, all on one stream
    assert result.latency_ms.p50 > 0
    assert result.inputs["shapes"] == {"input": [1, 576], "state": [2, 1, 128], "sr": []}
    assert result.stream_summary is not None
    assert "stream: state carried (state -> stateN), per-chunk latency" in result.stream_summary
    data = result.to_dict()
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    assert load_result_file(path)[0]["stream"]["state"] == {"state": "stateN"}
    assert csv_row(data)["stream"] == "state->stateN; per chunk"
    assert "Stream: state carried (state -> stateN), per-chunk latency" in markdown([data])


def test_the_stream_carries_state_like_a_manual_stream() -> None:
    with edgerun.load("silero-vad") as session:
        runner = ScenarioRunner(session, BenchConfig(min_queries=2, warmup=0), 100.0)
        runner.run(None)
        manual = session.stream()
        for i in range(2):
            manual.step(runner.chunk(i))
    assert sorted(runner.chunk(0)) == ["input"]  # state from the stream, sr from the card
    (stream,) = runner.streams
    assert stream.steps == 2
    np.testing.assert_allclose(stream.state["state"], manual.state["state"], rtol=1e-5, atol=1e-6)
    assert np.abs(stream.state["state"]).max() > 0


def test_gru_step_model_benches_as_a_stream(profile: DeviceProfile, models: dict[str, Path]) -> None:
    with edgerun.load(models["gru"]) as session:
        result = benchmark(session, profile, quick())
        multi = benchmark(session, profile, quick(scenario="multi-stream", samples_per_query=3))
    assert result.stream is not None
    assert result.stream["state"] == {"h": "hn"}
    assert result.latency_ms.p50 > 0
    assert result.inputs["shapes"]["h"] == [1, 1, 16]
    assert multi.stream is not None
    assert multi.stream["streams"] == 3
    assert multi.inputs["shapes"]["h"] == [1, 3, 16]


def test_text_inputs_are_ids_over_the_vocabulary_and_valid_masks(models: dict[str, Path]) -> None:
    with edgerun.load(models["text"]) as session:
        feeds = bench_inputs(session, BenchConfig(batch=8, shapes={"sequence": (16,)}))
    ids, mask = feeds["input_ids"], feeds["attention_mask"]
    assert ids.shape == mask.shape == (8, 16)
    assert ids.min() >= 0
    assert ids.max() < 1000
    assert ids.max() > 100  # spread over the vocabulary, not 0..9
    assert set(np.unique(mask)) <= {0, 1}
    assert (mask.sum(axis=1) >= 1).all()
    assert (np.diff(mask, axis=1) <= 0).all()  # ones first, then padding


def test_time_major_model_puts_the_batch_on_axis_1(profile: DeviceProfile, models: dict[str, Path]) -> None:
    config = quick(batch=4, shapes={"sequence": (7,)})
    with edgerun.load(models["time_major"]) as session:
        assert bench_inputs(session, config)["x"].shape == (7, 4, 6)
        result = benchmark(session, profile, config)
    assert result.batch == 4
    assert result.inputs["shapes"]["x"] == [7, 4, 6]
    assert result.stream is None


def test_state_shape_override_keeps_the_batch_on_axis_1(profile: DeviceProfile) -> None:
    with edgerun.load("silero-vad") as session:
        feeds = bench_inputs(session, BenchConfig(shapes={"state": (2, 1, 128)}))
        assert feeds["state"].shape == (2, 1, 128)
        feeds = bench_inputs(session, BenchConfig(batch=3, shapes={"state": (2, 1, 128)}))
        assert feeds["state"].shape == (2, 3, 128)
        assert feeds["input"].shape == (3, 576)
        assert feeds["sr"].shape == ()
        assert int(feeds["sr"]) == 16000


def test_an_unknown_shape_name_is_a_typed_error_with_a_hint() -> None:
    with edgerun.load("silero-vad") as session:
        with pytest.raises(edgerun.ConfigError, match=r"no input or dimension symbol named 'sequenc'.*'sequence'"):
            bench_inputs(session, BenchConfig(shapes={"sequenc": (3,)}))
        with pytest.raises(edgerun.ConfigError, match=r"inputs: input, state, sr; symbols: batch, sequence"):
            bench_inputs(session, BenchConfig(shapes={"nosuch": (3,)}))
