"""``edgerun bench``: scenarios, sweeps, live progress and report files, on the library's calls."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.markup import escape

from edgerun.cli.common import CONTEXT, emit_json, err, out

_F = TypeVar("_F", bound=Callable[..., Any])


def _sweep_option(*names: str, metavar: str, text: str) -> Callable[[_F], _F]:
    return click.option(*names, default=None, metavar=metavar, help=text)


@click.command("bench", context_settings=CONTEXT)
@click.argument("model", required=False)
@click.option(
    "--scenario",
    type=click.Choice(["single-stream", "multi-stream", "server", "offline"]),
    default="single-stream",
    show_default=True,
    help="LoadGen scenario: one query at a time (p90), N samples per query (p99), Poisson arrivals "
    "through the batcher, or all samples at once (throughput).",
)
@_sweep_option("-b", "--batch", metavar="N[,N...]", text="Batch size (comma list to sweep); server: the max batch.")
@_sweep_option("--threads", metavar="N[,N...]", text="Intra-op threads (comma list to sweep; default: the device's).")
@_sweep_option("--precision", metavar="P[,P...]", text="auto, fp32, fp16, bf16 or int8 (comma list to sweep).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--backend", default="auto", show_default=True, help="auto, onnxruntime or tensorrt.")
@click.option("--samples-per-query", type=click.IntRange(min=1), default=8, show_default=True, help="multi-stream.")
@click.option("--target-qps", type=float, default=None, help="server: Poisson arrival rate.")
@click.option("--latency-bound-ms", type=float, default=None, help="server: the p99 bound (default: the deadline).")
@click.option("--find-max-qps", is_flag=True, help="server: bisect for the highest rate that holds the bound.")
@click.option("--max-queue-delay-ms", type=click.FloatRange(min=0), default=None, help="server: the batcher's delay.")
@click.option(
    "-n", "--min-queries", "--iterations", "min_queries", type=click.IntRange(min=1), default=None,
    help="Minimum timed queries (default 200; 1 with --duration).",
)  # fmt: skip
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=None,
    help="Minimum seconds (default 2 unless -n is given); server: the run's length (default 10; 3 per search step).",
)
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True, help="Untimed queries first.")
@click.option(
    "--deadline-ms",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Real-time budget: p99 per query must be within it (offline: one sample per budget).",
)
@click.option("--shape", multiple=True, metavar="NAME=1x3x224x224", help="Shape of an input with free dimensions.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of random inputs and arrivals.")
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="Real inputs: an image folder (through the model's preprocessing) or an .npy/.npz file.",
)
@click.option("--preprocess", type=click.Path(path_type=Path), default=None, help="JSON preprocessing spec.")
@click.option("--include-preprocess", is_flag=True, help="Time image decoding and preprocessing in each query.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write the full report.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None, help="Write one CSV row per run.")
@click.option("--markdown", "md_path", type=click.Path(path_type=Path), default=None, help="Write a Markdown report.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), default=None, help="Write a PNG (edgerun[plot]).")
@click.option("-q", "--quiet", is_flag=True, help="No progress or tables: only the verdict line.")
@click.option("--fail-on-miss", is_flag=True, help="Exit 3 when the deadline is missed (sweeps: by every run).")
def bench_cmd(
    model: str | None,
    scenario: str,
    batch: str | None,
    threads: str | None,
    precision: str | None,
    device: str,
    backend: str,
    samples_per_query: int,
    target_qps: float | None,
    latency_bound_ms: float | None,
    find_max_qps: bool,
    max_queue_delay_ms: float | None,
    min_queries: int | None,
    duration: float | None,
    warmup: int,
    deadline_ms: float | None,
    shape: tuple[str, ...],
    seed: int,
    data: Path | None,
    preprocess: Path | None,
    include_preprocess: bool,
    json_path: Path | None,
    csv_path: Path | None,
    md_path: Path | None,
    plot_path: Path | None,
    quiet: bool,
    fail_on_miss: bool,
) -> None:
    """Benchmark MODEL (.onnx file or bundled name; default: the bundled default model).

    Reports latency min/mean/median/p90/p95/p99/max, throughput, the scenario's score, the
    real-time verdict, system facts and warnings. Ctrl-C stops and still reports.
    """
    from edgerun import models
    from edgerun.bench.runner import BenchConfig, BenchResult, _fixed_batch
    from edgerun.bench.sweep import check_batches, parse_values, sweep_document, sweep_points
    from edgerun.cli.render import render_bench, render_sweep
    from edgerun.data.preprocess import PreprocessSpec
    from edgerun.loading import load
    from edgerun.runtime.device import current_device
    from edgerun.runtime.plan import as_precision
    from edgerun.specs import parse_shape_override

    batches = parse_values(batch, "batch", int, minimum=1)
    thread_counts = parse_values(threads, "threads", int, minimum=1)
    precisions = [p or "auto" for p in parse_values(precision, "precision", str)]
    points = sweep_points(batches, thread_counts, precisions)
    name = model or models.DEFAULT
    base = BenchConfig(
        scenario=scenario,
        samples_per_query=samples_per_query,
        min_queries=min_queries if min_queries is not None else (1 if duration else 200),
        min_duration_s=duration if duration is not None else (0.0 if min_queries or scenario == "server" else 2.0),
        warmup=warmup,
        deadline_ms=deadline_ms,
        seed=seed,
        shapes=dict(parse_shape_override(s) for s in shape) if shape else None,
        target_qps=target_qps,
        latency_bound_ms=latency_bound_ms,
        find_max_qps=find_max_qps,
        max_queue_delay_ms=max_queue_delay_ms,
        data=str(data) if data is not None else None,
        preprocess=PreprocessSpec.from_json_file(preprocess) if preprocess else None,  # else the card's
        include_preprocess=include_preprocess,
    )
    profile = current_device()
    results: list[BenchResult] = []
    checked = False
    try:
        for (point_precision, point_threads), group in _by_session(points):
            options: dict[str, Any] = {} if point_threads is None else {"threads": point_threads}
            with load(
                name, device=device, backend=backend, precision=as_precision(point_precision), **options
            ) as session:
                if not checked:
                    check_batches(batches, _fixed_batch(session), name)
                    checked = True
                for point in group:
                    config = dataclasses.replace(base, batch=point.batch)
                    result = _run_with_progress(session, profile, config, point.label(), quiet)
                    results.append(result)
                    if result.interrupted:
                        raise KeyboardInterrupt
    except KeyboardInterrupt:
        if not results:
            raise
        err.print("[yellow]interrupted: reporting what was measured[/yellow]")
    ran = points[: len(results)]
    if len(points) == 1:
        document: dict[str, Any] = results[0].to_dict()
        runs = [document]
        if not quiet:
            render_bench(out, results[0])
    else:
        document = sweep_document(results, ran)
        runs = document["runs"]
        if not quiet:
            for result in results:
                render_bench(out, result)
            render_sweep(out, document)
    _write_outputs(document, runs, json_path, csv_path, md_path, plot_path, quiet)
    passed = [run["meets_deadline"] for run in runs]
    if quiet:
        verdict = "PASS" if any(passed) else "FAIL"
        out.print(f"{runs[0]['model']} {runs[0]['scenario']}: {verdict} ({runs[0]['deadline_rule']})")
    if fail_on_miss and not any(passed):
        raise SystemExit(3)


def _by_session(points: list[Any]) -> list[tuple[tuple[str, int | None], list[Any]]]:
    """Sweep points grouped by (precision, threads): one loaded session per group."""
    groups: dict[tuple[str, int | None], list[Any]] = {}
    for point in points:
        groups.setdefault((point.precision, point.threads), []).append(point)
    return list(groups.items())


def _run_with_progress(session: Any, profile: Any, config: Any, label: str, quiet: bool) -> Any:
    """One bench run with a live progress bar (queries done, p50 and p99 of the latest queries)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edgerun.bench.runner import benchmark
    from edgerun.stats import nearest_ranks

    closed = config.scenario in ("single-stream", "multi-stream")
    total = config.min_queries if closed else None
    progress = Progress(
        TextColumn("[bold]bench[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[live]}"),
        console=err,
        transient=True,
        disable=quiet or not err.is_terminal,
    )
    with progress:
        task = progress.add_task(escape(label), total=total, live="")

        def update(done: int, latencies: list[float]) -> None:
            recent = latencies[-2000:]
            live = ""
            if recent:
                p50, p99 = nearest_ranks(recent, (50, 99))
                live = f"p50 {p50 * 1e3:.3f} ms, p99 {p99 * 1e3:.3f} ms"
            progress.update(task, completed=done, total=max(total, done) if total else None, live=live)

        return benchmark(session, profile, config, progress=update)


def _write_outputs(
    document: dict[str, Any],
    runs: list[dict[str, Any]],
    json_path: Path | None,
    csv_path: Path | None,
    md_path: Path | None,
    plot_path: Path | None,
    quiet: bool,
) -> None:
    from edgerun.bench.files import markdown, write_csv

    written: list[Path] = []
    if json_path is not None:
        emit_json(document, json_path)
        written.append(json_path)
    if csv_path is not None:
        write_csv(runs, csv_path)
        written.append(csv_path)
    if md_path is not None:
        md_path.write_text(markdown(runs, document.get("best")))
        written.append(md_path)
    if plot_path is not None:
        from edgerun.bench.plots import plot_run, plot_sweep

        if document["kind"] == "sweep":
            plot_sweep(runs, plot_path, best=document["best"])
        else:
            plot_run(document, plot_path)
        written.append(plot_path)
    if written and not quiet:
        out.print("written: " + escape(", ".join(str(p) for p in written)))
