"""Bench results as files: CSV (one row per run) and Markdown (a table to commit or paste in a PR).

JSON is the full record (`BenchResult.to_dict`, `sweep.sweep_document`); these flatten the
figures people compare, with the same names.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgerun.bench.crossreport import markdown_table
from edgerun.bench.result import stream_summary

CSV_COLUMNS = (
    "model",
    "device",
    "backend",
    "precision",
    "threads",
    "scenario",
    "batch",
    "queries",
    "samples",
    "wall_s",
    "min_ms",
    "mean_ms",
    "median_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "cv",
    "throughput_per_s",
    "qps",
    "score_metric",
    "score",
    "deadline_ms",
    "meets_deadline",
    "server_target_qps",
    "server_achieved_qps",
    "server_bound_held",
    "stream",
    "warnings",
    "interrupted",
)


def csv_row(run: dict[str, Any]) -> dict[str, Any]:
    latency = run["latency_ms"]
    server = run.get("server") or {}
    return {
        "model": run["model"],
        "device": f"{run['device']['kind']}: {run['device']['model']}",
        "backend": run["backend"],
        "precision": run["precision"],
        "threads": run["threads"],
        "scenario": run["scenario"],
        "batch": run["batch"],
        "queries": run["queries"],
        "samples": run["samples"],
        "wall_s": f"{run['wall_s']:.3f}",
        **{f"{key}_ms": f"{latency[key]:.4f}" for key in ("min", "mean", "median", "p90", "p95", "p99", "max")},
        "cv": f"{latency['cv']:.4f}",
        "throughput_per_s": f"{run['throughput_per_s']:.2f}",
        "qps": f"{run['qps']:.2f}",
        "score_metric": run["score"]["metric"],
        "score": f"{run['score']['value']:.4f}",
        "deadline_ms": run["deadline_ms"],
        "meets_deadline": run["meets_deadline"],
        "server_target_qps": server.get("target_qps", ""),
        "server_achieved_qps": f"{server['achieved_qps']:.2f}" if "achieved_qps" in server else "",
        "server_bound_held": server.get("bound_held", ""),
        "stream": _stream_cell(run.get("stream")),
        "warnings": " | ".join(run["warnings"]),
        "interrupted": run["interrupted"],
    }


def _stream_cell(stream: dict[str, Any] | None) -> str:
    """``state->stateN; per chunk``: a stateful run's carried state, empty otherwise."""
    if not stream:
        return ""
    pairs = ",".join(f"{name}->{output}" for name, output in stream["state"].items())
    return f"{pairs}; {stream.get('latency', 'per chunk')}"


def write_csv(runs: Sequence[dict[str, Any]], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for run in runs:
        writer.writerow(csv_row(run))
    path.write_text(buffer.getvalue())


def markdown(runs: Sequence[dict[str, Any]], best: int | None = None) -> str:
    """A Markdown report: one table row per run, then each run's warnings and notes."""
    first = runs[0]
    device = first["device"]
    lines = [
        f"# edgerun bench: {first['model']} on {device['kind']} ({device['model']})",
        "",
        f"{device['cpu']}, {device['cores']} cores; edgerun {first['versions'].get('edgerun')}, "
        + ", ".join(f"{k} {v}" for k, v in first["versions"].items() if v and k != "edgerun"),
        "",
    ]
    table = []
    for index, run in enumerate(runs):
        latency = run["latency_ms"]
        table.append(
            {
                "scenario": f"{run['scenario']}{' (best)' if index == best else ''}",
                "backend": str(run["backend"]),
                "precision": str(run["precision"]),
                "threads": str(run["threads"]),
                "batch": str(run["batch"]),
                "queries": str(run["queries"]),
                "p50 ms": f"{latency['p50']:.3f}",
                "p90 ms": f"{latency['p90']:.3f}",
                "p99 ms": f"{latency['p99']:.3f}",
                "samples/s": f"{run['throughput_per_s']:.1f}",
                "score": f"{run['score']['metric']} {run['score']['value']:.3f}",
                "deadline": str(run["deadline_rule"]),
                "verdict": "PASS" if run["meets_deadline"] else "FAIL",
            }
        )
    lines += markdown_table(table)
    summaries = sorted({line for run in runs if (line := stream_summary(run.get("stream")))})
    if summaries:
        lines += ["", *(f"{line[0].upper()}{line[1:]}" for line in summaries)]
    for run in runs:
        server = run.get("server")
        if server:
            lines += [
                "",
                f"Server: target {server['target_qps']:.1f} QPS, achieved {server['achieved_qps']:.1f}, "
                f"p99 {server['p99_ms']:.3f} ms vs bound {server['latency_bound_ms']:g} ms: "
                f"{'held' if server['bound_held'] else 'NOT held'}; late {server['late_fraction']:.1%}, "
                f"dropped {server['dropped_fraction']:.1%}"
                + (f"; max QPS within the bound {server['max_qps']:.1f}" if "max_qps" in server else ""),
            ]
    notes = sorted({f"- warning: {w}" for run in runs for w in run["warnings"]}) + sorted(
        {f"- note: {n}" for run in runs for n in run["notes"]}
    )
    fallbacks = sorted({f"- fallback: {f}" for run in runs for f in run["fallbacks"]})
    if notes or fallbacks:
        lines += ["", *fallbacks, *notes]
    return "\n".join(lines) + "\n"
