"""``run_selftest`` on a host without CUDA or TensorRT: the ONNX Runtime CPU checks pass with figures,
CUDA and TensorRT are skipped with the reason, and the report is ok. The judging helpers the GPU checks
use (every output, TF32-aware FP32 limit, quality budgets, graph counters) are checked on CPU arrays."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import util
from typing import Any

import numpy as np
import pytest

import edgerun
from edgerun.bench import selftest
from edgerun.bench.selftest import SELFTEST_MODELS, Check, SelftestReport, run_selftest
from edgerun.runtime.device import current_device
from edgerun.trt import cuda
from edgerun.trt import entry as backend

CUDA_REASON = cuda.unavailable_reason()
cpu_host = pytest.mark.skipif(
    CUDA_REASON is None or util.find_spec("tensorrt") is not None,
    reason="expects a host without a usable CUDA device or TensorRT",
)
ORT_CHECKS = [f"onnxruntime cpu: {name}" for name in SELFTEST_MODELS]


@pytest.fixture(scope="module")
def run() -> tuple[SelftestReport, list[str]]:
    steps: list[str] = []
    return run_selftest(progress=steps.append), steps


@cpu_host
def test_the_checks_and_their_order(run: tuple[SelftestReport, list[str]]) -> None:
    report, steps = run
    assert SELFTEST_MODELS == ("digits-student", "ppocr-cls")
    assert [c.name for c in report.checks] == [*ORT_CHECKS, "cuda", "tensorrt"]
    assert steps == ORT_CHECKS, "progress names each check that runs"


@cpu_host
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


@cpu_host
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


@cpu_host
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


# --- the judging helpers, on CPU arrays ---------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> tuple[selftest.Case, dict[str, np.ndarray], dict[str, np.ndarray]]:
    c = selftest.case("digits-student")
    inputs = selftest.check_inputs(c)
    return c, inputs, selftest.reference_outputs(c, inputs)


def test_the_check_inputs_are_the_cards_real_samples(digits: Any) -> None:
    c, inputs, reference = digits
    assert c.label == "digits-student"
    assert c.options == {}
    assert inputs["image"].shape == (64, 1, 8, 8)  # the card's 64 held-out test images, not random
    assert inputs["image"].min() >= 0
    assert inputs["image"].max() <= 1
    assert reference["logits"].shape == (64, 10)
    assert selftest.calls_for(inputs) == 16, "several calls of batch <= 4"


def test_a_resized_case_has_a_profile_and_samples_at_its_size() -> None:
    c = selftest.case("ppocr-det", 224)
    assert c.label == "ppocr-det 224x224"
    assert c.options == {"shapes": {"x": "1x3x224x224:1x3x224x224:4x3x224x224"}}
    assert c.card.input_shapes == {"x": [1, 3, 224, 224]}
    assert selftest.check_inputs(c)["x"].shape == (8, 3, 224, 224)


def test_run_in_calls_gives_what_one_call_gives(digits: Any) -> None:
    c, inputs, reference = digits
    with edgerun.load(c.name, device="cpu") as session:
        whole = session.run(inputs)
    np.testing.assert_allclose(reference["logits"], whole["logits"], rtol=1e-6, atol=1e-6)


def _two_outputs(reference: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    logits = reference["logits"]
    return {"logits": logits, "probs": np.exp(logits) / np.exp(logits).sum(1, keepdims=True)}


def test_fp32_is_judged_on_every_output_with_a_tf32_aware_limit(digits: Any) -> None:
    _, _, reference = digits
    want = _two_outputs(reference)
    span = {k: float(np.abs(v).max()) for k, v in want.items()}
    assert selftest.judge("fp32", want, want).ok
    tf32 = {k: v + 1e-3 * span[k] for k, v in want.items()}  # what TF32 rounding can cost
    verdict = selftest.judge("fp32", want, tf32)
    assert verdict.ok, verdict.detail
    assert verdict.figures["outputs"] == 2
    assert verdict.figures["max_rel_error"] == pytest.approx(1e-3, rel=1e-3)
    wrong_second = {"logits": want["logits"], "probs": want["probs"] + 1e-2}
    verdict = selftest.judge("fp32", want, wrong_second)
    assert not verdict.ok
    assert "output 'probs'" in verdict.detail
    assert "output 'logits'" not in verdict.detail


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda got: got.pop("probs"), "output 'probs' is missing"),
        (lambda got: got.update(probs=got["probs"][:-1]), "output 'probs' has shape [63, 10]"),
        (lambda got: got.update(probs=np.full_like(got["probs"], np.nan)), "output 'probs' has non-finite"),
        (lambda got: got.update(extra=got["probs"]), "output 'extra' is not in the reference"),
    ],
)
def test_a_missing_misshapen_or_nan_output_fails(digits: Any, change: Any, message: str) -> None:
    want = _two_outputs(digits[2])
    got = dict(want)
    change(got)
    for precision in ("fp32", "fp16", "int8"):
        verdict = selftest.judge(precision, want, got)
        assert not verdict.ok
        assert message in verdict.detail


def test_int8_is_judged_by_the_quality_budget_on_the_check_samples(digits: Any) -> None:
    _, _, reference = digits
    rng = np.random.default_rng(0)
    logits = reference["logits"]
    close = {"logits": logits + rng.normal(0, 0.02, logits.shape).astype(np.float32) * np.abs(logits).max()}
    verdict = selftest.judge("int8", reference, close)
    assert verdict.ok, verdict.detail  # 2% noise is what INT8 may cost
    assert not selftest.judge("fp32", reference, close).ok
    assert "within the int8 quality budget" in verdict.detail
    shuffled = {"logits": logits[::-1].copy()}  # right values, wrong samples: what a stale batch slice gives
    verdict = selftest.judge("int8", reference, shuffled)
    assert not verdict.ok
    assert "top-1 agreement" in verdict.detail
    assert verdict.figures["top1_agreement"] < 0.5


class _Backend:
    def __init__(self, stats: Any) -> None:
        self.graph_stats = stats


@dataclass
class _Stats:
    captured: int
    disabled: int


@pytest.mark.parametrize(
    "backend",
    [
        _Backend({"captured": 2, "disabled": 0, "replayed": 5}),
        _Backend(lambda: {"captured": 2, "disabled": 0, "replayed": 5}),
        _Backend(_Stats(2, 0)),
    ],
)
def test_graph_stats_reads_the_public_counters(backend: Any) -> None:
    stats = selftest.graph_stats(backend)
    assert stats["captured"] == 2
    assert stats["disabled"] == 0


def test_graph_stats_without_counters() -> None:
    class Old:
        def __init__(self) -> None:
            self._graphs = {(1,): object()}
            self._no_graph = {(4,)}

    assert selftest.graph_stats(Old()) == {"captured": 1, "disabled": 1}
    with pytest.raises(AttributeError, match="exposes no graph_stats"):
        selftest.graph_stats(object())


class _FakeTensorRT:
    """ONNX Runtime CPU posing as the TensorRT backend, with graphs that may replay stale outputs."""

    def __init__(self, graphs: bool, stats: dict[str, int], stale: bool) -> None:
        from edgerun.runtime.reference import open_on_cpu

        self.session = open_on_cpu(edgerun.models.path("digits-student"))
        self.inputs = self.session.inputs
        self.roles = self.session.roles
        self.graphs, self.stale = graphs, stale
        self.last: dict[str, np.ndarray] | None = None
        self.opened_backend = _Backend(stats)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        got = self.session.run(feeds)
        if self.graphs and self.stale and self.last is not None and len(self.last["logits"]) == len(got["logits"]):
            got = self.last  # a graph replaying the previous call's buffers
        self.last = got
        return got

    def __enter__(self) -> _FakeTensorRT:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()


@pytest.mark.parametrize(
    ("stats", "stale", "problem"),
    [
        ({"captured": 2, "disabled": 0}, False, None),
        ({"captured": 2, "disabled": 0}, True, "call 2 (batch 1) output 'logits' differs"),
        ({"captured": 0, "disabled": 0}, False, "no CUDA graph was captured"),
        ({"captured": 1, "disabled": 1}, False, "1 shape bucket(s) had graphs disabled"),
    ],
)
def test_graph_replay_is_compared_with_plain_execution(
    monkeypatch: pytest.MonkeyPatch, stats: dict[str, int], stale: bool, problem: str | None
) -> None:
    loads: list[dict[str, Any]] = []

    def fake_load(name: str, **options: Any) -> _FakeTensorRT:
        loads.append({"name": name, **options})
        return _FakeTensorRT(options["cuda_graphs"], stats, stale)

    monkeypatch.setattr(selftest, "load", fake_load)
    comparison = selftest.compare_graph_replay(selftest.case("digits-student"))
    assert [(d["cuda_graphs"], d["backend"]) for d in loads] == [(False, "tensorrt"), (True, "tensorrt")]
    assert comparison.figures["calls"] == len(selftest.GRAPH_SEQUENCE) == 8
    assert selftest.GRAPH_SEQUENCE == (1, 1, 1, 4, 4, 1, 4, 1)
    if problem is None:
        assert comparison.ok, comparison.detail
        assert "every output identical" in comparison.detail
    else:
        assert not comparison.ok
        assert problem in comparison.detail


def test_the_graph_sequence_has_fresh_inputs_each_call(digits: Any) -> None:
    c, _, _ = digits
    with edgerun.load(c.name, device="cpu") as session:
        feeds = selftest.sequence_feeds(session, c)
    assert [len(f["image"]) for f in feeds] == list(selftest.GRAPH_SEQUENCE)
    firsts = [f["image"][0].tobytes() for f in feeds]
    assert len(set(firsts)) == len(firsts)
