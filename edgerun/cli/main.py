"""``edgerun info | run | bench | quantize | convert | compare | tune | debug``: a thin command line.

Each command is the same library calls an app makes. Errors edgerun raises on purpose print
one line and exit 1; usage errors exit 2; a bench that misses its deadline with
``--fail-on-miss``, or a comparison that breaks its thresholds, exits 3; Ctrl-C exits 130 (a
bench writes its partial report first). ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from edgerun import __version__
from edgerun.cli.bench import bench_cmd
from edgerun.cli.common import (
    CONTEXT,
    INTERRUPTED_EXIT,
    backend_options,
    emit_json,
    err,
    input_roles_option,
    options_for,
    out,
    roles_for,
)
from edgerun.cli.debug import debug_group
from edgerun.cli.export import export_cmd
from edgerun.cli.precision import compare_cmd, convert_cmd, quantize_cmd, tune_cmd
from edgerun.cli.report import report_cmd
from edgerun.cli.trt import build_cmd, cache_cmd, selftest_cmd
from edgerun.errors import EdgerunError, ThresholdError


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="edgerun", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", is_flag=True, help="Log what edgerun decides.")
@click.option("--debug", is_flag=True, help="Debug logging and full tracebacks on errors.")
def cli(verbose: bool, debug: bool) -> None:
    """Run distilled ONNX models in real time on edge devices: inspect, run and benchmark."""
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="edgerun: %(levelname)s: %(message)s", stream=sys.stderr)
    logging.getLogger("edgerun").setLevel(level)


@cli.command()
@click.argument("model", required=False)
@backend_options
@input_roles_option
@click.option("--shape", multiple=True, metavar="NAME=1x3x224x224", help="Size of a free symbol or input's shape.")
@click.option("--no-run", is_flag=True, help="Do not run the model (on CPU) to observe its output shapes.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def info(
    model: str | None,
    device: str,
    backend: str,
    precision: str,
    threads: int | None,
    input_roles: tuple[str, ...],
    shape: tuple[str, ...],
    no_run: bool,
    as_json: bool,
) -> None:
    """Show the device profile, backends and versions; with MODEL (.onnx file or bundled name), its specs,
    input roles, observed output shapes and plan."""
    from edgerun import models
    from edgerun.cli.render import render_device, render_model
    from edgerun.info import device_report, model_report
    from edgerun.runtime.device import current_device
    from edgerun.specs import parse_shape_override

    profile = current_device()
    report: dict[str, Any] = device_report(profile)
    report["bundled_models"] = {name: models.card(name).title for name in models.names()}
    report["default_model"] = models.DEFAULT
    if model is not None:
        report["model"] = model_report(
            model, profile, device=device, backend=backend, precision=precision, options=options_for(threads),
            inputs=roles_for(input_roles), shapes=dict(parse_shape_override(s) for s in shape), observe=not no_run,
        )  # fmt: skip
    if as_json:
        emit_json(report)
        return
    render_device(out, report)
    if model is None:
        out.print(f"bundled models: {', '.join(report['bundled_models'])} (default: {models.DEFAULT})")
    else:
        render_model(out, report["model"])


@cli.command()
@click.argument("model")
@click.option(
    "-i",
    "--input",
    "--data",
    "inputs",
    multiple=True,
    required=True,
    metavar="[NAME=]FILE",
    help=".npy/.npz arrays (an .npz holds one array per input; constants such as a sample rate once), or images "
    "(preprocessed as the model card or --preprocess says). Repeat for more inputs or more images.",
)
@click.option(
    "--preprocess",
    type=click.Path(path_type=Path),
    default=None,
    help="JSON preprocessing spec for image inputs.",
)
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True, help="Values shown per sample.")
@backend_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def run(
    model: str,
    inputs: tuple[str, ...],
    preprocess: Path | None,
    top: int,
    device: str,
    backend: str,
    precision: str,
    threads: int | None,
    as_json: bool,
) -> None:
    """Run MODEL (.onnx file or bundled name) once and print output shapes and top values."""
    from edgerun.cli.render import render_plan, render_run
    from edgerun.data.files import feeds_from_files, parse_preprocess, summarize_outputs
    from edgerun.loading import load
    from edgerun.runtime.plan import as_precision

    with load(
        model, device=device, backend=backend, precision=as_precision(precision), **options_for(threads)
    ) as session:
        spec = parse_preprocess(preprocess, session.card.preprocessing if session.card else None)
        feeds = feeds_from_files(session.inputs, list(inputs), spec)
        outputs = session.run(feeds)
        labels = session.card.labels if session.card else []
        report: dict[str, Any] = {
            "model": str(session.model.path),
            "backend": session.backend,
            "plan": session.plan.to_dict(),
            "inputs": {name: list(array.shape) for name, array in feeds.items()},
            "outputs": summarize_outputs(outputs, top, labels, session.roles.output_axes),
        }
    if as_json:
        emit_json(report)
        return
    render_plan(out, report["plan"])
    render_run(out, report)


for _command in (
    bench_cmd,
    report_cmd,
    export_cmd,
    quantize_cmd,
    convert_cmd,
    compare_cmd,
    tune_cmd,
    build_cmd,
    cache_cmd,
    selftest_cmd,
    debug_group,
):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: one-line errors, tracebacks only with ``--debug``."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        result = cli.main(args=args, prog_name="edgerun", standalone_mode=False)
    except SystemExit as exc:
        return int(exc.code or 0)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            err.print("interrupted")
            return INTERRUPTED_EXIT
        err.print("aborted")
        return 1
    except click.ClickException as exc:
        exc.show()
        return int(exc.exit_code)
    except ThresholdError as exc:
        err.print(f"[bold red]threshold violated:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 3
    except EdgerunError as exc:
        if debug:
            raise
        err.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        err.print("interrupted")
        return INTERRUPTED_EXIT
    except Exception as exc:
        if debug:
            raise
        err.print(
            f"[bold red]internal error:[/bold red] {type(exc).__name__}: {exc} (rerun with --debug for a traceback)",
            highlight=False,
            soft_wrap=True,
        )
        return 1
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
