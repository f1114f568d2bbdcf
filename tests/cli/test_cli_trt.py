"""``edgerun build | cache | selftest`` on a host without TensorRT: exit codes, one-line errors, JSON, and
the engine cache managed from the command line."""

from __future__ import annotations

import json
import os
from importlib import util
from pathlib import Path

import onnxruntime as ort
import pytest

from edgerun.bench import selftest
from edgerun.bench.selftest import Check, SelftestReport
from edgerun.cli.main import main
from edgerun.runtime.device import current_device
from edgerun.trt import cuda
from edgerun.trt import entry as backend
from edgerun.trt.cache import EngineCache, EngineKey

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    util.find_spec("tensorrt") is not None
    or cuda.unavailable_reason() is None
    or "CUDAExecutionProvider" in ort.get_available_providers(),
    reason="expects a host without TensorRT or CUDA",
)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def key(precision: str = "fp16", **changes: str) -> EngineKey:
    fields = {
        "model_sha256": "a" * 64,
        "source_sha256": "b" * 64,
        "precision": precision,
        "tensorrt": "10.3.0",
        "gpu": "Orin",
        "compute_capability": "8.7",
        "profile": {"image": "1x1x8x8:1x1x8x8:8x1x8x8"},
        "flags": (),
        **changes,
    }
    return EngineKey(**fields)  # type: ignore[arg-type]


# --- selftest -----------------------------------------------------------------------------------


def test_selftest_passes_here_and_writes_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    code, out, _ = run_cli(capsys, "selftest", "--json", str(target))
    assert code == 0
    report = json.loads(target.read_text())
    assert report["ok"] is True
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses == {
        "onnxruntime cpu: digits-student": "pass",
        "onnxruntime cpu: ppocr-cls": "pass",
        "cuda": "skip",
        "tensorrt": "skip",
    }
    assert report["checks"][0]["figures"]["p50_ms"] > 0
    text = " ".join(out.split())
    assert "PASS onnxruntime cpu: digits-student: onnxruntime CPU" in text
    assert "PASS onnxruntime cpu: ppocr-cls: onnxruntime CPU" in text
    assert f"SKIP cuda: {cuda.unavailable_reason()}" in text
    assert "SKIP tensorrt: no NVIDIA GPU" in text or "SKIP tensorrt: the tensorrt Python package" in text


def test_selftest_prints_the_figures_and_details_verbatim(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "selftest")
    assert code == 0
    text = " ".join(out.split())
    assert "p50_ms" in text
    assert "pip install 'edgerun[tensorrt]'" in text


def test_selftest_without_json_writes_no_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "selftest")
    assert code == 0
    assert "SKIP tensorrt" in " ".join(out.split())
    assert list(tmp_path.iterdir()) == []


def test_a_failing_selftest_exits_3_naming_the_failed_checks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = SelftestReport(
        [Check("onnxruntime cpu: x", figures={"p50_ms": 1.0}), Check("tensorrt fp16: x", "fail", "max error 0.5")]
    )
    monkeypatch.setattr(selftest, "run_selftest", lambda progress=None: failing)
    target = tmp_path / "out.json"
    code, out, err = run_cli(capsys, "selftest", "--json", str(target))
    assert code == 3
    assert "FAIL tensorrt fp16: x: max error 0.5" in " ".join(out.split())
    assert one_line(err) == "threshold violated: selftest: tensorrt fp16: x"
    assert json.loads(target.read_text())["ok"] is False, "the JSON is written before the exit"


# --- build --------------------------------------------------------------------------------------


def test_build_without_tensorrt_exits_1_with_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "build", "digits-student")
    assert code == 1
    assert out == ""
    line = one_line(err)
    assert line.startswith("error: backend tensorrt cannot run ")
    assert "digits-student/model.onnx here: " in line
    assert "the tensorrt Python package is not importable (JetPack: apt install python3-libnvinfer" in line


def test_build_error_line_keeps_the_install_hint(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "build", "digits-student")
    assert code == 1
    line = one_line(err)
    assert line.endswith(backend.probe(current_device(), "auto").reason)
    assert "pip install 'edgerun[tensorrt]'" in line


def test_build_from_a_recipe_without_tensorrt_exits_1_with_one_error_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run_cli(
        capsys, "build", "--recipe", str(REPO / "engines" / "ppocr-cls-fp16.toml"), "--cache-dir", str(tmp_path)
    )
    assert code == 1
    line = one_line(err)
    assert line.startswith("error: backend tensorrt cannot run ")
    assert "ppocr-cls/model.onnx" in line
    assert list(tmp_path.iterdir()) == [], "nothing built, nothing cached"


def test_build_with_a_bad_recipe_names_the_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    recipe = tmp_path / "bad.toml"
    recipe.write_text('model = "ppocr-cls"\nprecision = "fp16"\nworkspace = 512\n')
    code, _, err = run_cli(capsys, "build", "--recipe", str(recipe))
    assert code == 1
    assert one_line(err) == (
        f"error: {recipe}: unknown recipe keys workspace; known: batch, calibration, dla_core, low_memory, "
        "model, notes, opt_level, precision, shapes, sparse_weights, target, version_compatible, workspace_mb"
    )


def test_build_without_a_model_or_recipe_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "build")
    assert code == 2
    assert "give MODEL or --recipe" in err


@pytest.mark.parametrize("args", [["--opt-level", "6"], ["--workspace", "0"], ["--dla", "-1"], ["--precision", "bf16"]])
def test_build_rejects_bad_builder_options_before_anything_else(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    code, _, err = run_cli(capsys, "build", "digits-student", *args)
    assert code == 2
    assert "Invalid value" in err


# --- cache --------------------------------------------------------------------------------------


def test_cache_commands_on_an_empty_cache(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = tmp_path / "engines"
    code, out, _ = run_cli(capsys, "cache", "list", "--cache-dir", str(folder))
    assert code == 0
    assert " ".join(out.split()).startswith("0 engine(s) in ")
    code, out, _ = run_cli(capsys, "cache", "list", "--cache-dir", str(folder), "--json")
    assert code == 0
    assert json.loads(out) == []
    code, out, err = run_cli(capsys, "cache", "verify", "--cache-dir", str(folder))
    assert code == 0
    assert one_line(out) == "0 sound, 0 removed"
    assert one_line(err) == "TensorRT is not importable here: checking files against manifests only"
    code, out, _ = run_cli(capsys, "cache", "clear", "--cache-dir", str(folder))
    assert code == 0
    assert one_line(out) == "removed 0 engine(s)"


def test_cache_commands_on_a_populated_cache(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = tmp_path / "engines"
    cache = EngineCache(folder)
    keys = [key("fp16"), key("int8"), key("fp32", gpu="Xavier", compute_capability="7.2")]
    paths = [cache.store(k, f"engine {k.precision}".encode() * 1000, {"model": "digits"}) for k in keys]

    code, out, _ = run_cli(capsys, "cache", "list", "--cache-dir", str(folder), "--json")
    assert code == 0
    listed = {Path(e["path"]): e for e in json.loads(out)}
    assert set(listed) == set(paths)
    for k, path in zip(keys, paths, strict=True):
        assert listed[path]["key"] == k.to_dict()
        assert listed[path]["size_bytes"] == path.stat().st_size == len(f"engine {k.precision}") * 1000
        assert listed[path]["model"] == "digits"
    code, out, _ = run_cli(capsys, "cache", "list", "--cache-dir", str(folder))
    assert code == 0
    text = " ".join(out.split())
    assert text.startswith("3 engine(s) in ")
    for path in paths:
        assert path.name in text
    assert "TensorRT 10.3.0" in text
    assert "Xavier" in text

    truncated = paths[1]
    truncated.write_bytes(truncated.read_bytes()[:100])
    code, out, err = run_cli(capsys, "cache", "verify", "--cache-dir", str(folder))
    assert code == 0
    assert "checking files against manifests only" in err
    lines = [" ".join(line.split()) for line in out.splitlines() if line.strip()]
    assert lines[-1] == "2 sound, 1 removed"
    assert [line for line in lines if line.startswith("REMOVED")] == [
        line for line in lines if line.startswith(f"REMOVED {truncated.name} (")
    ]
    assert len([line for line in lines if line.startswith("REMOVED")]) == 1
    assert f"ok {paths[0].name}" in lines
    assert f"ok {paths[2].name}" in lines
    assert not truncated.exists()
    assert not truncated.with_suffix(".json").exists()
    assert cache.lookup(keys[0]) == b"engine fp16" * 1000

    code, out, _ = run_cli(capsys, "cache", "clear", "--cache-dir", str(folder))
    assert code == 0
    assert one_line(out) == "removed 2 engine(s)"
    assert cache.entries() == []
    code, out, _ = run_cli(capsys, "cache", "list", "--cache-dir", str(folder), "--json")
    assert json.loads(out) == []


def test_cache_without_cache_dir_uses_the_user_cache(capsys: pytest.CaptureFixture[str]) -> None:
    cache = EngineCache()
    assert cache.root == Path(os.environ["EDGERUN_CACHE_DIR"]) / "engines"  # conftest's fresh folder
    path = cache.store(key("fp16", gpu="from-the-default-folder"), b"engine")
    try:
        code, out, _ = run_cli(capsys, "cache", "list", "--json")
        assert code == 0
        assert str(path) in {e["path"] for e in json.loads(out)}
    finally:
        cache.remove(path)
