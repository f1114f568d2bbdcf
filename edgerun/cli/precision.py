"""``edgerun quantize | convert | compare | tune``: precision steps and what they cost and buy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from edgerun.cli.common import as_choice, emit_json, err, out, threads_option
from edgerun.compare.tune import DEFAULT_TARGET
from edgerun.precision.quantize import METHODS, MODES, TARGETS, QuantizeOptions

_DATA_HELP = (
    "Image folder (labels.csv with file,label rows is used if present), image, .npy, or .npz "
    "(one array per input name, or 'images'; optional 'labels')."
)
_WIDE_HELP = "Show every column (default: the key ones, to fit 80 columns)."


def _model_and_spec(model: str, preprocess: Path | None) -> tuple[Any, Any, Any]:
    """ModelFile, its card (bundled models) and the preprocessing spec for image data."""
    from edgerun import models
    from edgerun.data.files import parse_preprocess
    from edgerun.runtime.modelfile import ModelFile

    path, card = models.resolve(model)
    model_file = ModelFile.open(path)
    spec = parse_preprocess(preprocess, card.preprocessing if card else None)
    if spec is not None:
        spec.check_fits(model_file.inputs)
    return model_file, card, spec


def _progress_bar(label: str) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    progress = Progress(
        TextColumn(f"[bold]{label}[/bold]"), BarColumn(), MofNCompleteColumn(), console=err, transient=True,
        disable=not err.is_terminal,
    )  # fmt: skip
    return progress


def _load_data(
    source: str | None,
    model_file: Any,
    card: Any,
    spec: Any,
    samples: int | None,
    seed: int,
    labels: Path | None,
    shapes: tuple[str, ...],
) -> Any:
    """Samples from --data, or seeded random inputs shaped by the specs when there is none."""
    from edgerun.data.samples import SampleSet, load_samples
    from edgerun.errors import ConfigError
    from edgerun.specs import parse_shape_override

    if source is not None:
        with _progress_bar("reading data") as progress:
            task = progress.add_task("data", total=None)
            return load_samples(
                source,
                model_file.inputs,
                preprocess=spec,
                samples=samples,
                seed=seed,
                labels=labels,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
    if labels is not None:
        raise ConfigError("--labels needs --data: the labels belong to data samples")
    from edgerun.data.synthetic import random_feeds

    overrides: dict[str, Any] = dict(parse_shape_override(s) for s in shapes)
    count = samples or 64
    if card is not None:
        overrides = {name: [count, *dims[1:]] for name, dims in card.input_shapes.items()} | overrides
    feeds = random_feeds(model_file.inputs, count, overrides or None, seed=seed)
    return SampleSet(feeds, None, f"{count} seeded random samples (seed {seed})")


@click.command("quantize")
@click.argument("model")
@click.option("--calib", "calib", required=False, help="Calibration data. " + _DATA_HELP)
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Where to write the model.")
@click.option("--method", type=click.Choice(METHODS), default=QuantizeOptions.method, show_default=True)
@click.option("--per-channel", is_flag=True, help="Per-channel weight scales (usually more accurate).")
@click.option("--exclude", multiple=True, metavar="NODE_OR_OP", help="Keep a node (or every node of a type) float.")
@click.option("--keep-head-float", is_flag=True, help="Keep the last Conv/MatMul/Gemm before each output float.")
@click.option(
    "--target",
    type=click.Choice(TARGETS),
    default=QuantizeOptions.target,
    show_default=True,
    help="tensorrt: signed activations, zero points 0 (TensorRT; portable). cpu: the layout ONNX Runtime's CPU "
    "kernels fuse (faster there).",
)
@click.option("--mode", type=click.Choice(MODES), default=QuantizeOptions.mode, show_default=True)
@click.option("--force", is_flag=True, help="Allow dynamic INT8 on convolutional models (measured slower).")
@click.option("--samples", type=click.IntRange(min=1), default=None, help="Calibration samples to draw (default all).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sample draw.")
@click.option("--preprocess", type=click.Path(path_type=Path), default=None, help="JSON preprocessing spec.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="Calibration range cache folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def quantize_cmd(
    model: str,
    calib: str | None,
    output: Path,
    method: str,
    per_channel: bool,
    exclude: tuple[str, ...],
    keep_head_float: bool,
    target: str,
    mode: str,
    force: bool,
    samples: int | None,
    seed: int,
    preprocess: Path | None,
    cache_dir: Path | None,
    as_json: bool,
) -> None:
    """Quantize MODEL to INT8 Q/DQ ONNX, calibrated on --calib data."""
    from edgerun.errors import ConversionError
    from edgerun.precision.calibration import CalibrationData
    from edgerun.precision.quantize import quantize

    options = QuantizeOptions(
        method=as_choice(method, METHODS, "calibration method"),
        per_channel=per_channel,
        exclude=exclude,
        mode=as_choice(mode, MODES, "quantization mode"),
        force=force,
        target=as_choice(target, TARGETS, "quantization target"),
        keep_head_float=keep_head_float,
    )
    model_file, card, spec = _model_and_spec(model, preprocess)
    data = None
    if mode == "static":
        if calib is None:
            raise ConversionError(f"{model_file.path}: static INT8 needs calibration data: --calib SRC")
        loaded = _load_data(calib, model_file, card, spec, samples, seed, None, ())
        data = CalibrationData(loaded.inputs, source=loaded.source)
    result = quantize(model_file.path, output, data, options, cache=cache_dir)
    if as_json:
        emit_json({**result.__dict__, "output": str(result.output)})
        return
    ops = ", ".join(f"{n} {op}" for op, n in sorted(result.quantized.items())) or "none"
    left = ", ".join(f"{n} {op}" for op, n in sorted(result.float_ops.items())) or "none"
    out.print(escape(f"wrote {result.output} ({mode} INT8, target {target}, {result.seconds:.1f} s)"))
    out.print(f"  quantized: {ops}; left in float: {left}; {result.qdq_nodes} Q/DQ nodes")
    if data is not None:
        cache = "reused" if result.calibration_cache_hit else "computed and cached"
        out.print(escape(f"  calibration: {data.count} samples of {data.source}, {method} ranges {cache}"))
    for warning in result.warnings:
        err.print(f"[bold red]warning:[/bold red] {escape(warning)}")
    if target == "tensorrt":
        out.print("  tip: for ONNX Runtime on a CPU, --target cpu is the layout its kernels fuse (faster there)")


@click.command("convert")
@click.argument("model")
@click.option("--fp16", "fp16", is_flag=True, required=True, help="Convert weights and arithmetic to FP16.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Where to write the model.")
@click.option("--block", multiple=True, metavar="OP", help="Also keep this operator type in FP32.")
@click.option("--shape", multiple=True, metavar="NAME=1x3x224x224", help="Input shape for the validation run.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def convert_cmd(
    model: str, fp16: bool, output: Path, block: tuple[str, ...], shape: tuple[str, ...], as_json: bool
) -> None:
    """Convert MODEL to FP16 weights (inputs and outputs stay FP32), checked by running it."""
    from edgerun import models
    from edgerun.precision.convert import SENSITIVE_OPS, convert_fp16
    from edgerun.specs import parse_shape_override

    path, card = models.resolve(model)
    shapes: dict[str, Any] = dict(card.input_shapes) if card else {}
    shapes |= dict(parse_shape_override(s) for s in shape)
    result = convert_fp16(path, output, block=(*SENSITIVE_OPS, *block), shapes=shapes or None)
    if as_json:
        emit_json({**result.__dict__, "output": str(result.output)})
        return
    out.print(escape(f"wrote {result.output} ({result.fp16_tensors} tensors in FP16, {result.seconds:.1f} s)"))
    if result.max_abs_error is None:
        out.print("  loaded, not run: give --shape for inputs with free dimensions to compare it with FP32")
    else:
        out.print(f"  max abs output difference to FP32 on seeded random inputs: {result.max_abs_error:.3g}")
    if result.clamped_values:
        out.print(f"  {result.clamped_values} weight values were outside FP16's range and were clamped")


@click.command("compare")
@click.argument("models", nargs=-1, required=True)
@click.option("--data", "data", default=None, help="Inputs (default: seeded random). " + _DATA_HELP)
@click.option("--labels", type=click.Path(path_type=Path), default=None, help=".npy, .csv (file,label) or .txt labels.")
@click.option("--samples", type=click.IntRange(min=1), default=None, help="Samples to draw (default all; random: 64).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--preprocess", type=click.Path(path_type=Path), default=None, help="JSON preprocessing spec.")
@click.option("--shape", multiple=True, metavar="NAME=1x3x224x224", help="Input shape for random data.")
@click.option("--iterations", type=click.IntRange(min=1), default=100, show_default=True, help="Timed calls per model.")
@click.option("--latency-batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--mask-threshold", type=float, default=None, help="Report mask IoU of outputs thresholded here.")
@click.option("--max-accuracy-drop", type=float, default=None, help="Fail (exit 3) above this many points.")
@click.option("--min-cosine", type=float, default=None, help="Fail (exit 3) below this mean cosine similarity.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write JSON here.")
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path), default=None, help="Write Markdown here.")
@click.option("--wide", is_flag=True, help=_WIDE_HELP)
@threads_option
def compare_cmd(
    models: tuple[str, ...],
    data: str | None,
    labels: Path | None,
    samples: int | None,
    seed: int,
    preprocess: Path | None,
    shape: tuple[str, ...],
    iterations: int,
    latency_batch: int,
    mask_threshold: float | None,
    max_accuracy_drop: float | None,
    min_cosine: float | None,
    json_path: Path | None,
    markdown_path: Path | None,
    wide: bool,
    threads: int | None,
) -> None:
    """Compare MODELS (first = reference; NAME@int8 / NAME@fp16 for converted ones) on the same inputs."""
    from edgerun.compare.comparison import compare, split_precision
    from edgerun.errors import ThresholdError

    if len(models) < 2:
        raise click.UsageError("give a reference model and at least one candidate")
    reference, _ = split_precision(models[0])
    model_file, card, spec = _model_and_spec(reference, preprocess)
    loaded = _load_data(data, model_file, card, spec, samples, seed, labels, shape)
    with err.status("comparing") as status:
        result = compare(
            list(models),
            loaded.inputs,
            labels=loaded.labels,
            source=loaded.source,
            iterations=iterations,
            latency_batch=latency_batch,
            threads=threads,
            mask_threshold=mask_threshold,
            progress=lambda text: status.update(text),
        )
    title = f"compare: {result.samples} samples from {result.source}"
    _render_table(title, result.cells(reference="ref"), result.key_columns(), wide)
    if json_path is not None:
        emit_json(result.to_dict(), json_path)
    if markdown_path is not None:
        markdown_path.write_text(result.markdown())
    problems = result.violations(max_accuracy_drop=max_accuracy_drop, min_cosine=min_cosine)
    if problems:
        for problem in problems:
            err.print(f"[bold red]FAIL[/bold red] {escape(problem)}")
        raise ThresholdError("; ".join(problems))


def _render_table(
    title: str, rows: list[dict[str, str]], key_columns: list[str], wide: bool, bold: int | None = None
) -> None:
    """The key columns (all with ``--wide``), readable at any width, and a hint when some were left out."""
    from edgerun.cli.render import render_cells

    columns = list(rows[0]) if wide else key_columns
    render_cells(out, title, rows, columns, bold=bold)
    if len(columns) < len(rows[0]):
        out.print(f"key columns only: --wide shows all {len(rows[0])}", style="dim", highlight=False)


@click.command("tune")
@click.argument("model")
@click.option("--calib", required=True, help="Calibration data. " + _DATA_HELP)
@click.option("--data", "data", default=None, help="Evaluation data (default: seeded random). " + _DATA_HELP)
@click.option("--labels", type=click.Path(path_type=Path), default=None, help="Labels of --data.")
@click.option("--max-accuracy-drop", type=float, required=True, help="Quality budget in points.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Where to write the winner.")
@click.option(
    "--target",
    type=click.Choice(TARGETS),
    default=DEFAULT_TARGET,
    show_default=True,
    help="INT8 layout of the variants: cpu for ONNX Runtime on a CPU, tensorrt for TensorRT.",
)
@click.option("--samples", type=click.IntRange(min=1), default=None, help="Evaluation samples to draw.")
@click.option("--calib-samples", type=click.IntRange(min=1), default=None, help="Calibration samples to draw.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--preprocess", type=click.Path(path_type=Path), default=None, help="JSON preprocessing spec.")
@click.option("--shape", multiple=True, metavar="NAME=1x3x224x224", help="Input shape for random data.")
@click.option("--iterations", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write JSON here.")
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path), default=None, help="Write Markdown here.")
@click.option("--wide", is_flag=True, help=_WIDE_HELP)
@threads_option
def tune_cmd(
    model: str,
    calib: str,
    data: str | None,
    labels: Path | None,
    max_accuracy_drop: float,
    output: Path,
    target: str,
    samples: int | None,
    calib_samples: int | None,
    seed: int,
    preprocess: Path | None,
    shape: tuple[str, ...],
    iterations: int,
    json_path: Path | None,
    markdown_path: Path | None,
    wide: bool,
    threads: int | None,
) -> None:
    """Try FP32, FP16 and INT8 variants of MODEL here; write the fastest within the budget."""
    from edgerun.compare.tune import default_variants, tune
    from edgerun.precision.calibration import CalibrationData

    model_file, card, spec = _model_and_spec(model, preprocess)
    calibration = _load_data(calib, model_file, card, spec, calib_samples, seed, None, ())
    evaluation = _load_data(data, model_file, card, spec, samples, seed, labels, shape)
    with err.status("tuning") as status:
        result = tune(
            model_file.path,
            output,
            calibration=CalibrationData(calibration.inputs, source=calibration.source),
            inputs=evaluation.inputs,
            labels=evaluation.labels,
            max_accuracy_drop=max_accuracy_drop,
            variants=default_variants(as_choice(target, TARGETS, "quantization target")),
            source=evaluation.source,
            threads=threads,
            iterations=iterations,
            progress=lambda text: status.update(text),
        )
    compared = result.comparison
    names = [row.label for row in compared.rows]
    title = f"tune: {compared.samples} samples from {compared.source}"
    _render_table(title, result.cells(reference="ref"), result.key_columns(), wide, bold=names.index(result.chosen))
    for name, reason in result.skipped.items():
        err.print(f"[yellow]skipped[/yellow] {escape(name)}: {escape(reason)}")
    drop = result.drops[result.chosen]
    out.print(
        f"chosen: [bold]{result.chosen}[/bold] (quality drop {drop:.2f} points <= {max_accuracy_drop:g}; "
        f"{result.criterion}) -> {result.output}"
    )
    if json_path is not None:
        emit_json(result.to_dict(), json_path)
    if markdown_path is not None:
        markdown_path.write_text(result.comparison.markdown())
