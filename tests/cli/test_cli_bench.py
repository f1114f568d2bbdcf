"""`edgerun bench` from the command line: every scenario, the report files, sweeps, --quiet and Ctrl-C."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from edgerun.cli.main import main

from .. import onnx_factory


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


def assert_png(path: Path) -> None:
    """A real image of the documented size (1200 x 500 px), not an empty or broken file."""
    import cv2

    from edgerun.bench.plots import PNG_SIZE_PX

    image = cv2.imread(str(path))
    assert image is not None, f"{path} is not a readable image"
    assert (image.shape[1], image.shape[0]) == PNG_SIZE_PX
    assert image.std() > 10  # drawn on, not a blank canvas


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


def test_ctrl_c_still_prints_and_writes_the_partial_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgerun.runtime.session import Session

    real = Session.run
    calls = 0

    def interrupted_run(self: Session, feeds: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 40:
            raise KeyboardInterrupt
        return real(self, feeds)  # type: ignore[arg-type]

    monkeypatch.setattr(Session, "run", interrupted_run)
    path = tmp_path / "partial.json"
    code, out, err = run_cli(capsys, "bench", "digits-student", "-n", "1000", "--warmup", "5", "--json", str(path))
    assert code == 0
    report = json.loads(path.read_text())
    assert report["interrupted"] is True
    assert report["queries"] == 34  # 5 warm-up calls, then the 40th call was interrupted
    assert any("interrupted after 34 queries" in w for w in report["warnings"])
    assert "interrupted" in err
    assert "p99" in out
