"""Sweep ONNX Runtime intra-op threads: which count gives the lowest latency per model and batch?

Each configuration is ``edgerun.load(model, threads=t)`` timed with ``edgerun.bench.runner.time_calls``
(one query at a time) on seeded inputs from ``edgerun.bench.runner.random_feeds``. To keep drift from
favouring one thread count, every (model, batch) runs ``--rounds`` rounds that visit the thread
counts in alternating order, and each configuration's latencies are pooled over its rounds and
summarised with ``edgerun.stats.LatencyStats`` (nearest-rank percentiles).

The best thread count per (model, batch) is the one with the lowest median latency (the one with
the lowest p99 is shown too: on a shared VM extra threads often fatten the tail); it backs the
per-device thread default in ``edgerun/defaults.py``.

    python benchmarks/threads.py [--rounds N] [--seconds S] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from _common import DEFAULT, TINY, machine, usable_cores
from rich.console import Console
from rich.table import Table

import edgerun
from edgerun.bench.runner import time_calls
from edgerun.bench.scenarios import batched_shapes
from edgerun.runtime.defaults import DeviceDefaults
from edgerun.runtime.synthetic import random_feeds
from edgerun.stats import LatencyStats


def sweep(model: str, batch: int, threads: list[int], rounds: int, seconds: float) -> dict[str, Any]:
    """Latency per thread count for one model at one batch size."""
    sessions = {t: edgerun.load(model, threads=t) for t in threads}
    card = edgerun.models.card(model)
    feeds = random_feeds(sessions[threads[0]].inputs, batch, batched_shapes(card.input_shapes, batch))
    for session in sessions.values():
        time_calls(session, feeds, warmup=10, iterations=1)
    latencies: dict[int, list[np.ndarray]] = {t: [] for t in threads}
    for i in range(rounds):
        for t in threads if i % 2 == 0 else reversed(threads):
            timing = time_calls(sessions[t], feeds, warmup=2, iterations=5, duration_s=seconds / rounds)
            latencies[t].append(timing.latencies_s)
    for session in sessions.values():
        session.close()

    configs = []
    for t in threads:
        pooled = np.concatenate(latencies[t])
        stats = LatencyStats.from_seconds(pooled)
        configs.append(
            {
                "threads": t,
                "latency_ms": {"count": stats.count, **stats.to_dict()},
                "items_per_s": batch / (stats.mean / 1e3),
            }
        )
    best = min(configs, key=lambda c: c["latency_ms"]["p50"])
    one = next((c for c in configs if c["threads"] == 1), None)
    for c in configs:
        c["speedup_vs_1"] = one["latency_ms"]["p50"] / c["latency_ms"]["p50"] if one else None
    tail = min(configs, key=lambda c: c["latency_ms"]["p99"])
    return {
        "model": model,
        "batch": batch,
        "configs": configs,
        "best_threads": best["threads"],
        "best_p99_threads": tail["threads"],
    }


def render(console: Console, results: list[dict[str, Any]], default_threads: int, reason: str) -> None:
    table = Table(title="ONNX Runtime intra-op threads through edgerun.load(..., threads=t)")
    for column in (
        "model",
        "batch",
        "threads",
        "calls",
        "p50 ms",
        "p99 ms",
        "mean ms",
        "items/s",
        "p50 vs 1 thr",
        "best",
    ):
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in results:
        for c in r["configs"]:
            lat = c["latency_ms"]
            best = c["threads"] == r["best_threads"]
            table.add_row(
                r["model"],
                str(r["batch"]),
                str(c["threads"]),
                str(lat["count"]),
                f"{lat['p50']:.3f}",
                f"{lat['p99']:.3f}",
                f"{lat['mean']:.3f}",
                f"{c['items_per_s']:.0f}",
                f"{c['speedup_vs_1']:.2f}x" if c["speedup_vs_1"] else "",
                "[green]◀ best[/]" if best else "",
                end_section=c is r["configs"][-1],
            )
    console.print(table)
    summary = Table(title="Best thread count (lowest median latency)")
    summary.add_column("model")
    summary.add_column("batch", justify="right")
    summary.add_column("best threads (p50)", justify="right")
    summary.add_column("best threads (p99)", justify="right")
    summary.add_column("edgerun default here", justify="right")
    for r in results:
        agrees = "[green]same[/]" if r["best_threads"] == default_threads else "[yellow]differs[/]"
        summary.add_row(
            r["model"],
            str(r["batch"]),
            str(r["best_threads"]),
            str(r["best_p99_threads"]),
            f"{default_threads} ({agrees})",
        )
    console.print(summary)
    console.print(f"[dim]edgerun default on this device: {reason}[/]")


def main(argv: list[str] | None = None) -> int:
    cores = usable_cores()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=[TINY, DEFAULT], help="bundled model names")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument(
        "--threads", nargs="+", type=int, default=list(range(1, cores + 1)), help=f"default 1..{cores} (nproc)"
    )
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds per (model, batch)")
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per configuration")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if any(t < 1 for t in args.threads) or any(b < 1 for b in args.batches) or args.rounds < 1:
        parser.error("threads, batches and rounds must be >= 1")

    console = Console() if sys.stdout.isatty() else Console(width=132)
    info = machine()
    console.print(f"[bold]{info['cpu']}[/], {info['cores']} cores, onnxruntime {info['onnxruntime']}")
    defaults = DeviceDefaults.for_profile(edgerun.current_device())
    results = []
    for model in args.models:
        for batch in args.batches:
            with console.status(f"{model} batch {batch}: threads {args.threads}"):
                results.append(sweep(model, batch, sorted(set(args.threads)), args.rounds, args.seconds))
    render(console, results, defaults.threads, defaults.threads_reason)
    if args.json is not None:
        payload = {"machine": info, "default_threads": defaults.threads, "results": results}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
