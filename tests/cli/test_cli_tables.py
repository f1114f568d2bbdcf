"""`edgerun compare` tables stay readable at 80 columns and in files: no cell cut to ``…``, every
model name whole; ``--wide`` shows every column (as per-model blocks when a table cannot fit)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from edgerun.cli.main import cli
from edgerun.cli.render import render_cells

from ..precision_helpers import DIGITS_TEST

MODELS = ("digits-teacher", "digits-student", "digits-student@int8", "digits-teacher@int8")
ALL_COLUMNS = (
    "model", "precision", "size", "params", "accuracy", "retention", "p50 ms", "p99 ms", "speed-up",
    "top-1 agreement", "cosine (mean)", "max abs err", "mask IoU", "fp32 nodes",
)  # fmt: skip


def compare_at(columns: int, *extra: str | Path) -> str:
    """``edgerun compare`` output as a pipe or file gets it (not a terminal), ``columns`` wide."""
    runner = CliRunner()
    args = ["compare", *MODELS, "--data", str(DIGITS_TEST), "--samples", "40", "--iterations", "2", "--threads", "1"]
    result = runner.invoke(
        cli,
        [*args, *map(str, extra)],
        env={"COLUMNS": str(columns)},
        terminal_width=columns,
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def assert_readable(text: str, width: int) -> None:
    lines = text.splitlines()
    assert "…" not in text, text
    assert max(len(line) for line in lines) <= width, text
    for model in MODELS:
        assert any(model in line.split() for line in lines), f"{model} is not whole on a line:\n{text}"


def test_compare_shows_the_key_columns_at_80_columns(tmp_path: Path) -> None:
    text = compare_at(80, "--json", tmp_path / "c.json")
    assert_readable(text, 80)
    header = next(line for line in text.splitlines() if line.startswith("model "))
    assert header.split() == ["model", "size", "p50", "ms", "speed-up", "accuracy", "fp32", "nodes"]
    report = json.loads((tmp_path / "c.json").read_text())
    int8 = next(row for row in report["models"] if row["label"] == "digits-student@int8")
    row = next(line for line in text.splitlines() if line.startswith("digits-student@int8 "))
    assert f"{int8['accuracy']:.2%}" in row
    assert f"{int8['speedup']:.2f}x" in row
    assert "--wide shows all 14" in text


def test_wide_shows_every_column_at_80_columns_as_blocks() -> None:
    text = compare_at(80, "--wide")
    assert_readable(text, 80)
    for column in ALL_COLUMNS[1:]:
        assert text.count(f"{column}: ") == len(MODELS), column


def test_wide_is_one_table_when_it_fits() -> None:
    text = compare_at(200, "--wide")
    assert_readable(text, 200)
    header = next(line for line in text.splitlines() if line.startswith("model "))
    for column in ALL_COLUMNS:
        assert column in header


@pytest.mark.parametrize("width", [40, 80])
def test_a_table_too_wide_for_the_console_becomes_blocks(width: int) -> None:
    long_name = "models/a-rather-long-directory-name/student-int8-per-channel.onnx"
    rows = [{"model": long_name, "size": "34 KiB (0.04x)", "p50 ms": "0.024", "speed-up": "2.25x"}]
    console = Console(file=io.StringIO(), width=width)
    render_cells(console, "compare: 1 sample", rows, list(rows[0]), bold=0)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert long_name in text.splitlines()
    assert "…" not in text
    pairs = [line.strip() for line in text.splitlines()[2:]]
    assert "; ".join(pairs) == "size: 34 KiB (0.04x); p50 ms: 0.024; speed-up: 2.25x", "packed, never split"
    assert max(len(line) for line in text.splitlines()[2:]) <= width
