"""`edgerun bench` with input roles: stateful models as streams, --shape SYMBOL=N, --role NAME=ROLE."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgerun import logs, models
from edgerun.cli.main import main

from .. import sequence_models as sm

QUICK = ("-n", "5", "--warmup", "1")


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def silero_copy(tmp_path: Path) -> Path:
    """silero-vad's model.onnx outside the bundle: no card, so 'sr' has no known value."""
    path = tmp_path / "vad.onnx"
    shutil.copy(models.path("silero-vad"), path)
    return path


def test_silero_vad_with_no_flags_runs_as_a_stream(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    code, out, err = run_cli(capsys, "bench", "silero-vad", *QUICK, "--json", str(path))
    assert code == 0, err
    assert "stream: state carried (state -> stateN), per-chunk latency" in " ".join(out.split())
    assert "ms per chunk" in out
    report = json.loads(path.read_text())
    assert report["stream"]["state"] == {"state": "stateN"}
    assert report["stream"]["steps"] == 6
    assert report["latency_ms"]["p50"] > 0
    assert report["inputs"]["shapes"]["state"] == [2, 1, 128]


@pytest.mark.parametrize(
    "args",
    [
        ("--batch", "2"),
        ("--scenario", "multi-stream", "--samples-per-query", "3"),
        ("--scenario", "server", "--target-qps", "200", "--duration", "0.3", "--latency-bound-ms", "200"),
    ],
)
def test_silero_vad_scenarios_carry_state_on_axis_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: tuple[str, ...]
) -> None:
    path = tmp_path / "r.json"
    code, _, err = run_cli(capsys, "bench", "silero-vad", *QUICK, *args, "--json", str(path))
    assert code == 0, err
    report = json.loads(path.read_text())
    assert report["stream"]["state"] == {"state": "stateN"}
    assert report["inputs"]["shapes"]["state"][1] == report["stream"]["rows_per_step"]


def test_silero_vad_accepts_a_full_state_shape(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "bench", "silero-vad", *QUICK, "--shape", "state=2x1x128", "-q")
    assert code == 0, err
    assert "PASS" in out or "FAIL" in out


def test_silero_vad_data_file_of_its_three_inputs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = tmp_path / "chunks.npz"
    rng = np.random.default_rng(0)
    np.savez(
        data,
        input=rng.uniform(-1, 1, (6, 576)).astype(np.float32),
        state=np.zeros((2, 6, 128), np.float32),
        sr=np.array(16000, np.int64),
    )
    path = tmp_path / "r.json"
    code, _, err = run_cli(capsys, "bench", "silero-vad", *QUICK, "--data", str(data), "--json", str(path))
    assert code == 0, err
    report = json.loads(path.read_text())
    assert report["stream"]["steps"] == 6
    assert "chunks.npz" in report["inputs"]["source"]


def test_unknown_shape_name_is_an_error_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "bench", "silero-vad", *QUICK, "--shape", "nosuch=3")
    assert code != 0
    assert "no input or dimension symbol named 'nosuch'" in err
    assert "inputs: input, state, sr; symbols: batch, sequence" in " ".join(err.split())
    assert "Traceback" not in err


def test_text_model_symbol_shape_sizes_both_inputs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = sm.save(sm.text_classifier_model(), tmp_path / "text.onnx")
    path = tmp_path / "r.json"
    code, _, err = run_cli(capsys, "bench", str(model), *QUICK, "--shape", "sequence=16", "--json", str(path))
    assert code == 0, err
    report = json.loads(path.read_text())
    assert report["inputs"]["shapes"] == {"input_ids": [1, 16], "attention_mask": [1, 16]}
    assert report["inputs"]["roles"] == {"input_ids": "token_ids", "attention_mask": "mask"}
    assert report["stream"] is None


def test_time_major_model_at_batch_4(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = sm.save(sm.time_major_model(), tmp_path / "tm.onnx")
    path = tmp_path / "r.json"
    args = ("--batch", "4", "--shape", "sequence=5", "--json", str(path))
    code, _, err = run_cli(capsys, "bench", str(model), *QUICK, *args)
    assert code == 0, err
    assert json.loads(path.read_text())["inputs"]["shapes"] == {"x": [5, 4, 6]}


def test_input_role_option_sets_the_constant(
    capsys: pytest.CaptureFixture[str], silero_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = silero_copy.with_suffix(".json")
    args = ("--shape", "sequence=576", "--json", str(path))
    code, _, err = run_cli(capsys, "bench", str(silero_copy), *QUICK, *args, "--role", "sr=constant,value=16000")
    assert code == 0, err
    report = json.loads(path.read_text())
    assert report["stream"]["state"] == {"state": "stateN"}
    assert report["inputs"]["roles"]["sr"] == "constant"
    assert "unknown value" not in err + caplog.text


def test_without_the_input_role_a_warning_names_the_unknown_constant(
    capsys: pytest.CaptureFixture[str],
    silero_copy: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(logs, "_seen", set())  # as in a fresh process: earlier tests may have logged it
    run_cli(capsys, "bench", str(silero_copy), *QUICK, "--shape", "sequence=576", "-q")
    warned = " ".join((capsys.readouterr().err + caplog.text).split())
    assert "input 'sr' is a constant of unknown value" in warned
    assert "--role sr=constant,value=N" in warned


def test_input_role_option_names_an_unknown_input(capsys: pytest.CaptureFixture[str], silero_copy: Path) -> None:
    code, _, err = run_cli(capsys, "bench", str(silero_copy), *QUICK, "--role", "rate=constant,value=16000")
    assert code != 0
    assert "no input named 'rate'" in err
