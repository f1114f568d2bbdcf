"""PNG plots of bench results: one run's latency distribution, a sweep, several results side by side.

matplotlib is an optional extra (``pip install 'edgerun[plot]'``), imported on first use. The
figures are drawn on matplotlib's non-interactive Agg canvas directly, never through
``pyplot``, so plotting changes no global backend, opens no window and is safe in threads.
Every PNG is `PNG_SIZE_PX` (1200 x 500 pixels: a `FIGSIZE_IN` figure at `DPI`), whatever the
data, so reports and READMEs can lay them out in advance.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgerun.errors import InputError, MissingExtraError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
FIGSIZE_IN = (12.0, 5.0)
PNG_SIZE_PX = (1200, 500)
"""(width, height) of every PNG written here."""

_PASS, _FAIL, _DEADLINE, _MARK = "#2e7d32", "#c62828", "#c62828", "#1565c0"


def _figure() -> Figure:
    """A fixed-size figure on an Agg canvas with two side-by-side panels' worth of room."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingExtraError(
            f"plots need matplotlib, which is not installed ({exc}): pip install 'edgerun[plot]'"
        ) from exc
    figure = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    figure.savefig(target, dpi=DPI, format="png")
    return target


def _title(run: dict[str, Any]) -> str:
    device = run["device"]
    return (
        f"{run['model']}: {run['backend']} {run['precision']}, {run['scenario']}, batch {run['batch']} "
        f"on {device['kind']} ({device['model']})"
    )


def _unit(run: dict[str, Any]) -> str:
    return "ms per batch" if run["scenario"] == "offline" else "ms per query"


def plot_run(run: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """One run's latency histogram and CDF with p50, p99 and the deadline marked; returns ``path``.

    The histogram is zoomed on the measured latencies (where the shape is); a deadline far past
    them is labelled at its right edge instead of squashing the bars. The CDF's axis is
    logarithmic and always reaches the deadline, so the headroom is visible there.
    """
    samples = [float(v) for v in run.get("latency_samples_ms") or []]
    if not samples:
        raise InputError(
            f"{_title(run)}: no latency samples to plot (latency_samples_ms is empty; the run completed no query)"
        )
    figure = _figure()
    hist, cdf = figure.subplots(1, 2)
    figure.suptitle(_title(run))

    _latency_histogram(hist, run, samples)
    _latency_cdf(cdf, run, samples)
    return _save(figure, path)


def _latency_histogram(axes: Axes, run: dict[str, Any], samples: list[float]) -> None:
    """The histogram, zoomed on the body of the latencies, with the deadline on it or labelled off scale."""
    p50, p99, deadline = _marks(run)
    low = min(samples)
    # Zoom on the body: a few outliers (a preempted call) would squash every bar into one.
    ceiling = _zoom_ceiling(p50, p99)
    shown = [v for v in samples if v <= ceiling]
    hidden = len(samples) - len(shown)
    high = max(shown)
    bins = max(10, min(60, int(math.sqrt(len(shown)))))
    axes.hist(shown, bins=bins, color="#90a4ae", edgecolor="white")
    axes.set_xlabel(f"latency ({_unit(run)})")
    axes.set_ylabel("queries")
    outliers = f"; {hidden} above {ceiling:.3g} ms not shown (max {max(samples):.3g})" if hidden else ""
    axes.set_title(f"histogram of {len(samples)} of {run['queries']} queries{outliers}", fontsize="medium")
    _mark_percentiles(axes, p50, p99)
    span = max(high - low, high * 0.05, 1e-6)
    if deadline <= high + 0.5 * span:
        axes.axvline(deadline, color=_DEADLINE, linewidth=2, label=f"deadline {deadline:g} ms")
        axes.set_xlim(min(low, deadline) - 0.05 * span, max(high, deadline) + 0.05 * span)
    else:
        axes.set_xlim(low - 0.05 * span, high + 0.05 * span)
        axes.annotate(
            f"deadline {deadline:g} ms\n(off scale" + (f", {deadline / p99:.1f}x p99) →" if p99 > 0 else ") →"),
            xy=(0.98, 0.6),
            xycoords="axes fraction",
            ha="right",
            color=_DEADLINE,
        )
    axes.legend(loc="upper right")


def _latency_cdf(axes: Axes, run: dict[str, Any], samples: list[float]) -> None:
    """The CDF on a log axis that always reaches the deadline, so the headroom shows."""
    p50, p99, deadline = _marks(run)
    low, high = min(samples), max(v for v in samples if v <= _zoom_ceiling(p50, p99))
    ordered = sorted(samples)
    fraction = [(i + 1) / len(ordered) for i in range(len(ordered))]
    axes.step(ordered, fraction, where="post", color="#37474f")
    if low > 0:
        _log_axis(axes, "x")
        axes.set_xlim(min(low, deadline) * 0.8, max(high, deadline) * 1.25)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel(f"latency ({_unit(run)}" + (", log scale)" if low > 0 else ")"))
    axes.set_ylabel("fraction of queries at or below")
    verdict = "PASS" if run["meets_deadline"] else "FAIL"
    axes.set_title(f"CDF; deadline {run['deadline_rule']}: {verdict}")
    _mark_percentiles(axes, p50, p99)
    axes.axvline(deadline, color=_DEADLINE, linewidth=2, label=f"deadline {deadline:g} ms")
    axes.legend(loc="lower right")
    axes.grid(True, which="both", alpha=0.3)


def _marks(run: dict[str, Any]) -> tuple[float, float, float]:
    """A run's p50 and p99 latency and its deadline, in ms."""
    latency = run["latency_ms"]
    return float(latency["p50"]), float(latency["p99"]), float(run["deadline_ms"])


def _zoom_ceiling(p50: float, p99: float) -> float:
    """Latencies above this are outliers (a preempted call): shown in the CDF, left out of the histogram's axis."""
    return max(3 * p99, p50 * 1.5)


def _log_axis(axes: Axes, which: str) -> None:
    """``which`` (``x`` or ``y``) logarithmic, ticked at 1-2-5 steps with plain numbers (``20``, not ``2 x 10^1``)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if which == "x":
        axes.set_xscale("log")
    else:
        axes.set_yscale("log")
    axis = axes.xaxis if which == "x" else axes.yaxis
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _mark_percentiles(axes: Axes, p50: float, p99: float) -> None:
    axes.axvline(p50, color=_MARK, linestyle="--", label=f"p50 {p50:.3f} ms")
    axes.axvline(p99, color=_MARK, linestyle=":", linewidth=2, label=f"p99 {p99:.3f} ms")


def plot_sweep(runs: Sequence[dict[str, Any]], path: str | os.PathLike[str], best: int | None = None) -> Path:
    """Throughput and p99 against batch size, one line per precision and thread count; returns ``path``.

    Points that miss their deadline are drawn as crosses, the deadline is a line on the p99
    panel, and ``best`` (an index into ``runs``, as in a sweep file) is ringed.
    """
    if not runs:
        raise InputError("no runs to plot: a sweep plot needs at least one run")
    if best is not None and not 0 <= best < len(runs):
        raise InputError(f"best run {best} is out of range: expected 0 to {len(runs) - 1}")
    figure = _figure()
    speed, tail = figure.subplots(1, 2)
    first = runs[0]
    figure.suptitle(
        f"sweep: {first['model']} on {first['device']['kind']} ({first['device']['model']}), {first['scenario']}"
    )
    groups: dict[tuple[str, Any], list[int]] = {}
    for index, run in enumerate(runs):
        groups.setdefault((run["precision"], run["threads"]), []).append(index)
    for (precision, threads), members in groups.items():
        members.sort(key=lambda i: runs[i]["batch"])
        batches = [runs[i]["batch"] for i in members]
        label = f"{precision}, {threads} thread(s)"
        line = speed.plot(batches, [runs[i]["throughput_per_s"] for i in members], marker="o", label=label)[0]
        tail.plot(batches, [runs[i]["latency_ms"]["p99"] for i in members], color=line.get_color(), label=label)
        for i in members:
            marker = "o" if runs[i]["meets_deadline"] else "x"
            tail.plot(runs[i]["batch"], runs[i]["latency_ms"]["p99"], marker=marker, color=line.get_color(), ms=8)
    for deadline in sorted({float(run["deadline_ms"]) for run in runs}):
        tail.axhline(deadline, color=_DEADLINE, linewidth=2, linestyle="--", label=f"deadline {deadline:g} ms")
    if best is not None:
        chosen = runs[best]
        for axes, value in ((speed, chosen["throughput_per_s"]), (tail, chosen["latency_ms"]["p99"])):
            axes.plot(chosen["batch"], value, marker="o", ms=16, mfc="none", mec="black", mew=1.5, label="best")
    batches = sorted({run["batch"] for run in runs})
    for axes in (speed, tail):
        if len(batches) > 1 and batches[0] > 0:
            axes.set_xscale("log", base=2)
        axes.set_xticks(batches, [str(b) for b in batches])
        axes.set_xlabel("batch size")
        axes.grid(True, alpha=0.3)
        axes.legend(loc="best", fontsize="small")
    speed.set_ylabel("throughput (samples/s)")
    speed.set_title("throughput (higher is better)")
    tail.set_ylabel(f"p99 latency ({_unit(first)})")
    tail.set_title("p99 latency vs deadline (x: misses it)")
    return _save(figure, path)


def plot_report(
    runs: Sequence[dict[str, Any]], labels: Sequence[str], path: str | os.PathLike[str], baseline: int = 0
) -> Path:
    """Results side by side: throughput bars with speed-ups vs ``runs[baseline]``, p99 bars against each deadline.

    The speed-ups are `crossreport.cross_report`'s (samples/s over the baseline's), so the
    plot and the table agree. Returns ``path``.
    """
    from edgerun.bench.crossreport import cross_report, format_speedup

    rows = cross_report(runs, labels, baseline)
    figure = _figure()
    speed, tail = figure.subplots(1, 2)
    figure.suptitle(f"edgerun report: {len(rows)} result(s), speed-ups vs {rows[baseline]['label']}")
    positions = list(range(len(rows)))
    names = [row["label"] for row in rows]

    colours = ["#455a64" if row["baseline"] else "#90a4ae" for row in rows]
    bars = speed.bar(positions, [row["throughput_per_s"] for row in rows], color=colours)
    speedups = [row["throughput_speedup"] for row in rows]
    speed.bar_label(bars, labels=[format_speedup(s) for s in speedups], padding=2)
    speed.set_ylabel("throughput (samples/s)")
    speed.set_title("throughput; labels: speed-up vs the baseline (dark)")
    speed.margins(y=0.15)

    p99 = [row["p99_ms"] for row in rows]
    verdicts = [row["verdict"] for row in rows]
    tail.bar(positions, p99, color=[_PASS if v == "PASS" else _FAIL for v in verdicts])
    deadlines = [row["deadline_ms"] for row in rows]
    starts, ends = [x - 0.4 for x in positions], [x + 0.4 for x in positions]
    tail.hlines(deadlines, starts, ends, colors="black", linewidths=3, zorder=3, label="deadline")
    for x, (value, verdict) in enumerate(zip(p99, verdicts, strict=True)):
        tail.annotate(f"{value:.3g} ms {verdict}", (x, value), ha="center", va="bottom", fontsize="small")
    values = [v for v in p99 + deadlines if v > 0]
    if values and max(values) / min(values) > 50:
        _log_axis(tail, "y")
    tail.set_ylabel("p99 latency (ms)")
    tail.set_title("p99 vs each result's deadline (green: PASS, red: FAIL)")
    tail.legend(loc="best")
    tail.margins(y=0.15)
    rotation = 20 if max(len(n) for n in names) > 12 else 0
    for axes in (speed, tail):
        axes.set_xticks(positions, names, rotation=rotation, ha="right" if rotation else "center", fontsize="small")
        axes.grid(True, axis="y", alpha=0.3)
    return _save(figure, path)
