"""`edgerun report`: result files loaded and checked, speed-ups and verdicts, Markdown, JSON and PNG outputs."""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgerun.bench.crossreport import cells, cross_report, label_runs, to_markdown
from edgerun.bench.schema import SCHEMA, load_result_file
from edgerun.cli.report import report_cmd
from edgerun.errors import ConfigError, InputError, ResultFileError

from ..bench_results import make_run, sweep_document, three_runs, write
from ..png import assert_png

LABELS = ["pi4b-fp32", "orin-int8", "rtx4090-fp16"]


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    return [write(tmp_path / f"{label}.json", run) for label, run in zip(LABELS, three_runs(), strict=True)]


# --- loading ----------------------------------------------------------------------------------


def test_a_run_file_is_one_run_and_a_sweep_file_its_runs(tmp_path: Path) -> None:
    run = make_run()
    assert load_result_file(write(tmp_path / "run.json", run)) == [run]
    runs = [make_run(batch=b, throughput=24.0 * b) for b in (1, 2, 4)]
    assert load_result_file(write(tmp_path / "sweep.json", sweep_document(runs))) == runs


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON (Expecting property name enclosed in double quotes at line 1 column 2"),
        ("[1, 2]", "a JSON array, not an object"),
        (json.dumps({"model": "m", "latency_ms": {}}), "edgerun bench output before schema 2"),
        (json.dumps({"schema": "edgerun.bench/1", "kind": "run"}), "schema 'edgerun.bench/1', but this edgerun"),
        (json.dumps({"schema": SCHEMA, "kind": "compare"}), "kind 'compare', expected one of 'run', 'sweep'"),
        (json.dumps({"schema": SCHEMA, "kind": "sweep", "runs": []}), "a sweep with no runs"),
    ],
)
def test_bad_files_name_the_file_and_what_was_expected(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "result.json"
    path.write_text(content)
    with pytest.raises(ResultFileError, match="^" + str(path).replace(".", r"\.") + ": ") as info:
        load_result_file(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_another_schema_says_which_one_it_has_and_which_is_read(tmp_path: Path) -> None:
    path = write(tmp_path / "old.json", {**make_run(), "schema": "edgerun.bench/1"})
    with pytest.raises(ResultFileError) as info:
        load_result_file(path)
    assert "'edgerun.bench/1'" in str(info.value)
    assert f"reads {SCHEMA!r}" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_file_and_runs_missing_keys(tmp_path: Path) -> None:
    with pytest.raises(ResultFileError, match="result file not found"):
        load_result_file(tmp_path / "absent.json")
    with pytest.raises(ResultFileError, match="is a directory"):
        load_result_file(tmp_path)
    run = make_run()
    del run["latency_ms"]["p99"], run["throughput_per_s"]
    with pytest.raises(ResultFileError, match=r"a run without throughput_per_s, latency_ms\.p99"):
        load_result_file(write(tmp_path / "partial.json", run))
    runs = [make_run(), {**make_run(), "schema": "edgerun.bench/3"}]
    with pytest.raises(ResultFileError, match=r"run 1 of the sweep: schema 'edgerun\.bench/3'"):
        load_result_file(write(tmp_path / "sweep.json", sweep_document(runs)))
    with pytest.raises(ResultFileError, match="run 0 of the sweep: 'device' is a JSON string, expected an object"):
        load_result_file(write(tmp_path / "sweep.json", sweep_document([{**make_run(), "device": "pi"}])))


# --- rows -------------------------------------------------------------------------------------


def test_speedups_against_the_first_run() -> None:
    rows = cross_report(three_runs(), LABELS)
    assert [row["label"] for row in rows] == LABELS
    assert [row["baseline"] for row in rows] == [True, False, False]
    # throughput: 360 / 24 and 1200 / 24; p50: 40 / 2.5 and 40 / 0.5
    assert [row["throughput_speedup"] for row in rows] == pytest.approx([1.0, 15.0, 50.0])
    assert [row["latency_speedup"] for row in rows] == pytest.approx([1.0, 16.0, 80.0])
    assert [row["verdict"] for row in rows] == ["FAIL", "PASS", "PASS"]  # 120 ms > 100 ms; 3.2 <= 33.3; 0.9 <= 100
    assert [row["warnings"] for row in rows] == [1, 2, 0]
    assert [row["device_kind"] for row in rows] == ["raspberry-pi", "jetson", "cuda-gpu"]
    assert rows[1]["device_model"] == "NVIDIA Jetson Orin Nano Developer Kit"
    assert (rows[1]["backend"], rows[1]["precision"], rows[1]["deadline_ms"]) == ("tensorrt", "int8", 33.3)
    assert (rows[0]["p50_ms"], rows[0]["p90_ms"], rows[0]["p99_ms"]) == (40.0, 80.0, 120.0)
    assert rows[2]["score"] == 0.6
    assert rows[2]["score_metric"] == "p90 latency ms"
    json.dumps(rows)  # what --json writes


def test_speedups_against_another_baseline() -> None:
    rows = cross_report(three_runs(), LABELS, baseline=1)
    # throughput: 24 / 360, 1200 / 360; p50: 2.5 / 40, 2.5 / 0.5
    assert [row["throughput_speedup"] for row in rows] == pytest.approx([1 / 15, 1.0, 10 / 3])
    assert [row["latency_speedup"] for row in rows] == pytest.approx([0.0625, 1.0, 5.0])
    table = cells(rows)
    assert [c["throughput speed-up"] for c in table] == ["0.067x", "1.00x", "3.33x"]
    assert [c["p50 speed-up"] for c in table] == ["0.062x", "1.00x", "5.00x"]
    assert table[1]["result"] == "orin-int8 (baseline)"


def test_bad_report_requests() -> None:
    with pytest.raises(InputError, match="no runs to report"):
        cross_report([], [])
    with pytest.raises(ConfigError, match="baseline 3 is out of range: expected 0 to 2"):
        cross_report(three_runs(), LABELS, baseline=3)
    with pytest.raises(InputError, match="2 labels for 3 runs"):
        cross_report(three_runs(), LABELS[:2])
    zero = make_run(throughput=0.0)
    assert cross_report([zero, make_run()], ["a", "b"])[1]["throughput_speedup"] is None


def test_labels_are_file_stems_unless_they_repeat() -> None:
    runs = three_runs()
    assert label_runs(runs, ["a/pi.json", "b/orin.json", "c/pc.json"]) == ["pi", "orin", "pc"]
    sweep = [make_run(precision=p) for p in ("fp32", "int8")] + [make_run("orin", batch=b) for b in (1, 8)]
    assert label_runs(sweep, ["s.json"] * 4) == [
        "ppocr-cls@fp32 on raspberry-pi",
        "ppocr-cls@int8 on raspberry-pi",
        "ppocr-cls@fp32 on jetson, batch 1, 4 thread(s)",
        "ppocr-cls@fp32 on jetson, batch 8, 4 thread(s)",
    ]
    assert label_runs([make_run(), make_run()], ["x.json", "x.json"]) == [
        "ppocr-cls@fp32 on raspberry-pi, batch 1, 4 thread(s), single-stream #0",
        "ppocr-cls@fp32 on raspberry-pi, batch 1, 4 thread(s), single-stream #1",
    ]


def test_markdown_table_and_verdicts() -> None:
    text = to_markdown(cross_report(three_runs(), LABELS))
    lines = text.splitlines()
    assert lines[0] == "# edgerun report: 3 result(s), speed-ups vs pi4b-fp32"
    header = [c.strip() for c in lines[2].strip("|").split("|")]
    assert header[:3] == ["#", "result", "device"]
    assert "throughput speed-up" in header
    assert "verdict" in header
    assert lines[3] == "|" + "---|" * len(header)
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[4:7]]
    column = {name: [row[i] for row in rows] for i, name in enumerate(header)}
    assert column["result"] == ["pi4b-fp32 (baseline)", "orin-int8", "rtx4090-fp16"]
    assert column["device"][1] == "jetson (NVIDIA Jetson Orin Nano Developer Kit)"
    assert column["throughput speed-up"] == ["1.00x", "15.00x", "50.00x"]
    assert column["p50 speed-up"] == ["1.00x", "16.00x", "80.00x"]
    assert column["p99 ms"] == ["120.000", "3.200", "0.900"]
    assert column["samples/s"] == ["24.0", "360.0", "1200.0"]
    assert column["deadline"] == ["p99 <= 100.0 ms", "p99 <= 33.3 ms", "p99 <= 100.0 ms"]
    assert column["verdict"] == ["FAIL", "PASS", "PASS"]
    assert column["warnings"] == ["1", "2", "0"]
    assert "Deadline missed by: pi4b-fp32." in text
    assert text.endswith("\n")


def test_markdown_escapes_pipes_in_labels() -> None:
    text = to_markdown(cross_report([make_run()], ["a|b"]))
    assert "| a\\|b (baseline) |" in text


# --- the command --------------------------------------------------------------------------------


def invoke(*args: Any) -> Any:
    return CliRunner().invoke(report_cmd, [str(a) for a in args])


def test_report_command_prints_the_table(files: list[Path]) -> None:
    result = invoke(*files, "--baseline", "1")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "speed-ups vs orin-int8" in text
    assert "FAIL" in text
    assert "PASS" in text
    assert "3.33x" in text


@pytest.mark.skipif(find_spec("matplotlib") is None, reason="matplotlib is not installed (pip install 'edgerun[plot]')")
def test_report_command_writes_markdown_plot_and_json(files: list[Path], tmp_path: Path) -> None:
    md, png, data = tmp_path / "report.md", tmp_path / "report.png", tmp_path / "report.json"
    result = invoke(*files, "--markdown", md, "--plot", png, "--json", data)
    assert result.exit_code == 0, result.output
    assert md.read_text() == to_markdown(cross_report(three_runs(), LABELS))
    assert_png(png)
    document = json.loads(data.read_text())
    assert (document["schema"], document["kind"], document["baseline"]) == (SCHEMA, "report", 0)
    assert [row["throughput_speedup"] for row in document["rows"]] == pytest.approx([1.0, 15.0, 50.0])
    assert document["sources"] == [str(f) for f in files]
    assert "written:" in result.output


def test_report_command_takes_a_sweep_file_among_others(files: list[Path], tmp_path: Path) -> None:
    sweep = write(tmp_path / "sweep.json", sweep_document([make_run(batch=b, throughput=24.0 * b) for b in (1, 4)]))
    md = tmp_path / "r.md"
    result = invoke(files[0], sweep, "--baseline", "2", "--markdown", md)
    assert result.exit_code == 0, result.output
    text = md.read_text()
    assert "speed-ups vs ppocr-cls@fp32 on raspberry-pi, batch 4, 4 thread(s)" in text
    assert "| 0 | pi4b-fp32 |" in text


def test_report_command_errors(files: list[Path], tmp_path: Path) -> None:
    result = invoke()
    assert result.exit_code == 2
    assert "give one or more result files" in result.output
    result = invoke(*files, "--baseline", "3")
    assert result.exit_code == 2
    assert "3 is out of range: the 3 run(s) are numbered 0 to 2" in result.output
    old = write(tmp_path / "old.json", {**make_run(), "schema": "edgerun.bench/1"})
    result = invoke(files[0], old)
    assert result.exit_code == 1
    assert isinstance(result.exception, ResultFileError)
    assert str(old) in str(result.exception)
