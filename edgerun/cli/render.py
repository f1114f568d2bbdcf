"""Terminal rendering (rich) of device, model, run and benchmark reports.

Rendering only: the data comes from `info`, `bench` and the CLI, and the same data is
what ``--json`` writes, so the table and the file never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from edgerun.bench.result import BenchResult


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def render_device(console: Console, report: dict[str, Any]) -> None:
    device = report["device"]
    table = Table(title=f"edgerun {report['edgerun']}: this device", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("kind", device["kind"])
    table.add_row("model", device["model"])
    table.add_row("cpu", f"{device['cpu']} ({device['arch']}), {device['cores']} cores")
    table.add_row("memory", _gib(device["memory_bytes"]))
    if device["cpu_features"]:
        table.add_row("cpu features", " ".join(device["cpu_features"]))
    if device["gpu_name"]:
        cc = f", compute capability {device['compute_capability']}" if device["compute_capability"] else ""
        table.add_row("gpu", f"{device['gpu_name']}{cc}")
    if device["nvidia_driver"]:
        table.add_row("nvidia driver", device["nvidia_driver"])
    if device["l4t"]:
        table.add_row("L4T / JetPack", f"{device['l4t']} / {device['jetpack'] or 'unknown'}")
    versions = ", ".join(f"{k} {v}" for k, v in device["versions"].items() if v)
    missing = ", ".join(k for k, v in device["versions"].items() if not v)
    table.add_row("versions", versions)
    if missing:
        table.add_row("not installed", missing)
    defaults = report["defaults"]
    table.add_row("default threads", f"{defaults['threads']} ({defaults['threads_reason']})")
    table.add_row("default deadline", f"{defaults['deadline_ms']:.1f} ms")
    console.print(table)

    backends = Table(title="backends", title_justify="left")
    for column in ("backend", "available", "version", "detail"):
        backends.add_column(column)
    for b in report["backends"]:
        backends.add_row(
            b["name"],
            "[green]yes[/green]" if b["available"] else "[red]no[/red]",
            b["version"] or "-",
            b["detail"],
        )
    console.print(backends)


def render_model(console: Console, report: dict[str, Any]) -> None:
    table = Table(title=f"model {report['path']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    card = report["card"]
    if card:
        table.add_row("bundled", f"{card['name']}: {card['title']}")
        table.add_row("license", card["license"])
        if card.get("accuracy"):
            acc = card["accuracy"]
            table.add_row(
                "accuracy", f"{acc['value']:.2%} {acc['metric']} on {acc['samples']} samples ({acc['dataset']})"
            )
    table.add_row("size", f"{report['size_bytes']:,} bytes")
    table.add_row("sha256", report["sha256"])
    table.add_row("opset / IR", f"{report['opset']} / {report['ir_version']}")
    table.add_row("producer", report["producer"] or "-")
    table.add_row("stored precision", report["precision"])
    console.print(table)

    roles = report.get("roles") or {"inputs": [], "output_axes": {}, "stateful": False, "state_pairs": {}}
    described = {r["name"]: r["describe"] for r in roles["inputs"]}
    observed = {o["name"]: o["shape"] for o in report.get("observed_outputs") or []}
    io = Table(title="inputs and outputs", title_justify="left")
    for column in ("", "name", "dtype", "shape", "meaning"):
        io.add_column(column)
    for spec in report["inputs"]:
        io.add_row("input", escape(spec["name"]), spec["dtype"], escape(str(spec["shape"])),
                   escape(described.get(spec["name"], "")))  # fmt: skip
    for spec in report["outputs"]:
        shape = str(spec["shape"])
        seen = observed.get(spec["name"])
        if seen is not None and seen != spec["shape"]:
            shape += f" (observed {seen})"
        axis = roles["output_axes"].get(spec["name"])
        io.add_row("output", escape(spec["name"]), spec["dtype"], escape(shape),
                   "no batch axis" if axis is None else f"batch axis {axis}")  # fmt: skip
    console.print(io)
    pairs = ", ".join(f"{k} -> {v}" for k, v in roles["state_pairs"].items())
    console.print(f"[bold]stateful:[/bold] {escape(f'yes ({pairs})') if roles['stateful'] else 'no'}")
    for mismatch in report.get("output_mismatches") or []:
        console.print(
            f"[yellow]warning:[/yellow] output '{escape(mismatch['name'])}' is declared "
            f"{escape(str(mismatch['declared']))} but the model returns {escape(str(mismatch['returned']))} "
            "(exports use the returned shape)",
            soft_wrap=True,
        )
    if report.get("observed_note"):
        console.print(f"output shapes {escape(report['observed_note'])}", soft_wrap=True)
    render_plan(console, report["plan"], report["plan_error"])


def render_plan(console: Console, plan: dict[str, Any] | None, error: str | None = None) -> None:
    if plan is None:
        console.print(f"[bold red]plan:[/bold red] {escape(str(error))}")
        return
    console.print(
        f"[bold]plan:[/bold] {plan['backend']} {plan['backend_version'] or ''} on {plan['device']} "
        f"({', '.join(plan['targets'])}), precision {plan['precision']}, {plan['threads']} thread(s)"
    )
    for fallback in plan["fallbacks"]:
        console.print(f"  [yellow]fallback:[/yellow] {escape(fallback)}")
    for reason in plan["reasons"]:
        console.print(f"  why: {escape(reason)}")
    quality = plan.get("quality")
    if quality:
        console.print(f"  quality: {escape(str(quality.get('summary', '')))}")
    elif plan.get("converted"):
        console.print("  quality: not checked yet: the first load converts the model and checks it against fp32")
    if plan.get("batching"):
        console.print(f"  batching: {escape(batching_line(plan['batching']))}")


def render_bench(console: Console, result: BenchResult) -> None:
    data = result.to_dict()
    latency = data["latency_ms"]
    device = data["device"]
    table = Table(
        title=f"edgerun bench: {data['model']}, {data['scenario']}",
        title_justify="left",
    )
    unit = "ms per batch" if data["scenario"] == "offline" else "ms per query"
    if result.stream and data["scenario"] in ("single-stream", "server"):
        unit = "ms per chunk"
    for column in (unit, "min", "mean", "median", "p90", "p95", "p99", "max"):
        table.add_column(column, justify="right")
    table.add_row("latency", *(f"{latency[k]:.3f}" for k in ("min", "mean", "median", "p90", "p95", "p99", "max")))
    console.print(table)
    if result.stream_summary:
        console.print(escape(result.stream_summary))
    shapes = ", ".join(f"{k} {v}" for k, v in data["inputs"]["shapes"].items())
    console.print(
        f"backend {data['backend']} ({', '.join(data['plan']['targets'])}), precision {data['precision']}, "
        f"{data['threads']} thread(s), batch {data['batch']} ({escape(shapes)}); inputs: "
        f"{escape(data['inputs']['source'])}; {data['queries']} queries in {data['wall_s']:.2f} s "
        f"after {data['settings']['warmup']} warm-up"
    )
    console.print(
        f"throughput {data['throughput_per_s']:.1f} samples/s ({data['qps']:.1f} queries/s); "
        f"score: {data['score']['metric']} [bold]{data['score']['value']:.3f}[/bold]"
    )
    server = data["server"]
    if server:
        held = "[green]held[/green]" if server["bound_held"] else "[red]NOT held[/red]"
        console.print(
            f"server: target {server['target_qps']:.1f} QPS (issued {server['issued_qps']:.1f}), achieved "
            f"{server['achieved_qps']:.1f}; p99 {server['p99_ms']:.3f} ms vs bound {server['latency_bound_ms']:g} ms: "
            f"{held}; late {server['late_fraction']:.1%}, dropped {server['dropped_fraction']:.1%}"
        )
        for trial in server.get("trials", []):
            mark = "held" if trial["bound_held"] else "not held"
            console.print(
                f"  search: {trial['target_qps']:.1f} QPS -> p99 {trial['p99_ms']:.3f} ms, "
                f"achieved {trial['achieved_qps']:.1f} ({mark})"
            )
    if server and data["settings"].get("batching"):
        console.print(f"server batcher: {escape(batching_line(data['settings']['batching']))}")
    phases = data["gpu_phases_ms"]
    if phases:
        console.print("GPU median ms: " + ", ".join(f"{k} {v:.3f}" for k, v in phases.items()))
    system = data["system"]
    facts = [f"{device['kind']} ({device['model']}), {device['cores']} cores"]
    if system.get("governor"):
        facts.append(f"governor {system['governor']}")
    if system.get("nvpmodel"):
        facts.append(f"power mode {system['nvpmodel']}")
    if system.get("max_temperatures_c"):
        hottest = max(system["max_temperatures_c"].items(), key=lambda item: item[1])
        facts.append(f"max temperature {hottest[1]:.1f} C ({hottest[0]})")
    console.print("device: " + escape(", ".join(facts)))
    for fallback in data["fallbacks"]:
        console.print(f"[yellow]fallback:[/yellow] {escape(fallback)}")
    quality = data["plan"].get("quality")
    if quality:
        console.print(f"quality: {escape(str(quality.get('summary', '')))}")
    for warning in data["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    for note in data["notes"]:
        console.print(f"note: {escape(note)}")
    console.print(f"real-time deadline: {escape(data['deadline_rule'])}: {_verdict(data['meets_deadline'])}")


def batching_line(chosen: dict[str, Any]) -> str:
    """A batcher's chosen max batch size and instances, each with its reason (and, beside direct calls, the
    batch cap of queued requests)."""
    queued = chosen.get("queued")
    if queued and queued["max_batch_size"] == chosen["max_batch_size"]:
        queued = None  # nothing to add
    return (
        f"max batch {chosen['max_batch_size']} ({chosen.get('batch_why', '')}); "
        + (f"queued requests (submit, asyncio): max batch {queued['max_batch_size']}; " if queued else "")
        + f"{chosen['instances']} instance(s) ({chosen.get('instances_why', '')})"
    )


def _verdict(passed: bool) -> str:
    return "[bold green]PASS[/bold green]" if passed else "[bold red]FAIL[/bold red]"


def render_sweep(console: Console, document: dict[str, Any]) -> None:
    runs = document["runs"]
    first = runs[0]
    table = Table(
        title=f"sweep: {first['model']} on {first['device']['kind']}, {first['scenario']}", title_justify="left"
    )
    for column in ("precision", "threads", "batch", "p50 ms", "p90 ms", "p99 ms", "samples/s", "score", "verdict"):
        table.add_column(column, justify="right")
    for index, run in enumerate(runs):
        latency = run["latency_ms"]
        style = "bold" if index == document["best"] else None
        table.add_row(
            run["precision"],
            str(run["threads"]),
            str(run["batch"]),
            f"{latency['p50']:.3f}",
            f"{latency['p90']:.3f}",
            f"{latency['p99']:.3f}",
            f"{run['throughput_per_s']:.1f}",
            f"{run['score']['value']:.3f}",
            _verdict(run["meets_deadline"]),
            style=style,
        )
    console.print(table)
    if document["best"] is not None:
        best = runs[document["best"]]
        console.print(
            f"[bold]best:[/bold] {best['precision']}, {best['threads']} thread(s), batch {best['batch']}: "
            f"{escape(document['best_reason'])}"
        )


def render_run(console: Console, report: dict[str, Any]) -> None:
    for output in report["outputs"]:
        console.print(f"[bold]{escape(output['name'])}[/bold] {output['dtype']} {output['shape']}")
        for i, top in enumerate(output["top"]):
            ranked = ", ".join(f"{t['label'] if t['label'] is not None else t['index']}={t['value']:.4g}" for t in top)
            console.print(escape(f"  [{i}] {ranked}"))


_UNBOUNDED = 1_000_000
"""A width no table reaches: measuring at it gives a table's natural (unwrapped) width."""


def render_cells(
    console: Console,
    title: str,
    rows: Sequence[Mapping[str, str]],
    columns: Sequence[str],
    *,
    bold: int | None = None,
) -> None:
    """``rows`` (formatted cells; the first column names the row) as a table when it fits the
    console unwrapped, else as one block per row, so no cell is cut to ``…`` or broken across
    lines: 80-column terminals and output piped to a file stay readable. ``bold``: a row to
    stress. The title goes on its own line, wrapped at spaces, so a long data path does not widen the table."""
    console.print(escape(title), highlight=False)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 else "right", no_wrap=True)
    for index, row in enumerate(rows):
        table.add_row(*(escape(row[column]) for column in columns), style="bold" if index == bold else None)
    unbounded = console.options.update_width(_UNBOUNDED)
    if Measurement.get(console, unbounded, table).maximum <= console.width:
        console.print(table)
        return
    indent = "  "
    for index, row in enumerate(rows):
        name = escape(row[columns[0]])
        console.print(f"[bold]{name}[/bold]" if index == bold else name, highlight=False, soft_wrap=True)
        pairs = [f"{column}: {row[column]}" for column in columns[1:]]
        for line in _pack(pairs, console.width - len(indent), "; "):
            console.print(indent + escape(line), highlight=False, soft_wrap=True)


def _pack(parts: Sequence[str], width: int, separator: str) -> list[str]:
    """``parts`` joined by ``separator`` into lines of at most ``width`` characters, never splitting a
    part (one longer than ``width`` gets a line of its own)."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + len(separator) + len(part) <= width:
            lines[-1] += separator + part
        else:
            lines.append(part)
    return lines
