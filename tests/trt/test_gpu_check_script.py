"""``scripts/gpu_check.py`` in its CPU-only mode: under a minute, exit 0, every GPU check reported as
skipped with its reason in one JSON and one Markdown summary; ``--require-gpu`` exits 2."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edgerun.bench.selftest import SELFTEST_MODELS
from edgerun.trt import cuda

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.py"
CUDA_REASON = cuda.unavailable_reason()
pytestmark = pytest.mark.skipif(CUDA_REASON is None, reason="a GPU is here: the script would run its full GPU mode")


def _run(out: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), *extra], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    return done, time.perf_counter() - started


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], float, Path]:
    out = tmp_path_factory.mktemp("gpu-check")
    done, seconds = _run(out)
    return done, seconds, out


def _summary(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "gpu_check.json").read_text())
    return data


def test_cpu_only_mode_exits_0_in_under_a_minute(cpu_run: tuple[Any, float, Path]) -> None:
    done, seconds, out = cpu_run
    assert done.returncode == 0, done.stdout + done.stderr
    assert seconds < 60
    data = _summary(out)
    assert data["ok"] is True
    assert data["gpu"] is False
    assert data["seconds"] < 60
    assert data["device"]["cuda_unavailable_reason"] == CUDA_REASON
    assert data["device"]["tensorrt_available"] is False
    assert data["versions"]["python"]
    assert data["versions"]["edgerun"]
    assert data["counts"] == {s: sum(c["status"] == s for c in data["checks"]) for s in ("pass", "fail", "skip")}
    assert data["counts"]["fail"] == 0


def test_every_check_has_a_status_and_the_skips_say_why(cpu_run: tuple[Any, float, Path]) -> None:
    _, _, out = cpu_run
    data = _summary(out)
    checks = {c["name"]: c for c in data["checks"]}
    for check in data["checks"]:
        assert set(check) == {"name", "status", "detail", "figures"}
        assert check["status"] in ("pass", "skip")
        if check["status"] == "skip":
            assert check["detail"], check["name"]
    assert checks["gpu"]["status"] == "skip"
    assert checks["gpu"]["detail"] == f"CPU-only mode: {CUDA_REASON}"
    for name in SELFTEST_MODELS:
        ort = checks[f"selftest: onnxruntime cpu: {name}"]
        assert ort["status"] == "pass"
        assert ort["figures"]["p50_ms"] > 0
    assert checks["selftest: cuda"]["status"] == "skip"
    assert checks["selftest: tensorrt"]["status"] == "skip"
    assert set(data["skipped_because"]) == {c["detail"] for c in data["checks"] if c["status"] == "skip"}


def test_the_gpu_tests_were_collected_and_skipped(cpu_run: tuple[Any, float, Path]) -> None:
    _, _, out = cpu_run
    data = _summary(out)
    assert data["pytest"]["returncode"] == 0
    tests = {c["name"].removeprefix("pytest: "): c for c in data["checks"] if c["name"].startswith("pytest: ")}
    mine = [n for n in tests if n.startswith("tests/trt/test_gpu_tensorrt.py::")]
    expected = (
        [
            f"test_tensorrt_matches_onnxruntime_cpu[{k}-{p}]"
            for k in ("digits-student", "ppocr-cls", "ppocr-det-224")
            for p in ("fp32", "fp16", "int8")
        ]
        + [f"test_onnxruntime_cuda_matches_cpu[{k}]" for k in ("digits-student", "ppocr-cls", "ppocr-det-224")]
        + [f"test_cuda_graph_replay_matches_plain_execution[{k}]" for k in ("digits-student", "ppocr-cls")]
        + [
            "test_engine_cache_hits_on_reload",
            "test_a_truncated_engine_is_rebuilt",
            "test_two_processes_build_one_engine",
            "test_a_shape_outside_the_profile_is_an_input_error",
            "test_open_close_cycles_give_device_memory_back",
        ]
    )
    assert sorted(n.split("::", 1)[1] for n in mine) == sorted(expected)
    assert any(n.startswith("tests/trt/test_gpu.py::") for n in tests)
    for name, check in tests.items():
        assert check["status"] == "skip", name
        assert "seconds" in check["figures"]
    trt = tests["tests/trt/test_gpu_tensorrt.py::test_two_processes_build_one_engine"]
    assert trt["detail"].startswith("TensorRT cannot run here: ")


def test_the_markdown_summary_lists_every_check(cpu_run: tuple[Any, float, Path]) -> None:
    _, _, out = cpu_run
    data, text = _summary(out), (out / "gpu_check.md").read_text()
    assert "- Result: **ok**" in text
    assert "CPU-only" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| check ")]
    assert [row.split(" | ")[0].removeprefix("| ") for row in rows] == [c["name"] for c in data["checks"]]


def test_require_gpu_exits_2_without_a_gpu(tmp_path: Path) -> None:
    done, seconds = _run(tmp_path, "--require-gpu")
    assert done.returncode == 2, done.stdout + done.stderr
    data = _summary(tmp_path)
    assert data["ok"] is False
    assert [(c["name"], c["status"]) for c in data["checks"]] == [("gpu", "fail")]
    assert seconds < 60
