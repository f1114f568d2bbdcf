"""Benchmark runner: inputs from specs, timing loop, report contents and the deadline verdict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgerun
from edgerun.bench import BenchResult, benchmark, random_feeds, time_calls
from edgerun.device import DeviceProfile
from edgerun.specs import TensorSpec, parse_shape_override
from edgerun.stats import LatencyStats

from . import onnx_factory

JSON_KEYS = {
    "model",
    "backend",
    "device",
    "batch",
    "iterations",
    "latency_ms",
    "throughput_per_s",
    "deadline_ms",
    "meets_deadline",
    "versions",
}


@pytest.fixture(scope="module")
def profile() -> DeviceProfile:
    return edgerun.current_device()


def test_random_feeds_follow_the_specs_and_the_seed() -> None:
    specs = (
        TensorSpec("x", ("batch", 3, 4), np.dtype(np.float32)),
        TensorSpec("ids", ("batch", 5), np.dtype(np.int64)),
        TensorSpec("mask", ("batch", 5), np.dtype(bool)),
    )
    a = random_feeds(specs, batch=4, seed=1)
    b = random_feeds(specs, batch=4, seed=1)
    c = random_feeds(specs, batch=4, seed=2)
    assert {k: v.shape for k, v in a.items()} == {"x": (4, 3, 4), "ids": (4, 5), "mask": (4, 5)}
    assert {k: v.dtype for k, v in a.items()} == {k: s.dtype for k, s in zip(a, specs, strict=True)}
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["x"], c["x"])


def test_free_dimensions_need_a_shape() -> None:
    spec = TensorSpec("x", ("?", 3, "?", "?"), np.dtype(np.float32))
    with pytest.raises(edgerun.InputError, match=r"free dimensions at axes 2, 3: .* --shape x=1x3xNxN"):
        random_feeds((spec,), batch=1)
    feeds = random_feeds((spec,), shapes={"x": (2, 3, 48, 192)})
    assert feeds["x"].shape == (2, 3, 48, 192)
    with pytest.raises(edgerun.InputError, match="sets axis 1 to 4, the model fixes it at 3"):
        random_feeds((spec,), shapes={"x": (1, 4, 48, 192)})
    with pytest.raises(edgerun.InputError, match="rank 3"):
        random_feeds((spec,), shapes={"x": (1, 3, 48)})


def test_fixed_batch_contradicting_the_requested_batch_is_an_error() -> None:
    spec = TensorSpec("x", (1, 4), np.dtype(np.float32))
    assert random_feeds((spec,))["x"].shape == (1, 4)
    with pytest.raises(edgerun.InputError, match="fixed batch of 1, cannot run batch 8"):
        random_feeds((spec,), batch=8)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("x=1x3x48x192", ("x", (1, 3, 48, 192))), ("input.1=2,3", ("input.1", (2, 3))), ("a=7", ("a", (7,)))],
)
def test_parse_shape_override(text: str, expected: tuple[str, tuple[int, ...]]) -> None:
    assert parse_shape_override(text) == expected


@pytest.mark.parametrize("text", ["x", "=1x2", "x=", "x=1xa", "x=0x3", "x=-1x3"])
def test_parse_shape_override_rejects(text: str) -> None:
    with pytest.raises(edgerun.InputError, match="shape override"):
        parse_shape_override(text)


def test_time_calls_counts_and_duration(student: edgerun.Session) -> None:
    feeds = {"image": np.zeros((1, 1, 8, 8), np.float32)}
    seen: list[int] = []
    timing = time_calls(student, feeds, warmup=2, iterations=25, progress=seen.append)
    assert len(timing.latencies_s) == 25
    assert np.all(timing.latencies_s > 0)
    assert timing.wall_s >= timing.latencies_s.sum()
    assert seen[-1] == 25
    timed = time_calls(student, feeds, warmup=0, iterations=1, duration_s=0.2)
    assert timed.wall_s >= 0.2
    assert len(timed.latencies_s) > 1


def test_benchmark_report_has_the_promised_keys(profile: DeviceProfile) -> None:
    with edgerun.load("ppocr-cls") as session:
        result = benchmark(session, profile, batch=2, warmup=1, iterations=12, deadline_ms=1000)
    data = result.to_dict()
    assert set(data) >= JSON_KEYS
    assert data["model"] == "ppocr-cls"
    assert data["batch"] == 2
    assert data["input_shapes"] == {"x": [2, 3, 48, 192]}
    assert data["iterations"] == 12
    assert set(data["latency_ms"]) >= {"min", "mean", "p50", "p90", "p95", "p99", "max"}
    assert data["meets_deadline"] is True
    assert data["throughput_per_s"] == pytest.approx(2 * 12 / data["wall_s"])
    assert data["versions"]["onnxruntime"] == profile.versions["onnxruntime"]
    assert data["fallbacks"]
    assert "TensorRT not available" in data["fallbacks"][0]
    assert data["device"]["kind"] == profile.kind
    assert any("iterations" in w for w in data["warnings"]), "12 iterations is flagged as too few"


def test_benchmark_needs_shapes_for_a_user_model_with_free_dims(tmp_path: Path, profile: DeviceProfile) -> None:
    import shutil

    copy = tmp_path / "cls.onnx"
    shutil.copy(edgerun.models.path("ppocr-cls"), copy)
    with edgerun.load(copy) as session:
        assert session.card is None
        with pytest.raises(edgerun.InputError, match="--shape x="):
            benchmark(session, profile, iterations=1)
        result = benchmark(session, profile, shapes={"x": (1, 3, 48, 96)}, warmup=0, iterations=3)
    assert result.input_shapes == {"x": [1, 3, 48, 96]}


def _result(p99: float, deadline: float, cv_spread: float = 0.0) -> BenchResult:
    latencies = np.full(200, p99 / 1e3)
    latencies[:100] *= 1 - cv_spread
    return BenchResult(
        model="m",
        model_sha256="0" * 64,
        backend="onnxruntime",
        plan={"precision": "fp32", "threads": 1, "fallbacks": []},
        device={"kind": "cpu"},
        batch=1,
        warmup=0,
        iterations=200,
        wall_s=1.0,
        latency_ms=LatencyStats.from_seconds(latencies),
        deadline_ms=deadline,
        versions={},
        input_shapes={},
    )


def test_deadline_verdict_uses_p99() -> None:
    assert _result(p99=99.0, deadline=100.0).meets_deadline
    assert _result(p99=100.0, deadline=100.0).meets_deadline
    assert not _result(p99=100.5, deadline=100.0).meets_deadline


def test_unstable_runs_are_flagged() -> None:
    assert not _result(10.0, 100.0).warnings
    assert any("unstable" in w for w in _result(10.0, 100.0, cv_spread=0.9).warnings)


def test_default_deadline_comes_from_the_device(tmp_path: Path) -> None:
    path = onnx_factory.save(onnx_factory.two_input_add(), tmp_path / "add.onnx")
    pi = DeviceProfile(
        kind="raspberry-pi",
        model="Raspberry Pi 4 Model B",
        arch="aarch64",
        cpu="Cortex-A72",
        cores=4,
        memory_bytes=4 << 30,
    )
    with edgerun.load(path, device=pi) as session:
        result = benchmark(session, pi, warmup=0, iterations=2)
    assert result.deadline_ms == 100.0
    assert result.to_dict()["threads"] == 4
