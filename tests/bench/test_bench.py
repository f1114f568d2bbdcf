"""Benchmark runner: inputs from specs, timing loop, report contents and the deadline verdict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgerun
from edgerun.bench.config import BenchConfig
from edgerun.bench.inputs import data_source
from edgerun.bench.result import BenchResult
from edgerun.bench.runner import benchmark, time_calls
from edgerun.runtime.device import DeviceProfile
from edgerun.runtime.synthetic import random_feeds
from edgerun.specs import TensorSpec, parse_shape_override
from edgerun.stats import LatencyStats

from .. import onnx_factory

JSON_KEYS = {
    "schema",
    "model",
    "model_sha256",
    "backend",
    "precision",
    "threads",
    "device",
    "system",
    "scenario",
    "settings",
    "batch",
    "inputs",
    "queries",
    "samples",
    "latency_ms",
    "latency_samples_ms",
    "throughput_per_s",
    "qps",
    "score",
    "deadline_ms",
    "meets_deadline",
    "deadline_rule",
    "server",
    "gpu_phases_ms",
    "warnings",
    "notes",
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


def test_single_stream_report_has_the_promised_keys_and_scores_p90(profile: DeviceProfile) -> None:
    with edgerun.load("ppocr-cls") as session:
        result = benchmark(session, profile, batch=2, warmup=1, min_queries=40, deadline_ms=1000)
    data = result.to_dict()
    assert set(data) >= JSON_KEYS
    assert data["schema"] == "edgerun.bench/2"
    assert (data["model"], data["scenario"], data["batch"], data["queries"], data["samples"]) == (
        "ppocr-cls",
        "single-stream",
        2,
        40,
        80,
    )
    assert data["inputs"] == {
        "source": "random (seed 0)",
        "include_preprocess": False,
        "shapes": {"x": [2, 3, 48, 192]},
        "roles": {"x": "data"},
    }
    samples = data["latency_samples_ms"]
    assert len(samples) == 40
    # the score is LoadGen's: nearest-rank p90 of the per-query latencies, recomputed by hand here
    ranked = sorted(samples)
    assert data["score"] == {
        "metric": "p90 latency ms",
        "value": pytest.approx(ranked[35], abs=1e-5),
        "higher_is_better": False,
    }
    assert data["latency_ms"]["median"] == pytest.approx(ranked[19], abs=1e-5)
    assert data["latency_ms"]["p99"] == pytest.approx(ranked[39], abs=1e-5)
    assert data["meets_deadline"] is True
    assert data["deadline_rule"] == "p99 <= 1000 ms"
    assert data["throughput_per_s"] == pytest.approx(80 / data["wall_s"])
    assert data["versions"]["onnxruntime"] == profile.versions["onnxruntime"]
    assert "TensorRT not available" in data["fallbacks"][0]
    assert data["device"]["kind"] == profile.kind
    assert any("too few queries for p90" in w for w in data["warnings"])  # 40 leave 4 beyond p90
    assert any("600 s" in n for n in data["notes"])  # shorter than LoadGen's minimum, said so


def test_multi_stream_sends_n_samples_per_query_and_scores_p99(profile: DeviceProfile) -> None:
    calls: list[int] = []
    with edgerun.load("digits-student") as session:
        real = session.run_validated
        session.run_validated = lambda feeds: (calls.append(len(feeds["image"])), real(feeds))[1]  # type: ignore[method-assign]
        result = benchmark(session, profile, scenario="multi-stream", samples_per_query=6, warmup=0, min_queries=30)
    data = result.to_dict()
    assert set(calls) == {6}  # one call of 6 samples per query (the model takes any batch)
    assert (data["queries"], data["samples"], data["settings"]["samples_per_query"]) == (30, 180, 6)
    assert data["score"]["metric"] == "p99 latency ms"
    assert data["score"]["value"] == pytest.approx(max(data["latency_samples_ms"]), abs=1e-5)  # p99 of 30 = the max


def test_multi_stream_on_a_fixed_batch_model_makes_several_calls_per_query(
    tmp_path: Path, profile: DeviceProfile
) -> None:
    path = onnx_factory.save(onnx_factory.two_input_add(batch=2), tmp_path / "fixed2.onnx")
    with edgerun.load(path) as session:
        result = benchmark(session, profile, scenario="multi-stream", samples_per_query=5, warmup=0, min_queries=4)
    assert result.batch == 2
    assert result.samples == 20


def test_offline_reports_samples_per_second(profile: DeviceProfile) -> None:
    with edgerun.load("digits-student") as session:
        result = benchmark(
            session, profile, scenario="offline", batch=16, offline_samples=320, warmup=0, deadline_ms=50
        )
    data = result.to_dict()
    assert (data["queries"], data["samples"]) == (20, 320)
    assert data["score"] == {
        "metric": "samples/s",
        "value": pytest.approx(320 / data["wall_s"]),
        "higher_is_better": True,
    }
    assert data["deadline_rule"].startswith("throughput >= 20.0 samples/s")
    assert data["meets_deadline"] == (data["throughput_per_s"] >= 20.0)


def test_server_holds_a_modest_rate_through_the_batcher(profile: DeviceProfile) -> None:
    with edgerun.load("digits-student") as session:
        result = benchmark(
            session, profile, scenario="server", target_qps=150, min_duration_s=1.5, latency_bound_ms=100, warmup=2
        )
    server = result.to_dict()["server"]
    scheduled = server["scheduled"]
    assert server["issued"] == scheduled == result.queries
    assert server["achieved_qps"] == pytest.approx(scheduled / 1.5, rel=0.15)
    assert server["bound_held"]
    assert server["dropped_fraction"] == 0.0
    assert result.score["metric"] == "QPS at target"
    settings = result.to_dict()["settings"]
    assert settings["max_batch_size"] == settings["batching"]["max_batch_size"]  # the device policy's
    assert settings["batching"]["batch_why"]
    assert settings["instances"] == settings["batching"]["instances"] >= 1


def test_server_with_a_given_batch_measures_nothing(
    profile: DeviceProfile, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--batch N: the server batcher takes N as load(batching=N) does, without timing the model first."""
    monkeypatch.setenv("EDGERUN_CACHE_DIR", str(tmp_path))  # no cached measurement to hide a new one

    def refuse(*args: object) -> dict[int, float]:
        raise AssertionError("the batching policy measured a model whose batch was given")

    monkeypatch.setattr("edgerun.runtime.batching.policy.measure_per_row", refuse)
    with edgerun.load("digits-student") as session:
        result = benchmark(session, profile, scenario="server", target_qps=50, min_duration_s=0.2, batch=4, warmup=0)
    settings = result.to_dict()["settings"]
    assert settings["max_batch_size"] == settings["batching"]["max_batch_size"] == 4
    assert settings["batching"]["batch_why"] == "given (--batch)"
    assert settings["instances"] == settings["batching"]["instances"] >= 1


def test_server_find_max_qps_searches_and_records_its_trials(profile: DeviceProfile) -> None:
    with edgerun.load("digits-student") as session:
        result = benchmark(
            session, profile, scenario="server", find_max_qps=True, min_duration_s=0.3, latency_bound_ms=20, warmup=0
        )
    server = result.to_dict()["server"]
    assert server["max_qps"] > 0
    assert len(server["trials"]) >= 2
    held = [t["target_qps"] for t in server["trials"] if t["bound_held"]]
    assert server["max_qps"] == pytest.approx(max(held))
    assert result.score == {
        "metric": "max QPS within the latency bound",
        "value": server["max_qps"],
        "higher_is_better": True,
    }


def test_real_images_through_the_cards_preprocessing(profile: DeviceProfile, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgerun.data.preprocess import PreprocessSpec

    folder = Path(__file__).resolve().parents[2] / "calibration" / "digits"
    decoded: list[str] = []
    real_load = PreprocessSpec.load

    def counting_load(self: PreprocessSpec, path: object) -> np.ndarray:
        decoded.append(str(path))
        return real_load(self, path)  # type: ignore[arg-type]

    with edgerun.load("digits-student") as session:
        loaded = benchmark(session, profile, data=str(folder), batch=4, warmup=0, min_queries=10)
        monkeypatch.setattr(PreprocessSpec, "load", counting_load)
        timed = benchmark(session, profile, data=str(folder), include_preprocess=True, warmup=2, min_queries=10)
    assert loaded.inputs["include_preprocess"] is False
    assert "samples" in loaded.inputs["source"]
    assert loaded.inputs["shapes"] == {"image": [4, 1, 8, 8]}
    assert timed.inputs["include_preprocess"] is True
    assert "decoded" in timed.inputs["source"]
    assert timed.inputs["shapes"] == {"image": [1, 1, 8, 8]}
    # one check of the first image, then one decode per query: 2 warm-up (images 0, 1), 10 timed (images 0..9)
    assert len(decoded) == 1 + 12
    assert decoded[1:3] == decoded[3:5]
    assert len(set(decoded[3:])) == 10


def test_arrays_from_an_npz_feed_the_model(profile: DeviceProfile) -> None:
    data = Path(edgerun.models.path("digits-student")).parent / "digits-test.npz"
    with edgerun.load("digits-student") as session:
        result = benchmark(session, profile, data=str(data), batch=8, warmup=0, min_queries=5)
    assert result.inputs["shapes"] == {"image": [8, 1, 8, 8]}


@pytest.mark.parametrize("rows", [1, 3, 7, 16])
def test_data_queries_take_consecutive_samples_and_wrap_around(tmp_path: Path, rows: int) -> None:
    count = 7
    path = tmp_path / "x.npy"
    np.save(path, np.arange(count * 2, dtype=np.float32).reshape(count, 2))
    specs = [TensorSpec("x", ("batch", 2), np.dtype(np.float32))]
    every = data_source(path, specs, count, None).feeds(0)["x"]  # the loaded set, in its order
    source = data_source(path, specs, rows, None)
    got = np.concatenate([source.feeds(q)["x"] for q in range(5)])
    np.testing.assert_array_equal(got, every[np.arange(5 * rows) % count])


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
        result = benchmark(session, pi, warmup=0, min_queries=2)
    assert result.deadline_ms == 100.0
    assert result.to_dict()["threads"] == 4


def test_benchmark_needs_shapes_for_a_user_model_with_free_dims(tmp_path: Path, profile: DeviceProfile) -> None:
    import shutil

    copy = tmp_path / "cls.onnx"
    shutil.copy(edgerun.models.path("ppocr-cls"), copy)
    with edgerun.load(copy) as session:
        assert session.card is None
        with pytest.raises(edgerun.InputError, match="--shape x="):
            benchmark(session, profile, min_queries=1)
        result = benchmark(session, profile, shapes={"x": (1, 3, 48, 96)}, warmup=0, min_queries=3)
    assert result.inputs["shapes"] == {"x": [1, 3, 48, 96]}


def test_thermal_throttling_during_a_run_is_a_warning(tmp_path: Path, profile: DeviceProfile) -> None:
    zone = tmp_path / "sys/devices/virtual/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text("86000\n")
    (zone / "trip_point_0_type").write_text("passive\n")
    (zone / "trip_point_0_temp").write_text("85000\n")
    with edgerun.load("digits-student") as session:
        result = benchmark(session, profile, warmup=0, min_queries=5, thermal_root=str(tmp_path))
    assert any("thermal throttling" in w and "cpu-thermal" in w for w in result.warnings)
    assert result.system["max_temperatures_c"] == {"cpu-thermal": 86.0}


# --- bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"scenario": "streaming"}, "unknown scenario 'streaming'"),
        ({"scenario": "server", "target_qps": 0}, "target QPS must be > 0"),
        ({"scenario": "server", "target_qps": -3}, "target QPS must be > 0"),
        ({"scenario": "server"}, "needs --target-qps or --find-max-qps"),
        ({"target_qps": 10}, "belong to the server scenario"),
        ({"scenario": "server", "target_qps": 10, "latency_bound_ms": 0}, "latency bound must be > 0"),
        ({"include_preprocess": True}, "needs real inputs"),
        ({"min_queries": 0}, "min_queries must be >= 1"),
        ({"scenario": "multi-stream", "batch": 4}, "--samples-per-query, not --batch"),
    ],
)
def test_bad_settings_are_config_errors(overrides: dict[str, object], message: str, profile: DeviceProfile) -> None:
    with edgerun.load("digits-student") as session, pytest.raises(edgerun.ConfigError, match=message):
        benchmark(session, profile, **{"warmup": 0, "min_queries": 1, **overrides})


def test_server_needs_a_model_the_batcher_can_batch(tmp_path: Path, profile: DeviceProfile) -> None:
    path = onnx_factory.save(onnx_factory.two_input_add(batch=1), tmp_path / "fixed.onnx")
    with edgerun.load(path) as session, pytest.raises(edgerun.ConfigError, match="needs a dynamic batch axis"):
        benchmark(session, profile, scenario="server", target_qps=10, min_duration_s=0.1)


def test_data_errors_name_the_folder_and_what_was_expected(tmp_path: Path, profile: DeviceProfile) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((4, 3, 8, 8), np.float32))
    with edgerun.load("digits-student") as session:
        with pytest.raises(edgerun.InputError, match="empty"):
            benchmark(session, profile, data=str(empty), min_queries=1)
        with pytest.raises(edgerun.InputError, match=r"float32 \[3, 8, 8\].*expects image float32"):
            benchmark(session, profile, data=str(wrong), min_queries=1)
        with pytest.raises(edgerun.InputError, match="not found"):
            benchmark(session, profile, data=str(tmp_path / "missing"), min_queries=1)
        with pytest.raises(edgerun.ConfigError, match="needs images"):
            benchmark(session, profile, data=str(wrong), include_preprocess=True, min_queries=1)


def _result(p99: float, deadline: float, cv_spread: float = 0.0, scenario: str = "single-stream") -> BenchResult:
    latencies = np.full(200, p99 / 1e3)
    latencies[:100] *= 1 - cv_spread
    stats = LatencyStats.from_seconds(latencies)
    return BenchResult(
        model="m",
        model_sha256="0" * 64,
        backend="onnxruntime",
        plan={"precision": "fp32", "threads": 1, "fallbacks": []},
        device={"kind": "cpu"},
        system={},
        scenario=scenario,
        settings={},
        batch=1,
        inputs={},
        queries=200,
        samples=200,
        wall_s=1.0,
        interrupted=False,
        latency_ms=stats,
        latency_samples_ms=list(latencies * 1e3),
        deadline_ms=deadline,
        server=None,
        gpu_phases_ms=None,
        warnings=[],
        notes=[],
        versions={},
    )


def test_deadline_verdict_uses_p99() -> None:
    assert _result(p99=99.0, deadline=100.0).meets_deadline
    assert _result(p99=100.0, deadline=100.0).meets_deadline
    assert not _result(p99=100.5, deadline=100.0).meets_deadline


def test_offline_verdict_is_the_frame_rate_the_deadline_implies() -> None:
    assert _result(p99=500.0, deadline=5.0, scenario="offline").meets_deadline  # 200 samples/s >= 200
    assert not _result(p99=500.0, deadline=4.9, scenario="offline").meets_deadline  # needs 204


def test_config_is_checked_when_built() -> None:
    with pytest.raises(edgerun.ConfigError):
        BenchConfig(scenario="offline", batch=0)
