"""``edgerun bench``: parse the options, run the library's sweep (`edgerun.bench.sweep.run_sweep`)
with a live progress bar, render the results and write the report files.

Exit codes: 0, or 3 with ``--fail-on-miss`` when no configuration meets the deadline, or 130
after Ctrl-C (once the partial report is printed and written), so CI never reads an
interrupted run as a pass.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.markup import escape

from edgerun.bench.config import BenchConfig
from edgerun.bench.loadgen import SCENARIOS, check_scenario
from edgerun.cli.common import CONTEXT, INTERRUPTED_EXIT, emit_json, err, input_roles_option, out, roles_for
from edgerun.runtime.plan import PRECISIONS, as_precision

if TYPE_CHECKING:
    from rich.progress import TaskID

    from edgerun.bench.sweep import SweepPoint, SweepProgress

_F = TypeVar("_F", bound=Callable[..., Any])


def _sweep_option(*names: str, metavar: str, text: str) -> Callable[[_F], _F]:
    return click.option(*names, default=None, metavar=metavar, help=text)


@click.command("bench", context_settings=CONTEXT)
@click.argument("model", required=False)
@click.option(
    "--scenario",
    type=click.Choice(SCENARIOS),
    default=BenchConfig.scenario,
    show_default=True,
    help="LoadGen scenario: one query at a time (p90), N samples per query (p99), Poisson arrivals "
    "through the batcher, or all samples at once (throughput).",
)
@_sweep_option("-b", "--batch", metavar="N[,N...]", text="Batch size (comma list to sweep); server: the max batch.")
@_sweep_option("--threads", metavar="N[,N...]", text="Intra-op threads (comma list to sweep; default: the device's).")
@_sweep_option("--precision", metavar="P[,P...]", text=f"{', '.join(PRECISIONS)} (comma list to sweep).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--backend", default="auto", show_default=True, help="auto, onnxruntime or tensorrt.")
@click.option(
    "--samples-per-query",
    type=click.IntRange(min=1),
    default=BenchConfig.samples_per_query,
    show_default=True,
    help="multi-stream.",
)
@click.option("--target-qps", type=float, default=None, help="server: Poisson arrival rate.")
@click.option("--latency-bound-ms", type=float, default=None, help="server: the p99 bound (default: the deadline).")
@click.option("--find-max-qps", is_flag=True, help="server: bisect for the highest rate that holds the bound.")
@click.option("--max-queue-delay-ms", type=click.FloatRange(min=0), default=None, help="server: the batcher's delay.")
@click.option(
    "-n", "--min-queries", "--iterations", "min_queries", type=click.IntRange(min=1), default=None,
    help=f"Minimum timed queries (default {BenchConfig.min_queries}; 1 with --duration).",
)  # fmt: skip
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=None,
    help="Minimum seconds (default 2 unless -n is given); server: the run's length (default 10; 3 per search step).",
)
@click.option(
    "--warmup", type=click.IntRange(min=0), default=BenchConfig.warmup, show_default=True, help="Untimed queries first."
)
@click.option(
    "--deadline-ms",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Real-time budget: p99 per query must be within it (offline: one sample per budget).",
)
@click.option(
    "--shape",
    multiple=True,
    metavar="NAME=1x3x224x224",
    help="Shape of an input with free dimensions, or a symbol's size for every input sharing it (sequence=128).",
)
@input_roles_option
@click.option(
    "--seed", type=int, default=BenchConfig.seed, show_default=True, help="Seed of random inputs and arrivals."
)
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
    input_roles: tuple[str, ...],
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
    real-time verdict, system facts and warnings. A stateful model (a state input paired with an
    output) runs as streams, its state carried step to step, and reports per-chunk latency.
    Ctrl-C stops, still reports, and exits 130.
    """
    from edgerun import models
    from edgerun.bench.sweep import parse_values, run_sweep, sweep_points
    from edgerun.cli.render import render_bench, render_sweep
    from edgerun.data.preprocess import PreprocessSpec
    from edgerun.specs import parse_shape_override

    inputs = roles_for(input_roles)
    precisions = [as_precision(p or "auto") for p in parse_values(precision, "precision", str)]
    points = sweep_points(
        parse_values(batch, "batch", int, minimum=1), parse_values(threads, "threads", int, minimum=1), precisions
    )
    base = BenchConfig(
        scenario=check_scenario(scenario),
        samples_per_query=samples_per_query,
        min_queries=min_queries if min_queries is not None else (1 if duration else BenchConfig.min_queries),
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
    closed = base.scenario in ("single-stream", "multi-stream")
    with _LiveProgress(base.min_queries if closed else None, quiet) as live:
        sweep = run_sweep(
            model or models.DEFAULT,
            base,
            points,
            device=device,
            backend=backend,
            progress=live.callback(),
            inputs=inputs or None,
        )
    if sweep.interrupted:
        err.print("[yellow]interrupted: reporting what was measured[/yellow]")
    document = sweep.document()
    runs = document["runs"] if document["kind"] == "sweep" else [document]
    if not quiet:
        for result in sweep.results:
            render_bench(out, result)
        if document["kind"] == "sweep":
            render_sweep(out, document)
    _write_outputs(document, runs, json_path, csv_path, md_path, plot_path, quiet)
    if quiet:
        verdict = "PASS" if sweep.meets_deadline else "FAIL"
        cut = "; interrupted" if sweep.interrupted else ""
        out.print(f"{runs[0]['model']} {runs[0]['scenario']}: {verdict} ({runs[0]['deadline_rule']}){cut}")
    if sweep.interrupted:
        raise SystemExit(INTERRUPTED_EXIT)  # after the partial report: CI must not read it as a pass
    if fail_on_miss and not sweep.meets_deadline:
        raise SystemExit(3)


class _LiveProgress:
    """A live progress bar on stderr per sweep point: queries done, p50 and p99 of the latest queries."""

    def __init__(self, total: int | None, quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._total = total
        self._progress = Progress(
            TextColumn("[bold]bench[/bold] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[live]}"),
            console=err,
            transient=True,
            disable=quiet or not err.is_terminal,
        )
        self._point: SweepPoint | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> _LiveProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(None, None, None)

    def callback(self) -> SweepProgress | None:
        """What `run_sweep` calls; None when nothing is shown (--quiet, or stderr is not a terminal)."""
        return None if self._progress.disable else self._update

    def _update(self, point: SweepPoint, done: int, latencies: list[float]) -> None:
        from edgerun.stats import nearest_ranks

        if point != self._point or self._task is None:
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task(escape(point.label()), total=self._total, live="")
            self._point = point
        recent = latencies[-2000:]
        live = ""
        if recent:
            p50, p99 = nearest_ranks(recent, (50, 99))
            live = f"p50 {p50 * 1e3:.3f} ms, p99 {p99 * 1e3:.3f} ms"
        total = max(self._total, done) if self._total else None
        self._progress.update(self._task, completed=done, total=total, live=live)


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
