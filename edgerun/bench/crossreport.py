"""Several bench results side by side: a Pi 4B against a Jetson against a desktop, FP32 against INT8.

`cross_report` turns runs (from `bench_schema.load_result_file`) into one row each, with the
throughput and p50 latency speed-ups against a chosen baseline run and each run's own deadline
verdict. `cells` formats the rows once, so the Markdown (`to_markdown`, for a commit or a pull
request) and the terminal table (`cli_report`) never disagree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgerun.errors import ConfigError, InputError


def label_runs(runs: Sequence[dict[str, Any]], sources: Sequence[str | Path]) -> list[str]:
    """A short unique label per run: its file's stem, or ``model@precision on <device kind>`` when stems repeat.

    ``sources[i]`` is the file run ``i`` came from (a sweep file gives several runs one source).
    Labels still shared get the batch and threads, then the scenario, then ``#index``.
    """
    if len(sources) != len(runs):
        raise InputError(f"{len(sources)} sources for {len(runs)} runs", expected=str(len(runs)), got=str(len(sources)))
    levels: list[list[str]] = []
    for run, source in zip(runs, sources, strict=True):
        named = f"{run['model']}@{run['precision']} on {run['device']['kind']}"
        detailed = f"{named}, batch {run['batch']}, {run['threads']} thread(s)"
        levels.append([Path(source).stem, named, detailed, f"{detailed}, {run['scenario']}"])
    labels = []
    for index, candidates in enumerate(levels):
        for level, label in enumerate(candidates):
            if sum(1 for other in levels if other[level] == label) == 1:
                break
        else:
            label = f"{candidates[-1]} #{index}"
        labels.append(label)
    repeated = {label for label, count in Counter(labels).items() if count > 1}
    return [f"{label} #{i}" if label in repeated else label for i, label in enumerate(labels)]


def cross_report(runs: Sequence[dict[str, Any]], labels: Sequence[str], baseline: int = 0) -> list[dict[str, Any]]:
    """One row per run, in order: what it ran on, its latency and throughput, speed-ups vs ``runs[baseline]``.

    ``throughput_speedup`` is samples/s over the baseline's (higher is faster); ``latency_speedup``
    is the baseline's p50 over this run's p50 (higher is faster). Either is ``None`` when the
    baseline's figure is zero. ``verdict`` is the run's own deadline verdict (``PASS``/``FAIL``).
    """
    if not runs:
        raise InputError("no runs to report: give one or more bench result files")
    if len(labels) != len(runs):
        raise InputError(f"{len(labels)} labels for {len(runs)} runs", expected=str(len(runs)), got=str(len(labels)))
    if not 0 <= baseline < len(runs):
        raise ConfigError(f"baseline {baseline} is out of range: expected 0 to {len(runs) - 1} ({len(runs)} runs)")
    base = runs[baseline]
    rows = []
    for index, (run, label) in enumerate(zip(runs, labels, strict=True)):
        latency = run["latency_ms"]
        rows.append(
            {
                "index": index,
                "label": label,
                "baseline": index == baseline,
                "model": run["model"],
                "device_kind": run["device"]["kind"],
                "device_model": run["device"]["model"],
                "backend": run["backend"],
                "precision": run["precision"],
                "threads": run["threads"],
                "scenario": run["scenario"],
                "batch": run["batch"],
                "p50_ms": latency["p50"],
                "p90_ms": latency["p90"],
                "p99_ms": latency["p99"],
                "throughput_per_s": run["throughput_per_s"],
                "score_metric": run["score"]["metric"],
                "score": run["score"]["value"],
                "score_higher_is_better": run["score"]["higher_is_better"],
                "throughput_speedup": _ratio(run["throughput_per_s"], base["throughput_per_s"]),
                "latency_speedup": _ratio(base["latency_ms"]["p50"], latency["p50"]),
                "deadline_ms": run["deadline_ms"],
                "deadline_rule": run["deadline_rule"],
                "verdict": "PASS" if run["meets_deadline"] else "FAIL",
                "warnings": len(run["warnings"]),
                "interrupted": bool(run["interrupted"]),
            }
        )
    return rows


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if not denominator else numerator / denominator


def cells(rows: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """Every row formatted once, for the Markdown table and the terminal table alike."""
    table = []
    for row in rows:
        table.append(
            {
                "#": str(row["index"]),
                "result": row["label"] + (" (baseline)" if row["baseline"] else ""),
                "device": f"{row['device_kind']} ({row['device_model']})",
                "backend": row["backend"],
                "precision": row["precision"],
                "scenario": row["scenario"] + (" (interrupted)" if row["interrupted"] else ""),
                "batch": str(row["batch"]),
                "p50 ms": f"{row['p50_ms']:.3f}",
                "p90 ms": f"{row['p90_ms']:.3f}",
                "p99 ms": f"{row['p99_ms']:.3f}",
                "samples/s": f"{row['throughput_per_s']:.1f}",
                "score": f"{row['score_metric']} {row['score']:.3f}",
                "throughput speed-up": format_speedup(row["throughput_speedup"]),
                "p50 speed-up": format_speedup(row["latency_speedup"]),
                "deadline": row["deadline_rule"],
                "verdict": row["verdict"],
                "warnings": str(row["warnings"]),
            }
        )
    return table


def format_speedup(value: float | None) -> str:
    """``15.00x``; two significant digits below 1 (``0.013x``), where two decimals would say ``0.01x``."""
    if value is None:
        return "-"
    return f"{value:.2f}x" if value >= 1 else f"{value:.2g}x"


def markdown_table(table: Sequence[dict[str, str]]) -> list[str]:
    """GitHub-flavoured Markdown lines for formatted cells (``|`` in a cell escaped)."""
    columns = list(table[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row[c].replace("|", "\\|") for c in columns) + " |" for row in table]
    return lines


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The report as Markdown to commit or paste in a pull request: the table, then how to read it."""
    if not rows:
        raise InputError("no rows to write: the report needs at least one run")
    base = next(row for row in rows if row["baseline"])
    fails = [row["label"] for row in rows if row["verdict"] == "FAIL"]
    lines = [
        f"# edgerun report: {len(rows)} result(s), speed-ups vs {base['label']}",
        "",
        *markdown_table(cells(rows)),
        "",
        f"Throughput speed-up: samples/s over {base['label']}'s; p50 speed-up: {base['label']}'s p50 latency "
        "over the result's (above 1.00x is faster). Each verdict is against that result's own deadline.",
    ]
    if len({row["scenario"] for row in rows}) > 1:
        lines += ["", "The results come from different scenarios: their scores measure different things."]
    lines += [
        "",
        f"Deadline missed by: {', '.join(fails)}." if fails else "Every result meets its deadline.",
    ]
    return "\n".join(lines) + "\n"
