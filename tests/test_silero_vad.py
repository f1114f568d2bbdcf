"""The bundled Silero VAD: file origin, its speech / non-speech eval set, accuracy and check set."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import edgerun
from edgerun import models

REPO = Path(__file__).resolve().parents[1]


def _module(relative: str) -> ModuleType:
    path = REPO / relative
    name = f"_silero_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and annotations look the module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _module("benchmarks/vad_accuracy.py")


@pytest.fixture(scope="module")
def eval_set(bench: ModuleType) -> dict[str, np.ndarray]:
    data: dict[str, np.ndarray] = bench.load_eval(models.card("silero-vad").folder / "eval" / "vad-eval.npz")
    return data


def test_bundled_file_is_the_wheels() -> None:
    fetch = _module("scripts/fetch_silero_vad.py")
    card = models.card("silero-vad")
    assert hashlib.sha256(card.path.read_bytes()).hexdigest() == fetch.SHA256
    assert fetch.SHA256 in (card.folder / "NOTICE").read_text()
    assert "MIT License" in (card.folder / "LICENSE").read_text()


def test_eval_set_layout_and_balance(eval_set: dict[str, np.ndarray]) -> None:
    audio, labels = eval_set["audio"], eval_set["labels"]
    assert {"audio", "labels", "noise", "snr_db", "sample_rate", "seed", "espeak_version"} <= set(eval_set)
    assert audio.dtype == np.int16
    assert audio.ndim == 2
    assert labels.dtype == np.uint8
    assert labels.shape == (audio.shape[0], audio.shape[1] // 512)
    assert int(eval_set["sample_rate"]) == 16_000
    assert set(np.unique(labels)) == {0, 1}
    assert 0.2 <= labels.mean() <= 0.8
    assert eval_set["noise"].shape == eval_set["snr_db"].shape == (audio.shape[0],)
    assert (models.card("silero-vad").folder / "eval" / "vad-eval.npz").stat().st_size < 1.5e6


def test_fp32_accuracy_matches_the_card(bench: ModuleType, eval_set: dict[str, np.ndarray]) -> None:
    card = models.card("silero-vad")
    assert card.accuracy is not None
    with edgerun.load("silero-vad", precision="fp32") as session:
        probabilities, labels = bench.evaluate(session.run, eval_set)
    result = bench.scores(probabilities >= bench.THRESHOLD, labels)
    assert result["accuracy"] >= 0.85
    assert result["accuracy"] == pytest.approx(card.accuracy["value"], abs=2 / labels.size)


def test_check_set_runs_with_state_batched_on_axis_1() -> None:
    import onnxruntime as ort

    card = models.card("silero-vad")
    assert card.check is not None
    with np.load(card.folder / card.check["source"]) as data:
        check = {key: data[key] for key in data.files}
    count = card.check["samples"]
    assert check["input"].shape == (count, 576)
    assert check["input"].dtype == np.float32
    assert check["state"].shape == (2, count, 128)
    assert check["state"].dtype == np.float32
    assert check["sr"].shape == ()
    assert int(check["sr"]) == 16_000
    assert np.abs(check["state"]).max() > 0, "the real carried state, not zeros"
    session = ort.InferenceSession(str(card.path), providers=["CPUExecutionProvider"])
    probability, state = session.run(None, check)
    assert probability.shape == (count, 1)
    assert state.shape == (2, count, 128)
    assert 0.2 <= float(np.mean(probability >= 0.5)) <= 0.8, "half the windows are speech"


def test_int8_is_judged_over_the_check_streams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Static INT8 drifts over a stream (decisions differ on several % of frames): refused, FP32 runs."""
    monkeypatch.setenv("EDGERUN_CACHE_DIR", str(tmp_path))
    with edgerun.load("silero-vad", precision="int8") as session:
        plan = session.plan
    assert plan.precision == "fp32"
    assert any("3 streams x 80 steps" in f for f in plan.fallbacks)
    assert plan.quality is not None
    assert plan.quality["stream_steps"] == 240
