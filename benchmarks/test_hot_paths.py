"""pytest-benchmark suite of edgerun's own hot paths: session call, preprocessing, batcher round-trip, statistics.

Run explicitly (pyproject's testpaths is ``tests/``)::

    pytest benchmarks/test_hot_paths.py --benchmark-only
    pytest benchmarks/ --benchmark-only --benchmark-save=NAME      # a baseline
    pytest benchmarks/ --benchmark-only --benchmark-compare=NAME --benchmark-compare-fail=mean:10%

Every benchmark also checks its result against a direct computation (raw ONNX Runtime, a direct
call, numpy's inverted-CDF percentile), so under ``--benchmark-disable`` the file is a plain test.
Inputs are real images bundled with edgerun and the models' own preprocessing from their cards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _common import REPO, raw_session

import edgerun
from edgerun.data.preprocess import PreprocessSpec, load_image
from edgerun.runtime.batching import DynamicBatcher
from edgerun.stats import LatencyStats, nearest_rank

# One real image per model, each the kind of input the model is for.
IMAGES = {
    "digits-student": REPO / "calibration/digits/digit_0_20.png",  # 8 x 8 grey
    "ppocr-cls": edgerun.models.card("ppocr-cls").folder / "calibration/line_000.jpg",  # 218 x 59 text line
    "ppocr-det": REPO / "calibration/photos/camera.jpg",  # 512 x 512 photo
}


def spec_of(model: str) -> PreprocessSpec:
    return PreprocessSpec.from_dict(edgerun.models.card(model).preprocessing)


def sample(model: str) -> np.ndarray:
    """One batch-1 input for ``model``: its bundled image through its card's preprocessing."""
    return spec_of(model).load(IMAGES[model])[None]


# --- Session.run ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["digits-student", "ppocr-cls"])
def session_case(request: pytest.FixtureRequest) -> Iterator[tuple[str, edgerun.Session, np.ndarray]]:
    with edgerun.load(request.param, threads=1) as session:
        yield request.param, session, sample(request.param)


def test_session_run(benchmark: Any, session_case: tuple[str, edgerun.Session, np.ndarray]) -> None:
    model, session, x = session_case
    benchmark.group = "Session.run b1"
    benchmark.extra_info.update({"model": model, "batch": 1, "threads": 1})
    outputs = benchmark(session.run, x)
    raw = raw_session(model, threads=1)
    want = raw.run(None, {raw.get_inputs()[0].name: x})
    assert [o.shape for o in outputs.values()] == [w.shape for w in want]
    for got, expected in zip(outputs.values(), want, strict=True):
        np.testing.assert_array_equal(got, expected)


# --- preprocessing -------------------------------------------------------------------------------


@pytest.mark.parametrize("model", list(IMAGES))
def test_preprocess_apply(benchmark: Any, model: str) -> None:
    spec = spec_of(model)
    image = load_image(IMAGES[model], gray=spec.color == "gray")
    reference = spec.apply(image.copy())
    benchmark.group = "PreprocessSpec.apply (decoded image)"
    benchmark.extra_info.update({"model": model, "image_shape": list(image.shape)})
    got = benchmark(spec.apply, image)
    assert got.shape == spec.sample_shape
    assert got.dtype == np.float32
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(got, reference)
    np.testing.assert_array_equal(image, load_image(IMAGES[model], gray=spec.color == "gray"))  # input untouched


@pytest.mark.parametrize("model", list(IMAGES))
def test_preprocess_load(benchmark: Any, model: str) -> None:
    spec = spec_of(model)
    benchmark.group = "PreprocessSpec.load (decode + preprocess)"
    benchmark.extra_info.update({"model": model, "file_bytes": IMAGES[model].stat().st_size})
    got = benchmark(spec.load, IMAGES[model])
    np.testing.assert_array_equal(got, spec.apply(load_image(IMAGES[model], gray=spec.color == "gray")))


# --- DynamicBatcher round-trip -------------------------------------------------------------------


@pytest.fixture(scope="module")
def batcher() -> Iterator[tuple[DynamicBatcher, np.ndarray, np.ndarray]]:
    """An idle batcher in front of digits-student, its input and the direct call's logits."""
    with edgerun.load("digits-student", threads=1) as session:
        x = sample("digits-student")
        direct = session.run(x)["logits"]
        with DynamicBatcher(session, max_batch_size=8, max_queue_delay_ms=1.0) as batcher:
            yield batcher, x, direct


@pytest.mark.parametrize("path", ["infer", "submit().result()"])
def test_batcher_round_trip(benchmark: Any, batcher: tuple[DynamicBatcher, np.ndarray, np.ndarray], path: str) -> None:
    """``infer`` on an idle batcher runs in the caller's thread; ``submit`` hands off to a worker and back."""
    dynamic, x, direct = batcher
    calls: dict[str, Callable[[], dict[str, np.ndarray]]] = {
        "infer": lambda: dynamic.infer(x),
        "submit().result()": lambda: dynamic.submit(x).result(),
    }
    before = dynamic.stats()
    benchmark.group = "DynamicBatcher round-trip (digits-student b1)"
    benchmark.extra_info["path"] = path
    got = benchmark(calls[path])
    np.testing.assert_array_equal(got["logits"], direct)
    after = dynamic.stats()
    calls_made = after["requests"] - before["requests"]
    inline = after["inline"] - before["inline"]
    assert calls_made >= 1
    assert inline == (calls_made if path == "infer" else 0)  # the path measured is the one named


# --- statistics ----------------------------------------------------------------------------------


def latencies(count: int) -> np.ndarray:
    """Seeded, log-normal latencies around 2 ms with a long tail (seconds), like a real run."""
    return np.random.default_rng(count).lognormal(mean=np.log(2e-3), sigma=0.3, size=count)


@pytest.mark.parametrize("count", [10_000, 100_000])
def test_latency_stats(benchmark: Any, count: int) -> None:
    seconds = latencies(count)
    benchmark.group = "statistics"
    benchmark.extra_info["samples"] = count
    stats = benchmark(LatencyStats.from_seconds, seconds)
    ms = seconds * 1e3
    assert stats.count == count
    for p in (50, 90, 95, 99):
        assert getattr(stats, f"p{p}") == np.percentile(ms, p, method="inverted_cdf")
    assert (stats.min, stats.max) == (ms.min(), ms.max())
    assert stats.mean == pytest.approx(ms.mean())


def test_nearest_rank(benchmark: Any) -> None:
    ms = latencies(10_000) * 1e3
    benchmark.group = "statistics"
    benchmark.extra_info["samples"] = ms.size
    got = benchmark(nearest_rank, ms, 99)
    assert got == np.percentile(ms, 99, method="inverted_cdf")
    assert got in ms  # nearest rank is always an observed value


def test_images_are_where_the_suite_expects() -> None:
    """Not a benchmark: the bundled inputs exist (skipped under --benchmark-only)."""
    assert all(Path(p).is_file() for p in IMAGES.values())
