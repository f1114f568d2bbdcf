"""`edgerun bench` from the command line: every scenario, the report files, sweeps, --quiet and Ctrl-C."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from edgerun.cli.main import main

from .. import onnx_factory
from ..png import assert_png


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("args", "metric"),
    [
        (["--scenario", "single-stream", "-n", "30"], "p90 latency ms"),
        (["--scenario", "multi-stream", "--samples-per-query", "4", "-n", "20"], "p99 latency ms"),
        (["--scenario", "offline", "--batch", "16", "-n", "1"], "samples/s"),
        (
            ["--scenario", "server", "--target-qps", "100", "--duration", "1", "--latency-bound-ms", "100"],
            "QPS at target",
        ),
    ],
)
def test_each_scenario_runs_on_a_bundled_model(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], metric: str
) -> None:
    path = tmp_path / "r.json"
    code, out, err = run_cli(capsys, "bench", "digits-student", "--warmup", "2", *args, "--json", str(path))
    assert code == 0, err
    report = json.loads(path.read_text())
    assert report["schema"] == "edgerun.bench/2"
    assert report["kind"] == "run"
    assert report["score"]["metric"] == metric
    assert f"score: {metric}" in out
    assert "real-time deadline" in out


def test_json_csv_and_markdown_agree(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    paths = {kind: tmp_path / f"r.{kind}" for kind in ("json", "csv", "md", "png")}
    code, out, _ = run_cli(
        capsys,
        "bench",
        "digits-student",
        "-n",
        "50",
        "--json",
        str(paths["json"]),
        "--csv",
        str(paths["csv"]),
        "--markdown",
        str(paths["md"]),
        "--plot",
        str(paths["png"]),
    )
    assert code == 0
    report = json.loads(paths["json"].read_text())
    rows = list(csv.DictReader(paths["csv"].open()))
    assert len(rows) == 1
    assert float(rows[0]["p99_ms"]) == pytest.approx(report["latency_ms"]["p99"], abs=1e-4)
    assert int(rows[0]["queries"]) == report["queries"] == 50
    assert rows[0]["meets_deadline"] == str(report["meets_deadline"])
    markdown = paths["md"].read_text()
    assert markdown.startswith("# edgerun bench: digits-student on ")
    assert f"| {report['latency_ms']['p99']:.3f} |" in markdown
    assert "written: " in out
    assert_png(paths["png"])


def test_a_sweep_runs_every_combination_and_names_the_best(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "sweep.json"
    code, out, _ = run_cli(
        capsys, "bench", "digits-student", "--batch", "1,4", "--threads", "1,2", "-n", "30", "--warmup", "1",
        "--json", str(path), "--csv", str(tmp_path / "s.csv"), "--plot", str(tmp_path / "s.png"),
    )  # fmt: skip
    assert code == 0
    document = json.loads(path.read_text())
    assert document["kind"] == "sweep"
    points = [(r["sweep_point"]["threads"], r["sweep_point"]["batch"]) for r in document["runs"]]
    assert points == [(1, 1), (1, 4), (2, 1), (2, 4)]
    assert [r["threads"] for r in document["runs"]] == [1, 1, 2, 2]
    assert [r["batch"] for r in document["runs"]] == [1, 4, 1, 4]
    passing = [i for i, r in enumerate(document["runs"]) if r["meets_deadline"]]
    best = document["best"]
    assert best in passing  # single-stream: lowest p90 among those meeting the deadline
    assert document["runs"][best]["score"]["value"] == min(document["runs"][i]["score"]["value"] for i in passing)
    assert "best:" in out
    assert len(list(csv.DictReader((tmp_path / "s.csv").open()))) == 4
    assert_png(tmp_path / "s.png")


def test_a_fixed_batch_model_cannot_sweep_batches(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = onnx_factory.save(onnx_factory.two_input_add(batch=1), tmp_path / "fixed.onnx")
    code, _, err = run_cli(capsys, "bench", str(path), "--batch", "1,2,4", "-n", "2")
    assert code == 1
    assert "fixes its batch at 1; cannot sweep batch 2, 4" in err


def test_quiet_prints_only_the_verdict(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _err = run_cli(
        capsys, "bench", "digits-student", "-n", "20", "--quiet", "--json", str(tmp_path / "q.json")
    )
    assert code == 0
    assert out.strip().splitlines() == [out.strip()]
    assert out.startswith("digits-student single-stream: PASS (p99 <= ")
    assert (tmp_path / "q.json").exists()


def test_fail_on_miss_exits_3_in_a_sweep_only_when_no_run_meets_the_deadline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["bench", "digits-student", "--batch", "1,2", "-n", "5", "--warmup", "0", "--fail-on-miss", "-q"]
    assert run_cli(capsys, *args, "--deadline-ms", "0.000001")[0] == 3
    assert run_cli(capsys, *args, "--deadline-ms", "10000")[0] == 0


def interrupt_session_run_at(monkeypatch: pytest.MonkeyPatch, call: int) -> None:
    """Ctrl-C on the ``call``-th model call (warm-up calls count), as a user pressing it mid-run."""
    from edgerun.runtime.session import Session

    real = Session.run
    calls = 0

    def interrupted_run(self: Session, feeds: object) -> object:
        nonlocal calls
        calls += 1
        if calls == call:
            raise KeyboardInterrupt
        return real(self, feeds)  # type: ignore[arg-type]

    monkeypatch.setattr(Session, "run", interrupted_run)


def test_ctrl_c_prints_and_writes_the_partial_report_then_exits_130(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    interrupt_session_run_at(monkeypatch, 40)
    path = tmp_path / "partial.json"
    code, out, err = run_cli(capsys, "bench", "digits-student", "-n", "1000", "--warmup", "5", "--json", str(path))
    assert code == 130, "an interrupted run is not a pass: CI must see it"
    report = json.loads(path.read_text())
    assert report["interrupted"] is True
    assert report["queries"] == 34  # 5 warm-up calls, then the 40th call was interrupted
    assert any("interrupted after 34 queries" in w for w in report["warnings"])
    assert "interrupted" in err
    assert "p99" in out


def test_ctrl_c_in_a_sweep_keeps_the_finished_runs_and_exits_130(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    interrupt_session_run_at(monkeypatch, 2 + 10 + 2 + 3)  # point 1: 2 warm-up + 10 timed; point 2: its 3rd timed
    path = tmp_path / "sweep.json"
    code, out, _ = run_cli(
        capsys, "bench", "digits-student", "--batch", "1,2,4", "-n", "10", "--warmup", "2", "--json", str(path), "-q"
    )
    assert code == 130
    document = json.loads(path.read_text())
    assert document["kind"] == "sweep"
    assert document["interrupted"] is True
    assert [run["batch"] for run in document["runs"]] == [1, 2], "the third point never ran"
    assert [run["interrupted"] for run in document["runs"]] == [False, True]
    assert out.strip().endswith("; interrupted")


def test_ctrl_c_between_sweep_points_is_recorded_in_the_sweep(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgerun.bench.sweep

    real = edgerun.bench.sweep.load
    loads = 0

    def load_then_interrupt(*args: object, **kwargs: object) -> object:
        nonlocal loads
        loads += 1
        if loads == 2:  # Ctrl-C while the second session loads: no run is marked, the sweep is
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(edgerun.bench.sweep, "load", load_then_interrupt)
    path = tmp_path / "sweep.json"
    code, _, err = run_cli(
        capsys, "bench", "digits-student", "--threads", "1,2", "-n", "5", "--warmup", "0", "--json", str(path)
    )
    assert code == 130
    document = json.loads(path.read_text())
    assert document["interrupted"] is True
    assert [run["threads"] for run in document["runs"]] == [1]
    assert document["runs"][0]["interrupted"] is False
    assert "interrupted: reporting what was measured" in err


def test_ctrl_c_before_anything_was_measured_exits_130_without_a_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    interrupt_session_run_at(monkeypatch, 1)  # the first warm-up call
    path = tmp_path / "none.json"
    code, out, err = run_cli(capsys, "bench", "digits-student", "-n", "5", "--json", str(path))
    assert code == 130
    assert not path.exists()
    assert out == ""
    assert err.strip().endswith("interrupted")


def test_a_converted_model_reports_its_quality_check(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGERUN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "200")
    path = tmp_path / "r.json"
    code, out, err = run_cli(capsys, "bench", "digits-student", "--precision", "fp16", "-n", "10", "--json", str(path))
    assert code == 0, err
    quality = json.loads(path.read_text())["plan"]["quality"]
    assert quality["passed"] is True
    assert quality["precision"] == "fp16"
    assert f"quality: {quality['summary']}" in out
