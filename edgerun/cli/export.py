"""``edgerun export triton``: hand a fleet a ready Triton model repository."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from edgerun.cli.common import CONTEXT, input_roles_option, out, roles_for


@click.group("export", context_settings=CONTEXT)
def export_cmd() -> None:
    """Export a model for another runtime."""


@export_cmd.command("triton")
@click.argument("model")
@click.option("--repository", type=click.Path(path_type=Path), required=True, help="Triton model repository folder.")
@click.option("--name", default=None, help="Model name in the repository (default: the model's).")
@click.option(
    "--max-batch-size",
    type=click.IntRange(min=0),
    default=None,
    help="0: no batching (default: 8 when every input and output has its batch on axis 0, else 0).",
)
@click.option("--preferred-batch-sizes", default="", metavar="N[,N...]", help="dynamic_batching preferred sizes.")
@click.option("--max-queue-delay-us", type=click.IntRange(min=0), default=1000, show_default=True)
@click.option("--instances", type=click.IntRange(min=1), default=1, show_default=True, help="instance_group count.")
@click.option("--kind", type=click.Choice(["gpu", "cpu"]), default="gpu", show_default=True)
@click.option("--engine", type=click.Path(path_type=Path), default=None, help="A TensorRT engine from edgerun's cache.")
@click.option("--force", is_flag=True, help="Replace a model folder that exists.")
@input_roles_option
@click.option("--no-run", is_flag=True, help="Use declared output shapes: do not run the model to observe them.")
def triton_cmd(
    model: str,
    repository: Path,
    name: str | None,
    max_batch_size: int | None,
    preferred_batch_sizes: str,
    max_queue_delay_us: int,
    instances: int,
    kind: str,
    engine: Path | None,
    force: bool,
    input_roles: tuple[str, ...],
    no_run: bool,
) -> None:
    """Write REPOSITORY/<name>/config.pbtxt and 1/model.onnx (or model.plan with --engine)."""
    from edgerun.bench.sweep import parse_values
    from edgerun.export.triton import export_triton

    preferred = (
        parse_values(preferred_batch_sizes, "preferred-batch-sizes", int, minimum=1) if preferred_batch_sizes else []
    )
    result = export_triton(
        model, repository, name=name, max_batch_size=max_batch_size, preferred_batch_sizes=preferred,
        max_queue_delay_us=max_queue_delay_us, instances=instances, kind=kind, engine=engine, force=force,
        inputs=roles_for(input_roles), observe=not no_run,
    )  # fmt: skip
    trt = f", TensorRT {result.tensorrt_version}" if result.tensorrt_version else ""
    out.print(f"wrote {escape(str(result.folder))} ({result.platform}{trt})")
    for note in result.notes:
        out.print(f"note: {escape(note)}", soft_wrap=True)
    out.print(escape(result.config), end="")
