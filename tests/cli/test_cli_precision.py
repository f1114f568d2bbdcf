"""The precision commands: quantize, convert, compare and tune; exit codes and one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import edgerun
from edgerun import models
from edgerun.cli.main import main
from edgerun.runtime.device import current_device
from edgerun.runtime.modelfile import ModelFile

from .. import onnx_factory
from ..precision_helpers import DIGITS_CALIB, DIGITS_FOLDER, DIGITS_TEST, inspect_qdq, relu_only
from ..precision_models import FP16_OVERFLOW_NODE, fp16_overflow_one_node, mlp_inputs


def run_cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# --- quantize ----------------------------------------------------------------------------------


def test_quantize_with_an_image_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "teacher-int8.onnx"
    code, stdout, _ = run_cli(capsys, "quantize", "digits-teacher", "--calib", DIGITS_FOLDER, "-o", out)
    assert code == 0
    assert stdout.splitlines()[0] == "target cpu: the Q/DQ layout of onnxruntime on cpu (this device's plan)"
    text = " ".join(stdout.split())
    bare = "".join(stdout.split())  # rich may break a long path anywhere: compare it without whitespace
    assert f"wrote{out}(staticINT8,targetcpu" in bare
    assert "quantized: 3 Conv, 2 Gemm; left in float: none;" in text
    assert f"calibration: 200 samples of {DIGITS_FOLDER}, minmax ranges" in text, "the card's check set is apart"
    assert "check: int8 checked against fp32 on 64 samples of" in text
    assert "digits-test.npz):passed;0of12nodeskeptinFP32" in bare, "nothing kept in FP32"
    report = inspect_qdq(out)
    assert len(report.int8_weight_ops) == 5
    assert {zp.dtype for zp in report.activation_zero_points} == {np.dtype(np.uint8)}, "the CPU layout"
    code, stdout, _ = run_cli(
        capsys, "quantize", "digits-teacher", "--calib", DIGITS_FOLDER, "-o", out, "--target", "tensorrt"
    )
    assert code == 0
    assert stdout.splitlines()[0] == "target tensorrt: as given (--target)"
    assert all(np.all(zp == 0) for zp in inspect_qdq(out).activation_zero_points)


def test_quantize_target_auto_follows_device_and_backend(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = ["quantize", "digits-teacher", "--calib", DIGITS_CALIB, "-o", tmp_path / "q.onnx"]
    code, stdout, _ = run_cli(capsys, *args, "--json")
    assert code == 0
    result = json.loads(stdout)
    assert (result["target"], result["check"]["passed"]) == ("cpu", True)
    assert result["target_reason"] == "target cpu: the Q/DQ layout of onnxruntime on cpu (this device's plan)"
    code, stdout, _ = run_cli(capsys, *args, "--backend", "onnxruntime", "--device", "cpu")
    assert code == 0
    assert stdout.splitlines()[0] == (
        "target cpu: the Q/DQ layout of onnxruntime on cpu (the plan for --device cpu --backend onnxruntime)"
    )
    if not current_device().has_nvidia_gpu:
        code, _, err = run_cli(capsys, *args, "--device", "cuda")
        assert code == 1
        assert_one_line_error(err, "--target auto plans for this device", "has no NVIDIA GPU", "--target tensorrt")


def test_quantize_json_and_the_range_cache(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = ["quantize", "digits-teacher", "--calib", DIGITS_CALIB, "--cache-dir", tmp_path / "ranges", "--json"]
    code, stdout, _ = run_cli(capsys, *args, "-o", tmp_path / "a.onnx", "--target", "cpu", "--per-channel")
    assert code == 0
    first = json.loads(stdout)
    assert first["quantized"] == {"Conv": 3, "Gemm": 2}
    # the guard's probe computed the ranges into --cache-dir and wrote the model it checked: no second quantization
    assert first["calibration_cache_hit"] is False
    assert first["output"] == str(tmp_path / "a.onnx")
    assert Path(first["calibration_cache"]).parent == tmp_path / "ranges"
    assert first["warnings"] == []
    code, stdout, _ = run_cli(capsys, *args, "-o", tmp_path / "b.onnx", "--target", "cpu", "--per-channel")
    assert json.loads(stdout)["calibration_cache_hit"] is True
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    assert {zp.dtype for zp in inspect_qdq(tmp_path / "a.onnx").activation_zero_points} == {np.dtype(np.uint8)}


@pytest.mark.parametrize(
    ("options", "quantized", "float_ops"),
    [
        (["--exclude", "Gemm"], {"Conv": 3}, {"Gemm": 2}),
        (["--exclude", "/features/features.0/Conv"], {"Conv": 2, "Gemm": 2}, {"Conv": 1}),
        (["--keep-head-float", "--method", "percentile"], {"Conv": 3, "Gemm": 1}, {"Gemm": 1}),
    ],
)
def test_quantize_exclusions(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, options: list[str], quantized: dict, float_ops: dict
) -> None:
    out = tmp_path / "q.onnx"
    code, stdout, _ = run_cli(
        capsys, "quantize", "digits-teacher", "--calib", DIGITS_CALIB, "-o", out, "--json", *options
    )
    assert code == 0
    result = json.loads(stdout)
    assert (result["quantized"], result["float_ops"]) == (quantized, float_ops)
    assert len(inspect_qdq(out).float_weight_ops) == sum(float_ops.values())


def test_quantize_samples_and_seed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = ["quantize", "digits-teacher", "--calib", DIGITS_FOLDER, "--samples", "20", "--cache-dir", tmp_path]
    code, stdout, _ = run_cli(capsys, *args, "--seed", "1", "-o", tmp_path / "a.onnx")
    assert code == 0
    assert "calibration: 20 samples" in " ".join(stdout.split())
    run_cli(capsys, *args, "--seed", "2", "-o", tmp_path / "b.onnx")
    assert (tmp_path / "a.onnx").read_bytes() != (tmp_path / "b.onnx").read_bytes(), "another draw, other ranges"


def test_quantize_dynamic(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "quantize", "digits-teacher", "--mode", "dynamic", "-o", tmp_path / "d.onnx")
    assert code == 1
    assert_one_line_error(err, "refusing dynamic INT8 for a convolutional model", "--force")
    assert not (tmp_path / "d.onnx").exists()
    code, stdout, _ = run_cli(
        capsys, "quantize", "digits-teacher", "--mode", "dynamic", "--force", "-o", tmp_path / "d.onnx", "--json"
    )
    assert code == 0
    assert json.loads(stdout)["quantized"] == {"ConvInteger": 3, "MatMulInteger": 2}
    mm = onnx_factory.save(onnx_factory.matmul_with_weight(), tmp_path / "mm.onnx")
    code, stdout, _ = run_cli(capsys, "quantize", mm, "--mode", "dynamic", "-o", tmp_path / "mm8.onnx", "--json")
    assert code == 0
    assert json.loads(stdout)["quantized"] == {"MatMulInteger": 1}


def test_quantize_warns_when_nothing_was_quantized(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = onnx_factory.save(relu_only(), tmp_path / "relu.onnx")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).random((8, 4), dtype=np.float32))
    code, stdout, err = run_cli(capsys, "quantize", model, "--calib", tmp_path / "calib.npy", "-o", tmp_path / "q.onnx")
    assert code == 0, "a warning, not an error"
    assert "NOTHING WAS QUANTIZED in relu.onnx" in " ".join(err.split())
    assert "quantized: none" in stdout


def bad_spec(folder: Path) -> Path:
    spec = dict(models.card("digits-teacher").preprocessing, height=16, width=16)
    path = folder / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def quantize_case(case: str, d: Path) -> list[str | Path]:
    """Arguments of ``edgerun quantize`` for one bad input, its files made in ``d``."""
    out = ["-o", d / "x.onnx"]
    if case == "no-calib":  # a file with no card (a bundled model brings its card's calibration set)
        copy = d / "teacher.onnx"
        shutil.copyfile(models.path("digits-teacher"), copy)
        return [copy, *out]
    if case == "missing":
        return ["digits-teacher", "--calib", d / "nowhere", *out]
    if case == "empty":
        (d / "empty").mkdir()
        return ["digits-teacher", "--calib", d / "empty", *out]
    if case == "non-images":
        (d / "notes").mkdir()
        (d / "notes" / "a.txt").write_text("x")
        return ["digits-teacher", "--calib", d / "notes", *out]
    if case == "bad-image":
        (d / "images").mkdir()
        shutil.copy(sorted(DIGITS_FOLDER.glob("*.png"))[0], d / "images")
        (d / "images" / "x.png").write_bytes(b"no png")
        return ["digits-teacher", "--calib", d / "images", *out]
    if case == "wrong-size":
        np.save(d / "w.npy", np.zeros((3, 1, 9, 8), np.float32))
        return ["digits-teacher", "--calib", d / "w.npy", *out]
    if case == "spec":
        return ["digits-teacher", "--calib", DIGITS_FOLDER, "--preprocess", bad_spec(d), *out]
    if case == "exclude":
        return ["digits-teacher", "--calib", DIGITS_CALIB, "--exclude", "Softmax", *out]
    assert case == "no-model"
    return [d / "nothing.onnx", "--calib", DIGITS_CALIB, *out]


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("no-calib", ["static INT8 needs calibration data: --calib SRC"]),
        ("missing", ["nowhere: data source not found"]),
        ("empty", ["empty: folder is empty"]),
        ("non-images", ["holds 1 file(s) but no images"]),
        ("bad-image", ["x.png: OpenCV cannot decode"]),
        ("wrong-size", ["w.npy: samples for input 'image' have size 9 at axis 2", "expects 8 (['batch', 1, 8, 8]"]),
        ("spec", ["preprocessing makes float32 samples of shape [1, 16, 16], but input 'image' expects"]),
        ("exclude", ["--exclude 'Softmax' names no node", "operator types: Conv, Flatten, Gemm, MaxPool, Relu"]),
        ("no-model", ["nothing.onnx: model file not found"]),
    ],
)
def test_quantize_bad_inputs_print_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str, fragments: list[str]
) -> None:
    code, _, err = run_cli(capsys, "quantize", *quantize_case(case, tmp_path))
    assert code == 1
    assert_one_line_error(err, *fragments)
    assert not (tmp_path / "x.onnx").exists()


def test_quantize_refuses_an_int8_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    first = tmp_path / "int8.onnx"
    assert run_cli(capsys, "quantize", "digits-teacher", "--calib", DIGITS_CALIB, "-o", first)[0] == 0
    code, _, err = run_cli(capsys, "quantize", first, "--calib", DIGITS_CALIB, "-o", tmp_path / "again.onnx")
    assert code == 1
    assert_one_line_error(err, "int8.onnx: already quantized")


def test_quantize_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = ["quantize", "digits-teacher", "--calib", DIGITS_CALIB, "-o", tmp_path / "x.onnx"]
    code, _, err = run_cli(capsys, *args, "--method", "kl")
    assert code == 2
    assert "Invalid value for '--method'" in err
    code, _, err = run_cli(capsys, "quantize", "digits-teacher", "--calib", DIGITS_CALIB)
    assert code == 2
    assert "Missing option '-o'" in err


# --- convert -----------------------------------------------------------------------------------


def test_convert_fp16(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "t16.onnx"
    code, stdout, _ = run_cli(capsys, "convert", "digits-teacher", "--fp16", "-o", out)
    assert code == 0
    text = " ".join(stdout.split())
    assert f"wrote {out} (FP16 weights and arithmetic, FP32 inputs/outputs)" in text
    assert "check: fp16 checked against fp32 on 64 samples of" in text, "the card's check set"
    assert "passed; 0 of 12 nodes kept in FP32; 'logits' cosine 1.00000, top-1 agreement 100.00%; 1 probe" in text
    assert "random inputs" not in text
    assert ModelFile.open(out).precision == "fp16"
    code, stdout, _ = run_cli(capsys, "convert", "ppocr-cls", "--fp16", "-o", tmp_path / "c16.onnx", "--json")
    assert code == 0
    result = json.loads(stdout)
    assert result["output"] == str(tmp_path / "c16.onnx")
    check = result["check"]
    assert (check["passed"], check["kept_fp32"], check["random_inputs"]) == (True, [], False)
    assert check["after"][0]["top1_agreement"] == 1.0
    assert result["note"] is None


def test_convert_without_the_check(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "t16.onnx"
    code, stdout, _ = run_cli(capsys, "convert", "digits-teacher", "--fp16", "-o", out, "--no-check")
    assert code == 0
    text = " ".join(stdout.split())
    assert f"wrote {out} (10 tensors in FP16" in text
    assert "max abs output difference to FP32 on seeded random inputs:" in text
    assert "check: skipped (--no-check)" in text
    assert ModelFile.open(out).precision == "fp16"
    args = ["convert", "ppocr-cls", "--fp16", "-o", tmp_path / "c.onnx", "--no-check", "--json"]
    code, stdout, _ = run_cli(capsys, *args)
    assert code == 0
    result = json.loads(stdout)
    assert result["validated_shapes"] == {"x": [1, 3, 48, 192]}, "the card's shape"
    assert 0 <= result["max_abs_error"] < 0.01
    assert result["check"] is None


def test_convert_a_user_model_with_free_dims(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    copy = shutil.copy(models.path("ppocr-cls"), tmp_path / "cls.onnx")
    code, _, err = run_cli(capsys, "convert", copy, "--fp16", "-o", tmp_path / "a.onnx")
    assert code == 1
    assert_one_line_error(err, "cls.onnx: no check data, and random inputs need concrete input shapes", "--shape x=")
    assert not (tmp_path / "a.onnx").exists()
    args = ["convert", copy, "--fp16", "-o", tmp_path / "b.onnx", "--json"]
    code, stdout, _ = run_cli(capsys, *args, "--shape", "x=2x3x48x100")
    assert code == 0
    result = json.loads(stdout)
    assert result["check"]["samples"] == "8 seeded random samples (seed 0)"
    assert "prove little about real data" in result["note"]
    code, stdout, _ = run_cli(capsys, "convert", copy, "--fp16", "-o", tmp_path / "c.onnx", "--no-check")
    assert code == 0
    assert "loaded, not run: give --shape" in " ".join(stdout.split())


def test_convert_keeps_the_node_that_overflows_fp16(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = onnx_factory.save(fp16_overflow_one_node(), tmp_path / "overflow.onnx")
    x = mlp_inputs(16)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "mixed.onnx"
    code, stdout, _ = run_cli(capsys, "convert", model, "--fp16", "--data", tmp_path / "x.npy", "-o", out)
    assert code == 0
    text = " ".join(stdout.split())
    assert "nodes kept in FP32)" in text
    assert f"kept in FP32: {FP16_OVERFLOW_NODE} (MatMul): output 'overflow_out' reaches" in text
    assert "random inputs" not in text
    with edgerun.load(model) as fp32, edgerun.load(out) as mixed:
        np.testing.assert_allclose(mixed.run(x)["logits"], fp32.run(x)["logits"], rtol=1e-2, atol=1e-2)
    code, stdout, _ = run_cli(capsys, "convert", model, "--fp16", "-o", tmp_path / "r.onnx", "--json")
    assert code == 0
    result = json.loads(stdout)
    assert FP16_OVERFLOW_NODE in result["check"]["kept_fp32"]
    assert result["check"]["random_inputs"] is True
    assert "prove little" in result["note"]


@pytest.mark.filterwarnings("ignore:All-NaN slice encountered")
@pytest.mark.parametrize("command", ["convert", "quantize"])
def test_no_mix_meets_the_budget_exit_3_and_nothing_written(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    """Check samples on which FP32 itself gives NaN: no version, not even one kept all in FP32, can match it."""
    model = onnx_factory.save(fp16_overflow_one_node(), tmp_path / "overflow.onnx")
    x = mlp_inputs(16)
    x[::2, 2] = np.nan  # half the samples: below every budget's cosine (int8: 0.9)
    np.save(tmp_path / "nan.npy", x)
    np.save(tmp_path / "calib.npy", mlp_inputs(32, seed=1))
    out = tmp_path / "out.onnx"
    extra = ["--fp16"] if command == "convert" else ["--calib", tmp_path / "calib.npy"]
    args = [command, model, *extra, "--data", tmp_path / "nan.npy", "-o", out]
    code, stdout, err = run_cli(capsys, *args)
    assert code == 3
    text = " ".join(stdout.split())
    assert "FAILED: output 'logits' has a mean cosine similarity" in text
    assert f"{out} not written: no mix of precisions meets the quality budget" in text
    assert "threshold violated:" in err
    assert "version meets the quality budget on 16 samples of" in " ".join(err.split())
    assert not out.exists()
    code, stdout, _ = run_cli(capsys, *args, "--json")
    assert code == 3
    result = json.loads(stdout)
    assert (result["written"], result["check"]["passed"]) == (False, False)
    assert not out.exists()


def test_quantize_without_the_check(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = ["quantize", "digits-teacher", "--calib", DIGITS_CALIB, "-o", tmp_path / "q.onnx", "--no-check"]
    code, stdout, _ = run_cli(capsys, *args)
    assert code == 0
    assert "check: skipped (--no-check)" in stdout
    code, stdout, _ = run_cli(capsys, *args, "--json")
    assert (json.loads(stdout)["check"], json.loads(stdout)["check_skipped"]) == (None, "skipped (--no-check)")


def test_quantize_budget_flags(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = ["quantize", "digits-teacher", "--calib", DIGITS_CALIB, "-o", tmp_path / "q.onnx", "--json"]
    code, stdout, _ = run_cli(capsys, *args, "--min-top1", "0.5", "--min-cosine", "0.8")
    assert code == 0
    budget = json.loads(stdout)["check"]["budget"]
    assert (budget["min_top1"], budget["min_cosine"], budget["min_slice_cosine"]) == (0.5, 0.8, 0.9)
    code, _, err = run_cli(capsys, *args, "--min-cosine", "1.1")
    assert code == 2
    assert "--min-cosine" in err


def test_convert_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    half = tmp_path / "t16.onnx"
    assert run_cli(capsys, "convert", "digits-teacher", "--fp16", "-o", half)[0] == 0
    code, _, err = run_cli(capsys, "convert", half, "--fp16", "-o", tmp_path / "again.onnx")
    assert code == 1
    assert_one_line_error(err, "t16.onnx: FP16 conversion starts from an fp32 model, this one is fp16")
    code, _, err = run_cli(capsys, "convert", "digits-teacher", "-o", tmp_path / "x.onnx")
    assert code == 2
    assert "--fp16" in err


# --- compare -----------------------------------------------------------------------------------


def test_compare_on_labelled_images_with_json_and_markdown(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    json_path, md_path = tmp_path / "c.json", tmp_path / "c.md"
    code, stdout, _ = run_cli(
        capsys, "compare", "digits-teacher", "digits-teacher@int8", "--data", DIGITS_FOLDER, "--iterations", "5",
        "--json", json_path, "--markdown", md_path, "--max-accuracy-drop", "1", "--min-cosine", "0.99",
    )  # fmt: skip
    assert code == 0
    assert f"200 samples from {DIGITS_FOLDER}" in " ".join(stdout.split())
    report = json.loads(json_path.read_text())
    assert report["samples"] == 200
    assert report["iterations"] == 5
    ref, int8 = report["models"]
    assert (ref["label"], int8["label"]) == ("digits-teacher", "digits-teacher@int8")
    assert (ref["precision"], int8["precision"]) == ("fp32", "int8")
    assert ref["correct"] >= 195, "labels.csv was picked up"
    assert int8["outputs"][0]["cosine_mean"] > 0.99
    markdown = md_path.read_text()
    assert markdown.startswith("| model | precision |")
    assert "| digits-teacher@int8 | int8 |" in markdown


def test_compare_exit_3_on_a_violated_accuracy_drop(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = ["compare", "digits-teacher", "digits-student", "--data", DIGITS_TEST, "--iterations", "3"]
    code, _, err = run_cli(capsys, *args, "--max-accuracy-drop", "0.1", "--json", tmp_path / "r.json")
    assert code == 3
    text = " ".join(err.split())
    assert "FAIL digits-student: accuracy drop 0.56 points > 0.1" in text
    assert "threshold violated:" in text
    assert (tmp_path / "r.json").is_file(), "reports are written before the verdict"
    assert run_cli(capsys, *args, "--max-accuracy-drop", "1")[0] == 0


def test_compare_exit_3_on_a_violated_cosine(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["compare", "digits-teacher", "digits-student", "--iterations", "3", "--samples", "16"]
    code, _, err = run_cli(capsys, *args, "--min-cosine", "0.99")
    assert code == 3
    assert "digits-student: output 'logits' cosine" in " ".join(err.split())
    assert run_cli(capsys, *args, "--min-cosine", "-1")[0] == 0


def test_compare_holds_candidates_to_a_quality_budget(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["compare", "digits-teacher", "--data", DIGITS_TEST, "--iterations", "2", "--quality-budget", "int8"]
    code, stdout, _ = run_cli(capsys, *args[:2], "digits-teacher@int8", *args[2:], "--wide")
    assert code == 0
    assert "fp32 nodes" in stdout, "the guard's figures are in the table"
    code, _, err = run_cli(capsys, *args[:2], "digits-student", *args[2:])
    assert code == 3
    assert "FAIL digits-student: output 'logits' has a mean cosine similarity of" in " ".join(err.split())
    code, _, err = run_cli(capsys, *args[:2], "digits-student", *args[2:-1], "fp32")
    assert code == 2


def test_compare_labels_from_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with np.load(DIGITS_TEST) as raw:
        np.save(tmp_path / "x.npy", raw["images"][:40])
        np.save(tmp_path / "y.npy", raw["labels"][:40])
    code, _, _ = run_cli(
        capsys, "compare", "digits-teacher", "digits-student", "--data", tmp_path / "x.npy",
        "--labels", tmp_path / "y.npy", "--iterations", "2", "--json", tmp_path / "r.json",
    )  # fmt: skip
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["samples"] == 40
    assert report["models"][0]["accuracy"] is not None


def compare_case(case: str, d: Path) -> list[str | Path]:
    """Arguments of ``edgerun compare`` for one bad input, its files made in ``d``."""
    pair = ["digits-teacher", "digits-student"]
    if case == "different-io":
        return ["digits-teacher", "ppocr-cls"]
    if case == "labels-without-data":
        return [*pair, "--labels", DIGITS_TEST]
    if case == "label-count":
        (d / "y.txt").write_text("1\n2\n")
        return [*pair, "--data", DIGITS_TEST, "--labels", d / "y.txt"]
    if case == "labels-csv-missing-file":
        shutil.copy(sorted(DIGITS_FOLDER.glob("*.png"))[0], d / "digit.png")
        (d / "labels.csv").write_text("file,label\n")
        return [*pair, "--data", d]
    if case == "spec":
        return [*pair, "--preprocess", bad_spec(d), "--data", DIGITS_FOLDER]
    assert case == "missing-data"
    return [*pair, "--data", d / "none"]


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("different-io", ["cannot compare it with digits-teacher: different inputs"]),
        ("labels-without-data", ["--labels needs --data"]),
        ("label-count", ["y.txt: 2 labels for 360 samples"]),
        ("labels-csv-missing-file", ["labels.csv: no label for 1 image(s), e.g. digit.png"]),
        ("spec", ["preprocessing makes float32 samples of shape [1, 16, 16]"]),
        ("missing-data", ["none: data source not found"]),
    ],
)
def test_compare_bad_inputs_print_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str, fragments: list[str]
) -> None:
    code, _, err = run_cli(capsys, "compare", *compare_case(case, tmp_path), "--iterations", "2")
    assert code == 1
    assert_one_line_error(err, *fragments)


def test_compare_needs_two_models(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "compare", "digits-teacher")
    assert code == 2
    assert "give a reference model and at least one candidate" in err


def test_compare_a_path_with_an_at_sign(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = tmp_path / "models@v2"
    folder.mkdir()
    reference = shutil.copy(models.path("digits-student"), folder / "model.onnx")
    code, _, err = run_cli(capsys, "compare", reference, "digits-teacher", "--iterations", "2")
    assert code == 0, err


# --- tune --------------------------------------------------------------------------------------


def test_tune(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    out, report = tmp_path / "best.onnx", tmp_path / "tune.json"
    code, stdout, _ = run_cli(
        capsys, "tune", "digits-teacher", "--calib", DIGITS_CALIB, "--data", DIGITS_TEST, "--max-accuracy-drop", "1",
        "-o", out, "--iterations", "3", "--json", report, "--markdown", tmp_path / "tune.md",
    )  # fmt: skip
    assert code == 0
    assert stdout.splitlines()[0] == "target cpu: the Q/DQ layout of onnxruntime on cpu (this device's plan)", (
        "tune and quantize agree"
    )
    result = json.loads(report.read_text())
    assert f"chosen: {result['chosen']} (quality drop" in " ".join(stdout.split())
    assert result["criterion"] == "accuracy points vs the reference"
    assert result["drops"][result["chosen"]] <= 1
    assert result["comparison"]["models"][0]["label"] == "fp32 (reference)"
    assert len(result["comparison"]["models"]) == 7
    chosen = next(m for m in result["comparison"]["models"] if m["label"] == result["chosen"])
    assert ModelFile.open(out).precision == chosen["precision"]
    with edgerun.load(out) as session:
        assert session.run(np.zeros((2, 1, 8, 8), np.float32))["logits"].shape == (2, 10)
    assert (tmp_path / "tune.md").read_text().startswith("| model |")
    lines = stdout.splitlines()
    assert "…" not in stdout, "no cell cut short at 80 columns"
    for model in result["comparison"]["models"]:
        assert any(model["label"] in line for line in lines), f"{model['label']} is not whole on a line"
    header = next(line for line in lines if line.startswith("model "))
    assert header.split() == ["model", "p50", "ms", "speed-up", "quality", "drop", "fp32", "nodes"]
    assert max(len(line) for line in lines[: lines.index(header) + 9]) <= 80


def test_tune_without_labels(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    report = tmp_path / "tune.json"
    code, _, _ = run_cli(
        capsys, "tune", "digits-teacher", "--calib", DIGITS_FOLDER, "--calib-samples", "50", "--samples", "32",
        "--max-accuracy-drop", "5", "-o", tmp_path / "best.onnx", "--iterations", "2", "--json", report,
        "--target", "tensorrt",
    )  # fmt: skip
    assert code == 0
    result = json.loads(report.read_text())
    assert result["criterion"] == "100 x (1 - top-1 agreement with the reference)"
    assert result["comparison"]["samples"] == 32
    assert (tmp_path / "best.onnx").is_file()


def test_tune_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(
        capsys, "tune", "digits-teacher", "--calib", tmp_path / "none", "--max-accuracy-drop", "1",
        "-o", tmp_path / "b.onnx",
    )  # fmt: skip
    assert code == 1
    assert_one_line_error(err, "none: data source not found")
    code, _, err = run_cli(capsys, "tune", "digits-teacher", "--calib", DIGITS_CALIB, "-o", tmp_path / "b.onnx")
    assert code == 2
    assert "--max-accuracy-drop" in err
    assert not (tmp_path / "b.onnx").exists()
