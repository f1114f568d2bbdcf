"""``edgerun debug precision``: the guard's findings (kept nodes, quality, probes), exit codes and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

from edgerun.cli.main import main
from edgerun.runtime.modelfile import ModelFile

from ..precision_models import FP16_OVERFLOW_NODE, fp16_overflow_one_node, mlp_inputs


def run_cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def overflow(tmp_path: Path) -> tuple[Path, Path]:
    """The model that overflows FP16 in one node, and real-looking check samples for it (.npy)."""
    model = tmp_path / "overflow.onnx"
    onnx.save(fp16_overflow_one_node(), model)
    data = tmp_path / "x.npy"
    np.save(data, mlp_inputs(16))
    return model, data


def outputs(model: Path, x: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0])


def test_an_fp16_safe_model_passes_at_the_first_probe(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run_cli(capsys, "debug", "precision", "digits-student", "--fp16")
    assert code == 0
    text = flat(stdout)
    assert "fp16 checked against fp32 on 64 samples of" in text, "the card's check set"
    assert "digits-test.npz" in text
    assert "before (plain fp16): 'logits' cosine 1.00000, top-1 agreement 100.00%" in text
    assert "kept in FP32: 0 of 10 nodes" in text
    assert "passed: fp16 meets the budget with 0 of 10 nodes in FP32 (1 probe," in text
    assert "the mixed model was not written: give -o OUT.onnx" in text
    assert "random inputs" not in text
    code, stdout, _ = run_cli(capsys, "debug", "precision", "digits-student", "--fp16", "--json")
    assert code == 0
    report = json.loads(stdout)
    assert (report["passed"], report["kept_fp32"], report["random_inputs"]) == (True, [], False)
    assert [p["stage"] for p in report["probes"]] == ["first check"]
    assert report["written"] is None


def test_int8_with_the_cards_calibration(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "student-int8.onnx"
    code, stdout, _ = run_cli(capsys, "debug", "precision", "digits-student", "--int8", "-o", out)
    assert code == 0
    assert stdout.splitlines()[0] == "target cpu: the Q/DQ layout of onnxruntime on cpu (this device's plan)"
    text = flat(stdout)
    assert "int8 checked against fp32 on 64 samples of" in text
    assert "calibration: 256 samples of" in text, "the card's calibration, not thinned: the card has a check set"
    assert "passed: int8 meets the budget" in text
    assert ModelFile.open(out).precision == "int8"
    assert "".join(f"wrote {out}".split()) in "".join(stdout.split())
    args = ["debug", "precision", "digits-student", "--int8", "--target", "tensorrt", "--json"]
    code, stdout, _ = run_cli(capsys, *args)
    assert code == 0
    report = json.loads(stdout)
    assert (report["precision"], report["target"], report["passed"]) == ("int8", "tensorrt", True)


def test_int8_holds_check_samples_apart_from_calibration(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = tmp_path / "overflow.onnx"
    onnx.save(fp16_overflow_one_node(), model)
    np.save(tmp_path / "calib.npy", mlp_inputs(32, seed=1))
    code, stdout, _ = run_cli(capsys, "debug", "precision", model, "--int8", "--calib", tmp_path / "calib.npy")
    assert code == 0, stdout
    text = flat(stdout)
    assert "on 8 samples of" in text
    assert "held apart from calibration" in text
    assert "calibration: 24 samples of" in text
    assert "random inputs" not in text


def test_a_model_that_overflows_fp16_keeps_that_node(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, overflow: tuple[Path, Path]
) -> None:
    model, data = overflow
    out = tmp_path / "mixed.onnx"
    code, stdout, _ = run_cli(capsys, "debug", "precision", model, "--fp16", "--data", data, "-o", out)
    assert code == 0, stdout
    text = flat(stdout)
    assert "misses the budget: output 'logits'" in text, "the plain conversion's failure is shown"
    assert f"{FP16_OVERFLOW_NODE} (MatMul): output 'overflow_out' reaches" in text, "named by its measured range"
    assert "> 65504, FP16's largest value" in text
    assert "after (mixed): 'logits' cosine 1.00000" in text
    assert "passed: fp16 meets the budget with" in text
    assert "".join(f"wrote {out}".split()) in "".join(stdout.split())
    x = mlp_inputs(16)
    np.testing.assert_allclose(outputs(out, x), outputs(model, x), rtol=1e-2, atol=1e-2)
    code, stdout, _ = run_cli(capsys, "debug", "precision", model, "--fp16", "--data", data, "--json")
    assert code == 0
    report = json.loads(stdout)
    assert FP16_OVERFLOW_NODE in report["kept_fp32"]
    assert len(report["kept_fp32"]) <= 3, "that node and a neighbour or two at most"
    assert report["total_nodes"] > len(report["kept_fp32"])
    assert report["probes"][0] == {**report["probes"][0], "stage": "first check", "passed": False}
    assert report["probes"][-1]["passed"] is True
    assert report["before"][0]["cosine_mean"] < 0.999 <= report["after"][0]["cosine_mean"]
    assert all(k in report for k in ("seconds", "summary", "budget", "violations"))


def test_random_inputs_come_with_their_note(capsys: pytest.CaptureFixture[str], overflow: tuple[Path, Path]) -> None:
    model, _ = overflow
    code, stdout, _ = run_cli(capsys, "debug", "precision", model, "--fp16")
    assert code == 0
    text = flat(stdout)
    assert "on 8 seeded random samples" in text
    assert "note: checked on seeded random inputs, which prove little about real data" in text
    code, stdout, _ = run_cli(capsys, "debug", "precision", model, "--fp16", "--json")
    report = json.loads(stdout)
    assert report["random_inputs"] is True
    assert "prove little" in report["note"]


@pytest.mark.filterwarnings("ignore:All-NaN slice encountered")
def test_no_mix_exits_3_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, overflow: tuple[Path, Path]
) -> None:
    """Check samples on which FP32 itself gives NaN: no candidate, not even all-FP32, can match it."""
    model, _ = overflow
    x = mlp_inputs(16)
    x[::2, 0] = np.nan  # half the samples: below every budget's cosine
    np.save(tmp_path / "nan.npy", x)
    out = tmp_path / "mixed.onnx"
    args = ["debug", "precision", model, "--fp16", "--data", tmp_path / "nan.npy", "-o", out]
    code, stdout, err = run_cli(capsys, *args)
    assert code == 3
    assert "FAILED: no mix of precisions meets the budget" in flat(stdout)
    assert "threshold violated:" in err
    assert "no fp16 version meets the quality budget" in flat(err)
    assert not out.exists()
    code, stdout, _ = run_cli(capsys, *args, "--json")
    assert code == 3
    report = json.loads(stdout)
    assert report["passed"] is False
    assert report["violations"]
    assert "no fp16 version meets the quality budget" in report["error"]
    assert not out.exists()


def test_budget_flags(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["debug", "precision", "digits-student", "--fp16", "--json"]
    code, stdout, _ = run_cli(capsys, *args, "--min-cosine", "0.5", "--min-top1", "0.75")
    assert code == 0
    budget = json.loads(stdout)["budget"]
    assert (budget["min_cosine"], budget["min_top1"], budget["min_slice_cosine"]) == (0.5, 0.75, 0.99)
    code, _, err = run_cli(capsys, *args, "--min-cosine", "1.1")
    assert code == 2
    assert "--min-cosine" in err


def test_usage_and_input_errors(capsys: pytest.CaptureFixture[str], overflow: tuple[Path, Path]) -> None:
    code, _, err = run_cli(capsys, "debug", "precision", "digits-student")
    assert code == 2
    assert "give --fp16 or --int8" in err
    model, _ = overflow
    code, _, err = run_cli(capsys, "debug", "precision", model, "--int8")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "overflow.onnx: INT8 needs calibration data: --calib SRC" in lines[0]
    code, _, err = run_cli(capsys, "debug", "precision", model, "--fp16", "--max-probes", "0")
    assert code == 2
