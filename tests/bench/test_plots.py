"""PNG plots of bench results: real images of the documented size, and clear errors for bad input."""

from __future__ import annotations

import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from edgerun.bench.plots import plot_report, plot_run, plot_sweep
from edgerun.errors import InputError, MissingExtraError

from ..bench_results import make_run, three_runs
from ..png import assert_png

needs_matplotlib = pytest.mark.skipif(
    find_spec("matplotlib") is None, reason="matplotlib is not installed (pip install 'edgerun[plot]')"
)


@needs_matplotlib
@pytest.mark.parametrize(
    "run",
    [
        make_run(p50=40.0, p90=80.0, p99=120.0),  # misses the deadline: the line is among the bars
        make_run("orin", p50=2.5, p90=2.8, p99=3.2, deadline_ms=33.3),  # far within it: labelled off scale
        make_run(scenario="offline", batch=8, samples=3),
    ],
    ids=["deadline-in-view", "deadline-off-scale", "offline-three-samples"],
)
def test_run_plot_is_a_png_of_the_documented_size(tmp_path: Path, run: dict[str, object]) -> None:
    path = tmp_path / "run.png"
    assert plot_run(run, path) == path
    assert_png(path)


@needs_matplotlib
def test_sweep_plot(tmp_path: Path) -> None:
    runs = [
        make_run(precision=precision, threads=threads, batch=batch, throughput=20.0 * batch**0.5, p99=30.0 * batch)
        for precision in ("fp32", "int8")
        for threads in (1, 4)
        for batch in (1, 2, 4, 8)
    ]
    assert plot_sweep(runs, tmp_path / "sweep.png", best=5) == tmp_path / "sweep.png"
    assert_png(tmp_path / "sweep.png")
    plot_sweep(runs[:1], tmp_path / "one.png")
    assert_png(tmp_path / "one.png")


@needs_matplotlib
def test_report_plot(tmp_path: Path) -> None:
    path = plot_report(three_runs(), ["pi4b-fp32", "orin-int8", "rtx4090-fp16"], str(tmp_path / "report.png"))
    assert path == tmp_path / "report.png"
    assert_png(path)


@needs_matplotlib
def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no runs to plot"):
        plot_sweep([], tmp_path / "x.png")
    with pytest.raises(InputError, match="best run 4 is out of range"):
        plot_sweep([make_run()], tmp_path / "x.png", best=4)
    with pytest.raises(InputError, match="no runs to report"):
        plot_report([], [], tmp_path / "x.png")
    empty = {**make_run(), "latency_samples_ms": []}
    with pytest.raises(InputError, match=r"ppocr-cls: onnxruntime fp32, .*: no latency samples to plot"):
        plot_run(empty, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_missing_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'edgerun\[plot\]'") as info:
        plot_run(make_run(), tmp_path / "x.png")
    assert isinstance(info.value, ImportError)
