"""`run_sweep`: one session per (precision, threads), every batch point, the best run, and Ctrl-C."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgerun.bench.config import BenchConfig
from edgerun.bench.sweep import SweepPoint, run_sweep, sweep_points
from edgerun.errors import ConfigError

from .. import onnx_factory

QUICK = BenchConfig(min_queries=5, warmup=1)


def test_every_point_runs_in_order_with_one_load_per_session(monkeypatch: pytest.MonkeyPatch) -> None:
    import edgerun.bench.sweep

    loads: list[dict[str, object]] = []
    real = edgerun.bench.sweep.load

    def counted_load(*args: object, **kwargs: object) -> object:
        loads.append(kwargs)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(edgerun.bench.sweep, "load", counted_load)
    seen: list[SweepPoint] = []
    points = sweep_points([1, 2], [1, 2], ["auto"])
    sweep = run_sweep("digits-student", QUICK, points, progress=lambda point, done, latencies: seen.append(point))
    assert [(r.plan["threads"], r.batch) for r in sweep.results] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert [kwargs.get("threads") for kwargs in loads] == [1, 2], "one session per thread count, not per point"
    assert list(dict.fromkeys(seen)) == points, "the progress callback names the point it measures"
    assert not sweep.interrupted
    best, reason = sweep.best
    document = sweep.document()
    assert (document["kind"], document["best"], document["best_reason"]) == ("sweep", best, reason)
    assert document["interrupted"] is False
    assert sweep.meets_deadline == any(run["meets_deadline"] for run in document["runs"])


def test_one_point_is_reported_as_a_run() -> None:
    sweep = run_sweep("digits-student", QUICK, sweep_points([None], [None], ["auto"]))
    document = sweep.document()
    assert document["kind"] == "run"
    assert document["queries"] == 5


def test_batches_are_checked_before_anything_is_timed(tmp_path: Path) -> None:
    path = onnx_factory.save(onnx_factory.two_input_add(batch=1), tmp_path / "fixed.onnx")
    with pytest.raises(ConfigError, match="fixes its batch at 1; cannot sweep batch 2"):
        run_sweep(path, QUICK, sweep_points([1, 2], [None], ["auto"]))


def test_ctrl_c_keeps_the_finished_runs() -> None:
    def interrupt_at_the_second_point(point: SweepPoint, done: int, latencies: list[float]) -> None:
        if point.batch == 2:
            raise KeyboardInterrupt  # stands for Ctrl-C during the second point

    sweep = run_sweep(
        "digits-student", QUICK, sweep_points([1, 2, 4], [None], ["auto"]), progress=interrupt_at_the_second_point
    )
    assert sweep.interrupted
    assert sweep.planned == 3
    # Inside the timed loop the run ends marked interrupted; after it, the sweep stops without it.
    assert [(r.batch, r.interrupted) for r in sweep.results] in ([(1, False)], [(1, False), (2, True)])
    document = sweep.document()
    assert document["interrupted"] is True
    assert len(document["runs"]) == len(sweep.results)


def test_ctrl_c_before_any_result_propagates(monkeypatch: pytest.MonkeyPatch) -> None:
    import edgerun.bench.sweep

    def interrupted_load(*args: object, **kwargs: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr(edgerun.bench.sweep, "load", interrupted_load)
    with pytest.raises(KeyboardInterrupt):
        run_sweep("digits-student", QUICK, sweep_points([1, 2], [None], ["auto"]))
