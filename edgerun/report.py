"""Terminal rendering (rich) of device, model, run and benchmark reports.

Rendering only: the data comes from `info`, `bench` and the CLI, and the same data is
what ``--json`` writes, so the table and the file never disagree.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .bench import BenchResult


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

    io = Table(title="inputs and outputs", title_justify="left")
    for column in ("", "name", "dtype", "shape"):
        io.add_column(column)
    for kind in ("inputs", "outputs"):
        for spec in report[kind]:
            io.add_row(kind[:-1], spec["name"], spec["dtype"], str(spec["shape"]))
    console.print(io)
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


def render_bench(console: Console, result: BenchResult) -> None:
    data = result.to_dict()
    latency = data["latency_ms"]
    table = Table(
        title=f"edgerun bench: {data['model']} on {data['device']['kind']} ({data['device']['model']})",
        title_justify="left",
    )
    for column in ("", "min", "mean", "p50", "p90", "p95", "p99", "max"):
        table.add_column(column, justify="right")
    table.add_row("latency ms", *(f"{latency[k]:.3f}" for k in ("min", "mean", "p50", "p90", "p95", "p99", "max")))
    console.print(table)
    shapes = ", ".join(f"{k} {v}" for k, v in data["input_shapes"].items())
    console.print(
        f"backend {data['backend']} ({', '.join(data['plan']['targets'])}), precision {data['precision']}, "
        f"{data['threads']} thread(s), batch {data['batch']} ({shapes}), "
        f"{data['iterations']} iterations after {data['warmup']} warm-up"
    )
    console.print(f"throughput {data['throughput_per_s']:.1f} samples/s")
    for fallback in data["fallbacks"]:
        console.print(f"[yellow]fallback:[/yellow] {escape(fallback)}")
    for warning in data["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    verdict = "[bold green]PASS[/bold green]" if data["meets_deadline"] else "[bold red]FAIL[/bold red]"
    console.print(f"real-time deadline {data['deadline_ms']:.1f} ms: {verdict} (p99 {latency['p99']:.3f} ms)")


def render_run(console: Console, report: dict[str, Any]) -> None:
    for output in report["outputs"]:
        console.print(f"[bold]{escape(output['name'])}[/bold] {output['dtype']} {output['shape']}")
        for i, top in enumerate(output["top"]):
            ranked = ", ".join(f"{t['label'] if t['label'] is not None else t['index']}={t['value']:.4g}" for t in top)
            console.print(escape(f"  [{i}] {ranked}"))
