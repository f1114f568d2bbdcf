"""``run_selftest`` on a host without CUDA or TensorRT: the ONNX Runtime CPU checks pass with figures,
CUDA and TensorRT are skipped with the reason, and the report is ok."""

from __future__ import annotations

import json
import math
from importlib import util

import pytest

from edgerun.bench.selftest import SELFTEST_MODELS, Check, SelftestReport, run_selftest
from edgerun.runtime.device import current_device
from edgerun.trt import cuda
from edgerun.trt import entry as backend

CUDA_REASON = cuda.unavailable_reason()
pytestmark = pytest.mark.skipif(
    CUDA_REASON is None or util.find_spec("tensorrt") is not None,
    reason="expects a host without a usable CUDA device or TensorRT",
)
ORT_CHECKS = [f"onnxruntime cpu: {name}" for name in SELFTEST_MODELS]


@pytest.fixture(scope="module")
def run() -> tuple[SelftestReport, list[str]]:
    steps: list[str] = []
    return run_selftest(progress=steps.append), steps


def test_the_checks_and_their_order(run: tuple[SelftestReport, list[str]]) -> None:
    report, steps = run
    assert SELFTEST_MODELS == ("digits-student", "ppocr-cls")
    assert [c.name for c in report.checks] == [*ORT_CHECKS, "cuda", "tensorrt"]
    assert steps == ORT_CHECKS, "progress names each check that runs"


def test_onnxruntime_cpu_checks_pass_with_a_p50(run: tuple[SelftestReport, list[str]]) -> None:
    report, _ = run
    for check in report.checks[: len(ORT_CHECKS)]:
        assert check.status == "pass", check.detail
        assert check.detail.startswith("onnxruntime CPU, ")
        assert check.detail.endswith("thread(s)")
        assert set(check.figures) == {"p50_ms"}
        p50 = check.figures["p50_ms"]
        assert math.isfinite(p50)
        assert 0 < p50 < 1000, "tiny models at batch 1: well under a second"


def test_cuda_and_tensorrt_are_skipped_with_the_reason(run: tuple[SelftestReport, list[str]]) -> None:
    report, _ = run
    checks = {c.name: c for c in report.checks}
    assert checks["cuda"].status == "skip"
    assert checks["cuda"].detail == CUDA_REASON
    assert checks["cuda"].figures == {}
    assert checks["tensorrt"].status == "skip"
    assert checks["tensorrt"].detail == backend.probe(current_device(), "auto").reason
    assert "tensorrt Python package is not importable" in checks["tensorrt"].detail
    assert checks["tensorrt"].figures == {}


def test_the_report_is_ok_and_serializes(run: tuple[SelftestReport, list[str]]) -> None:
    report, _ = run
    assert report.ok is True
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is True
    assert [c["name"] for c in data["checks"]] == [c.name for c in report.checks]
    assert [c["status"] for c in data["checks"]] == ["pass", "pass", "skip", "skip"]
    assert data["checks"][0]["figures"]["p50_ms"] == report.checks[0].figures["p50_ms"]


@pytest.mark.parametrize(
    ("statuses", "ok"),
    [(["pass"], True), (["skip"], True), ([], True), (["pass", "fail"], False), (["skip", "fail", "pass"], False)],
)
def test_ok_is_false_when_any_check_failed(statuses: list[str], ok: bool) -> None:
    report = SelftestReport([Check(f"c{i}", status) for i, status in enumerate(statuses)])
    assert report.ok is ok
    assert report.to_dict()["ok"] is ok
