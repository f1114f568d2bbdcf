"""``edgerun report RESULT.json...``: bench results from several devices or precisions side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich import box
from rich.markup import escape
from rich.table import Table

from edgerun.cli.common import CONTEXT, emit_json, out


@click.command("report", context_settings=CONTEXT)
@click.argument("results", nargs=-1, type=click.Path(path_type=Path), metavar="RESULT.json...")
@click.option(
    "--baseline",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Run (the # column: files in order, a sweep's runs in its order) that speed-ups are relative to.",
)
@click.option("--markdown", "md_path", type=click.Path(path_type=Path), default=None, help="Write the Markdown table.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), default=None, help="Write a PNG (edgerun[plot]).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write the rows as JSON.")
def report_cmd(
    results: tuple[Path, ...], baseline: int, md_path: Path | None, plot_path: Path | None, json_path: Path | None
) -> None:
    """Lay bench result files (edgerun bench --json) side by side: speed-ups against a baseline, deadline verdicts."""
    from edgerun.bench.crossreport import cross_report, label_runs, to_markdown
    from edgerun.bench.schema import SCHEMA, load_result_file

    if not results:
        raise click.UsageError("give one or more result files written by `edgerun bench --json`")
    runs: list[dict[str, Any]] = []
    sources: list[Path] = []
    for path in results:
        loaded = load_result_file(path)
        runs += loaded
        sources += [path] * len(loaded)
    if baseline >= len(runs):
        raise click.BadParameter(
            f"{baseline} is out of range: the {len(runs)} run(s) are numbered 0 to {len(runs) - 1}",
            param_hint="'--baseline'",
        )
    labels = label_runs(runs, sources)
    rows = cross_report(runs, labels, baseline)
    render_report(rows)
    written: list[Path] = []
    if md_path is not None:
        md_path.write_text(to_markdown(rows))
        written.append(md_path)
    if plot_path is not None:
        from edgerun.bench.plots import plot_report

        written.append(plot_report(runs, labels, plot_path, baseline))
    if json_path is not None:
        document = {
            "schema": SCHEMA,
            "kind": "report",
            "baseline": baseline,
            "sources": [str(s) for s in sources],
            "rows": rows,
        }
        emit_json(document, json_path)
        written.append(json_path)
    if written:
        out.print("written: " + escape(", ".join(str(p) for p in written)))


_TERMINAL_COLUMNS = {
    "#": "#",
    "result": "result",
    "device": "device",
    "p50 ms": "p50 ms",
    "p99 ms": "p99 ms",
    "samples/s": "samples/s",
    "throughput speed-up": "x tput",
    "p50 speed-up": "x p50",
    "verdict": "verdict",
}
"""Cells shown in the terminal (by their Markdown column) and their short headers, to fit 80 columns;
each result's details follow the table."""


def render_report(rows: list[dict[str, Any]]) -> None:
    """The rows as a rich table (the baseline in bold, verdicts in colour), then each result's details."""
    from edgerun.bench.crossreport import cells

    base = next(row for row in rows if row["baseline"])
    table = Table(
        title=f"edgerun report: {len(rows)} result(s), speed-ups vs {escape(base['label'])}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for column, header in _TERMINAL_COLUMNS.items():
        text = column in ("result", "device")
        table.add_column(header, justify="left" if text else "right", no_wrap=not text, overflow="fold")
    formatted = cells(rows)
    for row, cell in zip(rows, formatted, strict=True):
        shown = {**cell, "result": row["label"], "device": row["device_kind"]}
        values = [escape(shown[c]) for c in _TERMINAL_COLUMNS]
        values[list(_TERMINAL_COLUMNS).index("verdict")] = _verdict(row["verdict"])
        table.add_row(*values, style="bold" if row["baseline"] else None)
    out.print(table)
    out.print("x tput: samples/s over the baseline's; x p50: the baseline's p50 over the result's.", highlight=False)
    for row, cell in zip(rows, formatted, strict=True):
        warnings = f"{row['warnings']} warning(s)" if row["warnings"] else "no warnings"
        out.print(
            escape(
                f"{cell['#']} {row['label']}: {cell['device']}; {row['backend']} {row['precision']}, "
                f"batch {row['batch']}, {cell['scenario']}; {cell['score']}; deadline {cell['deadline']}; {warnings}"
            ),
            highlight=False,
        )


def _verdict(verdict: str) -> str:
    return "[bold green]PASS[/bold green]" if verdict == "PASS" else "[bold red]FAIL[/bold red]"
