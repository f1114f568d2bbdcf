"""The command line: info, run and bench on the bundled models, JSON output, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgerun import models
from edgerun.cli.main import main

FALLBACK = "TensorRT not available: using onnxruntime CPU"


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def digit_image(path: Path, digit_rows: slice = slice(2, 14), digit_cols: slice = slice(7, 9)) -> Path:
    """A dark "1" on light paper, 16x16."""
    image = np.full((16, 16), 255, np.uint8)
    image[digit_rows, digit_cols] = 0
    cv2.imwrite(str(path), image)
    return path


def test_info_json_describes_device_and_backends(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "info", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["device"]["kind"] in ("cpu", "raspberry-pi", "jetson", "cuda-gpu")
    backends = {b["name"]: b for b in report["backends"]}
    assert backends["onnxruntime"]["available"] is True
    assert backends["tensorrt"]["available"] is False
    assert backends["tensorrt"]["detail"]
    assert set(report["bundled_models"]) == set(models.names())
    assert report["default_model"] == models.DEFAULT


def test_info_with_a_model_shows_specs_and_plan(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "info", "ppocr-cls", "--json")
    assert code == 0
    model = json.loads(out)["model"]
    assert model["sha256"] == "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"
    assert model["opset"] == 11
    assert model["inputs"] == [{"name": "x", "shape": ["?", 3, "?", "?"], "dtype": "float32"}]
    assert model["plan"]["backend"] == "onnxruntime"
    assert any(FALLBACK in f for f in model["plan"]["fallbacks"])
    code, out, _ = run_cli(capsys, "info", "digits-student")
    assert code == 0
    assert FALLBACK in " ".join(out.split())
    assert "digits-student" in out


def test_info_reports_a_plan_that_cannot_be_made(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "info", "digits-student", "--backend", "tensorrt", "--json")
    assert code == 0, "the model itself is fine; info says why it cannot run here"
    model = json.loads(out)["model"]
    assert model["plan"] is None
    assert "backend tensorrt cannot run " in model["plan_error"]
    assert "digits-student/model.onnx here" in model["plan_error"]


def test_run_on_an_image_through_the_card_preprocessing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    image = digit_image(tmp_path / "one.png")
    code, out, _ = run_cli(capsys, "run", "digits-teacher", "--input", str(image), "--json", "--top", "3")
    assert code == 0
    report = json.loads(out)
    (logits,) = report["outputs"]
    assert logits["shape"] == [1, 10]
    assert len(logits["top"][0]) == 3
    assert logits["top"][0][0]["label"] == "1"
    code, out, _ = run_cli(capsys, "run", "digits-teacher", "-i", str(image), "-i", str(image))
    assert code == 0
    assert "logits float32 [2, 10]" in out
    assert "[1] 1=" in out


def test_run_on_npy_npz_and_named_inputs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = np.load(models.card("digits-student").folder / "digits-test.npz")
    np.save(tmp_path / "batch.npy", data["images"][:4])
    np.save(tmp_path / "one.npy", data["images"][0])  # no batch axis: one is added
    np.savez(tmp_path / "feeds.npz", image=data["images"][:2])
    for argument, batch in (
        (str(tmp_path / "batch.npy"), 4),
        (str(tmp_path / "one.npy"), 1),
        (f"image={tmp_path / 'batch.npy'}", 4),
        (str(tmp_path / "feeds.npz"), 2),
    ):
        code, out, _ = run_cli(capsys, "run", "digits-student", "-i", argument, "--json")
        assert code == 0, argument
        report = json.loads(out)
        assert report["inputs"] == {"image": [batch, 1, 8, 8]}
        predicted = [int(top[0]["label"]) for top in report["outputs"][0]["top"]]
        assert predicted == data["labels"][:batch].tolist()


def test_run_with_an_explicit_preprocess_spec(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    copy = tmp_path / "student.onnx"
    shutil.copy(models.path("digits-student"), copy)
    image = digit_image(tmp_path / "one.png")
    code, _, err = run_cli(capsys, "run", str(copy), "-i", str(image))
    assert code == 1
    assert "no preprocessing spec" in err
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(models.card("digits-student").preprocessing))
    code, out, _ = run_cli(capsys, "run", str(copy), "-i", str(image), "--preprocess", str(spec), "--json")
    assert code == 0
    assert json.loads(out)["outputs"][0]["shape"] == [1, 10]


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda d: d / "missing.npy", "input file not found"),
        (lambda d: (d / "bad.png").write_bytes(b"\x89PNG broken") and d / "bad.png", "OpenCV cannot decode"),
        (lambda d: (d / "bad.npy").write_bytes(b"nope") and d / "bad.npy", "not a readable .npy"),
        (lambda d: np.save(d / "wide.npy", np.zeros((1, 1, 8, 9), np.float32)) or d / "wide.npy", "size 8 at axis 3"),
        (lambda d: np.save(d / "f64.npy", np.zeros((1, 1, 8, 8))) or d / "f64.npy", "expects dtype float32"),
    ],
)
def test_run_bad_inputs_print_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, make_input: object, message: str
) -> None:
    path = make_input(tmp_path)  # type: ignore[operator]
    code, out, err = run_cli(capsys, "run", "digits-student", "-i", str(path))
    assert code == 1
    assert message in err
    assert err.startswith("error:")
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err + out


def test_bench_json_report(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    report_path = tmp_path / "out.json"
    # a generous deadline: the verdict must not depend on the machine (emulated arm64 misses 100 ms)
    args = ["bench", "--json", str(report_path), "-n", "30", "--warmup", "2", "--deadline-ms", "10000"]
    code, out, _ = run_cli(capsys, *args)
    assert code == 0
    assert "PASS" in out
    assert "p99" in out
    report = json.loads(report_path.read_text())
    for key in ("model", "backend", "device", "batch", "queries", "latency_ms", "throughput_per_s"):
        assert key in report
    for key in ("deadline_ms", "meets_deadline", "versions"):
        assert key in report
    assert report["model"] == models.DEFAULT
    assert report["queries"] == 30
    assert set(report["latency_ms"]) >= {"min", "mean", "p50", "p90", "p95", "p99", "max"}
    assert report["meets_deadline"] is True
    assert FALLBACK in report["fallbacks"][0]


def test_bench_batch_threads_and_a_missed_deadline(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    args = ["bench", "digits-student", "-b", "8", "--threads", "2", "-n", "20", "--deadline-ms", "0.000001"]
    code, out, _ = run_cli(capsys, *args, "--json", str(path))
    assert code == 0, "a missed deadline is a result, not an error"
    assert "FAIL" in out
    report = json.loads(path.read_text())
    assert report["batch"] == 8
    assert report["threads"] == 2
    assert report["meets_deadline"] is False
    code, _, _ = run_cli(capsys, *args, "--fail-on-miss")
    assert code == 3


def test_bench_user_model_with_free_dims_needs_shape(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    copy = tmp_path / "cls.onnx"
    shutil.copy(models.path("ppocr-cls"), copy)
    code, _, err = run_cli(capsys, "bench", str(copy), "-n", "2")
    assert code == 1
    assert "--shape x=" in err
    code, out, _ = run_cli(capsys, "bench", str(copy), "-n", "2", "--shape", "x=1x3x48x160")
    assert code == 0
    assert "x [1, 3, 48, 160]" in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["bench", "nothing.onnx"], 1, "nothing.onnx: model file not found"),
        (["bench", "resnet"], 1, "unknown model 'resnet'"),
        (["bench", "--backend", "tensorrt"], 1, "backend tensorrt cannot run"),
        (["bench", "--device", "tpu"], 1, "unknown device 'tpu'"),
        (["bench", "--batch", "0"], 1, "--batch: values must be >= 1, got '0'"),
        (["bench", "--batch", "1,x"], 1, "--batch: cannot read '1,x'"),
        (["bench", "--scenario", "streaming"], 2, "Invalid value for '--scenario'"),
        (["bench", "--scenario", "server", "--target-qps", "0"], 1, "target QPS must be > 0"),
        (["bench", "digits-student", "--batch", "1,2", "--scenario", "multi-stream"], 1, "--samples-per-query"),
        (["bench", "--frobnicate"], 2, "No such option"),
        (["info", "--precision", "int3", "digits-student", "--json"], 0, ""),
    ],
)
def test_errors_and_exit_codes(capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str) -> None:
    got, _out, err = run_cli(capsys, *args)
    assert got == code
    assert message in err
    assert "Traceback" not in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0
    assert "edgerun 0.1.0" in out


@pytest.mark.skipif(shutil.which("edgerun") is None, reason="the edgerun console script is not installed")
def test_console_script_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "120"}
    done = subprocess.run(
        ["edgerun", "bench", "-n", "5", "--json", str(tmp_path / "o.json")],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "o.json").read_text())["queries"] == 5
    bad = subprocess.run(["edgerun", "info", str(tmp_path / "x.onnx")], capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [f"error: {tmp_path / 'x.onnx'}: model file not found"]
    debug = subprocess.run(
        ["edgerun", "--debug", "info", str(tmp_path / "x.onnx")], capture_output=True, text=True, check=False
    )
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr


def test_python_dash_m_is_not_needed_but_module_main_works() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edgerun.cli", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert "0.1.0" in done.stdout
