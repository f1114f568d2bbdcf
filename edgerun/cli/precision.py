"""``edgerun quantize | convert | compare | tune``: precision steps and what they cost and buy.

Every FP16/INT8 model these commands write is first checked against FP32 by the precision guard
(`edgerun.precision.guard`), mixed (nodes kept in FP32) when it misses its quality budget, and
refused (exit 3, nothing written) when no mix meets it; ``--no-check`` skips the check.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from edgerun.cli.common import as_choice, emit_json, err, out, threads_option
from edgerun.errors import ThresholdError
from edgerun.precision.quantize import METHODS, MODES, TARGETS, QuantizeOptions

if TYPE_CHECKING:
    from edgerun.precision.calibration import CalibrationData
    from edgerun.precision.checks import CheckSamples
    from edgerun.precision.guard import GuardResult, QualityCheckError
    from edgerun.quality import QualityBudget
    from edgerun.runtime.backends.base import QdqLayout
    from edgerun.runtime.modelfile import ModelFile

_DATA_HELP = (
    "Image folder (labels.csv with file,label rows is used if present), image, .npy, or .npz "
    "(one array per input name, or 'images'; optional 'labels')."
)
_WIDE_HELP = "Show every column (default: the key ones, to fit 80 columns)."
_CHECK_DATA_HELP = (
    "Check samples the converted model is compared with FP32 on (default: the model card's check set, data held "
    "apart from calibration, else seeded random inputs, which prove little). " + _DATA_HELP
)
TARGET_CHOICES = ("auto", *TARGETS)
_TARGET_HELP = (
    "INT8 Q/DQ layout. auto: the layout of the backend this device plans (or the one --device/--backend name); "
    "tensorrt: signed activations, zero points 0 (TensorRT; portable); cpu: the layout ONNX Runtime's CPU kernels "
    "fuse (faster there)."
)
_BUDGET_FLAGS = {
    "min_cosine": ("--min-cosine", "Least mean cosine similarity of every output to FP32."),
    "min_slice_cosine": ("--min-slice-cosine", "Least mean cosine of every slice of an output's feature axis."),
    "min_top1": ("--min-top1", "Least top-1 agreement with FP32 (class outputs)."),
    "min_mask_iou": ("--min-mask-iou", "Least mask IoU with FP32 (probability maps)."),
    "min_detections_kept": ("--min-detections-kept", "Least share of FP32 detections kept (detectors)."),
    "max_detections_spurious": (
        "--max-detections-spurious",
        "Largest share of detections FP32 does not have (detectors).",
    ),
}


def budget_options(command: Any) -> Any:
    """The quality budget's per-metric flags (each in [0, 1]; default: the precision's own budget)."""
    for field, (flag, text) in reversed(_BUDGET_FLAGS.items()):
        command = click.option(
            flag, field, type=click.FloatRange(0, 1), default=None, help=text + " Default: the precision's budget."
        )(command)
    return command


def check_options(command: Any) -> Any:
    """``--data`` (check samples) and ``--no-check`` for commands that write a converted model."""
    command = click.option(
        "--no-check", is_flag=True, help="Skip the quality check against FP32 (and the automatic mixed precision)."
    )(command)
    return click.option("--data", "data", default=None, help=_CHECK_DATA_HELP)(command)


def budget_from_flags(precision: str, values: Mapping[str, Any]) -> QualityBudget:
    """The default budget of ``precision`` with the flags given (the others are None) overriding it."""
    from edgerun.precision.artifacts import resolve_budget

    return resolve_budget(precision, {k: values[k] for k in _BUDGET_FLAGS if values.get(k) is not None})


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
    from edgerun.loading import model_roles
    from edgerun.runtime.synthetic import on_batch_axes, random_feeds

    overrides: dict[str, Any] = dict(parse_shape_override(s) for s in shapes)
    count = samples or 64
    roles = model_roles(model_file, card, None)  # batch axes (state [2, batch, 128]), vocabularies, constants
    axes = roles.batch_axes
    if card is not None:
        overrides = on_batch_axes(card.input_shapes, count, axes) | overrides
    feeds = random_feeds(model_file.inputs, count, overrides or None, seed=seed, roles=roles)
    return SampleSet(feeds, None, f"{count} seeded random samples (seed {seed})", {n: axes.get(n, 0) for n in feeds})


# --- the precision guard, as the commands use it -------------------------------------------------


def resolve_target(model_file: ModelFile, target: str, device: str, backend: str) -> tuple[QdqLayout, str]:
    """The Q/DQ layout to quantize for, and a line saying where it comes from.

    ``auto``: the layout of the backend `load()` would plan for the INT8 model on this device (or on the
    ``device``/``backend`` named), as `edgerun.loading` shapes its own INT8 artifacts.
    """
    if target != "auto":
        layout = as_choice(target, TARGETS, "quantization target")
        return layout, f"target {layout}: as given (--target)"
    from edgerun.errors import BackendUnavailableError
    from edgerun.registry import int8_layout
    from edgerun.runtime.device import current_device

    try:
        layout, plan = int8_layout(model_file, current_device(), device=device, backend=backend)
    except BackendUnavailableError as exc:
        raise BackendUnavailableError(
            f"--target auto plans for this device: {exc}; to quantize for another device give "
            f"--target {' or --target '.join(TARGETS)}"
        ) from exc
    named = [f"--{flag} {value}" for flag, value in (("device", device), ("backend", backend)) if value != "auto"]
    where = f"the plan for {' '.join(named)}" if named else "this device's plan"
    return layout, f"target {layout}: the Q/DQ layout of {plan.backend} on {plan.device} ({where})"


def declared_outputs(card: Any) -> dict[str, Any] | None:
    """What a model card declares about its outputs (detector layouts), for the quality metrics."""
    return getattr(card, "outputs", None) or None


def check_samples_from(
    data: str | None,
    model_file: ModelFile,
    card: Any,
    spec: Any,
    *,
    samples: int | None = None,
    seed: int = 0,
    shapes: tuple[str, ...] = (),
    calibration: CalibrationData | None = None,
) -> tuple[CheckSamples, CalibrationData | None]:
    """Check samples, and the calibration left for INT8 (a share held apart when it is the only data).

    In order: ``--data``, the card's check set, a share of ``calibration`` held apart from it (the
    calibration itself when it is too small to split), seeded random inputs (``--shape`` for free axes).
    """
    from edgerun.loading import model_roles
    from edgerun.precision.checks import RANDOM_COUNT, CheckSamples, check_samples, hold_out, random_samples

    if data is not None:
        loaded = _load_data(data, model_file, card, spec, samples, seed, None, ())
        return CheckSamples(loaded.inputs, loaded.source, False, dict(loaded.batch_axes)), calibration
    if card is not None and card.check:
        return check_samples(model_file, card, None, samples=samples, seed=seed), calibration
    if calibration is not None:
        kept, held = hold_out(calibration)
        if held is not None:
            return held, kept
        itself = f"{calibration.source} (the calibration data itself: too few samples to hold some apart)"
        return CheckSamples(dict(calibration.samples), itself, False, dict(calibration.batch_axes)), calibration
    roles = model_roles(model_file, card, None)
    if not shapes:
        return random_samples(model_file, card, seed=seed, roles=roles), calibration
    from edgerun.runtime.synthetic import on_batch_axes, random_feeds
    from edgerun.specs import parse_shape_override

    # the batch on each input's own axis; a symbol (--shape sequence=128) keeps its size
    overrides = on_batch_axes(dict(map(parse_shape_override, shapes)), RANDOM_COUNT, roles.batch_axes)
    feeds = random_feeds(model_file.inputs, RANDOM_COUNT, overrides, seed=seed, roles=roles)
    return CheckSamples(feeds, f"seed {seed}", random=True, batch_axes=roles.batch_axes), calibration


def print_check(result: GuardResult | Mapping[str, Any], note: str | None) -> None:
    """The guard's one-line summary, the nodes it kept in FP32 (and why), and the random-inputs note."""
    report = result if isinstance(result, Mapping) else result.to_dict()
    out.print(escape(f"  check: {report['summary']}"), highlight=False, soft_wrap=True)
    for kept in report.get("kept", []):
        out.print(
            escape(f"    kept in FP32: {kept['name']} ({kept['op_type']}): {kept['why']}"),
            highlight=False,
            soft_wrap=True,
        )
    if note:
        out.print(f"  [yellow]note:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)


def refuse(exc: QualityCheckError, note: str | None, as_json: bool, what: str) -> ThresholdError:
    """The report of a check no mix passed (printed or as JSON), and the error that exits 3: nothing was written."""
    if as_json:
        emit_json({"written": False, "error": str(exc), "check": exc.report, "note": note})
    else:
        if exc.report:
            print_check(exc.report, note)
        out.print(
            escape(f"  {what} not written: no mix of precisions meets the quality budget"),
            highlight=False,
            soft_wrap=True,
        )
    return ThresholdError(str(exc))


# --- quantize / convert ----------------------------------------------------------------------------


@click.command("quantize")
@click.argument("model")
@click.option("--calib", "calib", required=False, help="Calibration data. " + _DATA_HELP)
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Where to write the model.")
@click.option("--method", type=click.Choice(METHODS), default=QuantizeOptions.method, show_default=True)
@click.option("--per-channel", is_flag=True, help="Per-channel weight scales (usually more accurate).")
@click.option("--exclude", multiple=True, metavar="NODE_OR_OP", help="Keep a node (or every node of a type) float.")
@click.option("--keep-head-float", is_flag=True, help="Keep the last Conv/MatMul/Gemm before each output float.")
@click.option("--target", type=click.Choice(TARGET_CHOICES), default="auto", show_default=True, help=_TARGET_HELP)
@click.option("--device", default="auto", show_default=True, help="Plan --target auto for this device.")
@click.option("--backend", default="auto", show_default=True, help="Plan --target auto for this backend.")
@click.option("--mode", type=click.Choice(MODES), default=QuantizeOptions.mode, show_default=True)
@click.option("--force", is_flag=True, help="Allow dynamic INT8 on convolutional models (measured slower).")
@click.option("--samples", type=click.IntRange(min=1), default=None, help="Calibration samples to draw (default all).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sample draw.")
@click.option("--preprocess", type=click.Path(path_type=Path), default=None, help="JSON preprocessing spec.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="Calibration range cache folder.")
@check_options
@budget_options
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
    device: str,
    backend: str,
    mode: str,
    force: bool,
    samples: int | None,
    seed: int,
    preprocess: Path | None,
    cache_dir: Path | None,
    data: str | None,
    no_check: bool,
    as_json: bool,
    **budget: float | None,
) -> None:
    """Quantize MODEL to INT8 Q/DQ ONNX, calibrated on --calib data and checked against FP32."""

    from edgerun.errors import ConversionError, UnsupportedPrecisionError
    from edgerun.precision.calibration import CalibrationData
    from edgerun.precision.guard import QualityCheckError, guard_int8
    from edgerun.precision.quantize import quantize

    model_file, card, spec = _model_and_spec(model, preprocess)
    layout, target_line = resolve_target(model_file, target, device, backend)
    if not as_json:
        out.print(escape(target_line), highlight=False, soft_wrap=True)
    options = QuantizeOptions(
        method=as_choice(method, METHODS, "calibration method"),
        per_channel=per_channel,
        exclude=exclude,
        mode=as_choice(mode, MODES, "quantization mode"),
        force=force,
        target=layout,
        keep_head_float=keep_head_float,
    )
    calibration = None
    if mode == "static":
        if calib is None and card is not None and card.calibration:  # a bundled model's own calibration set
            calib = str(card.folder / card.calibration["source"])
            samples = samples or card.calibration.get("samples")
        if calib is None:
            raise ConversionError(f"{model_file.path}: static INT8 needs calibration data: --calib SRC")
        loaded = _load_data(calib, model_file, card, spec, samples, seed, None, ())
        calibration = CalibrationData(loaded.inputs, source=loaded.source, batch_axes=loaded.batch_axes)
    check: GuardResult | None = None
    note: str | None = None
    skipped: str | None = "skipped (--no-check)" if no_check else None
    if not no_check:
        budget_used = budget_from_flags("int8", budget)
        samples_used, calibration = check_samples_from(data, model_file, card, spec, seed=seed, calibration=calibration)
        note = samples_used.note
        # dynamic INT8 reads no calibration; the guard's signature wants some
        guard_calibration = calibration or CalibrationData(
            samples_used.inputs, source=samples_used.source, batch_axes=samples_used.batch_axes or None
        )
        try:
            with err.status("checking the INT8 model against FP32"):
                check = guard_int8(
                    model_file, output, guard_calibration, samples_used, options, budget_used,
                    declared=declared_outputs(card), cache=cache_dir,
                )  # fmt: skip
        except QualityCheckError as exc:
            raise refuse(exc, note, as_json, str(output)) from exc
        except UnsupportedPrecisionError:  # nothing to quantize: the model stays FP32, quantize() says so
            skipped = "skipped: nothing was quantized"
    # the guard wrote the model it checked; without a check (or with nothing to quantize) quantize writes it
    result = check.quantization if check is not None and check.quantization is not None else (
        quantize(model_file.path, output, calibration, options, cache=cache_dir)
    )  # fmt: skip
    if as_json:
        emit_json(
            {
                **result.__dict__,
                "output": str(result.output),
                "target": layout,
                "target_reason": target_line,
                "check": None if check is None else check.to_dict(),
                "check_skipped": skipped,
                "note": note,
            }
        )
        return
    ops = ", ".join(f"{n} {op}" for op, n in sorted(result.quantized.items())) or "none"
    left = ", ".join(f"{n} {op}" for op, n in sorted(result.float_ops.items())) or "none"
    out.print(escape(f"wrote {result.output} ({mode} INT8, target {layout}, {result.seconds:.1f} s)"), soft_wrap=True)
    out.print(f"  quantized: {ops}; left in float: {left}; {result.qdq_nodes} Q/DQ nodes", soft_wrap=True)
    if calibration is not None:
        cache = "reused" if result.calibration_cache_hit else "computed and cached"
        source = f"{calibration.count} samples of {calibration.source}"
        out.print(escape(f"  calibration: {source}, {method} ranges {cache}"), soft_wrap=True)
    if check is not None:
        print_check(check, note)
    else:
        out.print(f"  check: {skipped}")
    for warning in result.warnings:
        err.print(f"[bold red]warning:[/bold red] {escape(warning)}")


@click.command("convert")
@click.argument("model")
@click.option("--fp16", "fp16", is_flag=True, required=True, help="Convert weights and arithmetic to FP16.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Where to write the model.")
@click.option("--block", multiple=True, metavar="OP", help="Also keep this operator type in FP32.")
@click.option("--shape", multiple=True, metavar="NAME=1x3x224x224", help="Input shape of random check samples.")
@click.option("--preprocess", type=click.Path(path_type=Path), default=None, help="JSON preprocessing spec.")
@check_options
@budget_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def convert_cmd(
    model: str,
    fp16: bool,
    output: Path,
    block: tuple[str, ...],
    shape: tuple[str, ...],
    preprocess: Path | None,
    data: str | None,
    no_check: bool,
    as_json: bool,
    **budget: float | None,
) -> None:
    """Convert MODEL to FP16 weights (inputs and outputs stay FP32), checked against FP32 and mixed if needed."""
    from edgerun.precision.convert import SENSITIVE_OPS

    if no_check:
        _convert_unchecked(model, output, (*SENSITIVE_OPS, *block), shape, as_json)
        return
    from edgerun.precision.guard import QualityCheckError, guard_fp16

    model_file, card, spec = _model_and_spec(model, preprocess)
    if model_file.precision != "fp32":  # the guard would compare the model with itself
        from edgerun.errors import ConversionError

        raise ConversionError(
            f"{model_file.path}: FP16 conversion starts from an fp32 model, this one is {model_file.precision}"
        )
    samples_used, _ = check_samples_from(data, model_file, card, spec, shapes=shape)
    try:
        with err.status("converting to FP16 and checking it against FP32"):
            check = guard_fp16(
                model_file, output, samples_used, budget_from_flags("fp16", budget), block=(*SENSITIVE_OPS, *block),
                declared=declared_outputs(card),
            )  # fmt: skip
    except QualityCheckError as exc:
        raise refuse(exc, samples_used.note, as_json, str(output)) from exc
    if as_json:
        emit_json({"output": str(output), "check": check.to_dict(), "note": samples_used.note})
        return
    mixed = f", {len(check.kept)} of {check.total_nodes} nodes kept in FP32" if check.kept else ""
    out.print(
        escape(f"wrote {output} (FP16 weights and arithmetic, FP32 inputs/outputs{mixed})"),
        highlight=False,
        soft_wrap=True,
    )
    print_check(check, samples_used.note)


def _convert_unchecked(model: str, output: Path, block: tuple[str, ...], shape: tuple[str, ...], as_json: bool) -> None:
    """``convert --fp16 --no-check``: the plain conversion, validated by one run on random inputs."""
    from edgerun import models
    from edgerun.precision.convert import convert_fp16
    from edgerun.specs import parse_shape_override

    path, card = models.resolve(model)
    shapes: dict[str, Any] = dict(card.input_shapes) if card else {}
    shapes |= dict(parse_shape_override(s) for s in shape)
    result = convert_fp16(path, output, block=block, shapes=shapes or None)
    if as_json:
        emit_json({**result.__dict__, "output": str(result.output), "check": None})
        return
    out.print(escape(f"wrote {result.output} ({result.fp16_tensors} tensors in FP16, {result.seconds:.1f} s)"))
    if result.max_abs_error is None:
        out.print("  loaded, not run: give --shape for inputs with free dimensions to compare it with FP32")
    else:
        out.print(f"  max abs output difference to FP32 on seeded random inputs: {result.max_abs_error:.3g}")
    if result.clamped_values:
        out.print(f"  {result.clamped_values} weight values were outside FP16's range and were clamped")
    out.print("  check: skipped (--no-check): the model was not compared with FP32 on real data")


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
@click.option(
    "--quality-budget",
    type=click.Choice(("fp16", "int8")),
    default=None,
    help="Fail (exit 3) when a candidate breaks this precision's default quality budget (every output and "
    "feature slice, top-1, mask IoU, detections kept): the budget the precision guard holds conversions to.",
)
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
    quality_budget: str | None,
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
            declared=declared_outputs(card),
            progress=lambda text: status.update(text),
            batch_axes=loaded.batch_axes,
        )
    title = f"compare: {result.samples} samples from {result.source}"
    _render_table(title, result.cells(reference="ref"), result.key_columns(), wide)
    if json_path is not None:
        emit_json(result.to_dict(), json_path)
    if markdown_path is not None:
        markdown_path.write_text(result.markdown())
    budget = None if quality_budget is None else budget_from_flags(quality_budget, {})
    problems = result.violations(max_accuracy_drop=max_accuracy_drop, min_cosine=min_cosine, budget=budget)
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
@click.option("--target", type=click.Choice(TARGET_CHOICES), default="auto", show_default=True, help=_TARGET_HELP)
@click.option("--device", default="auto", show_default=True, help="Plan --target auto for this device.")
@click.option("--backend", default="auto", show_default=True, help="Plan --target auto for this backend.")
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
    device: str,
    backend: str,
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
    layout, target_line = resolve_target(model_file, target, device, backend)
    out.print(escape(target_line), highlight=False, soft_wrap=True)
    calibration = _load_data(calib, model_file, card, spec, calib_samples, seed, None, ())
    evaluation = _load_data(data, model_file, card, spec, samples, seed, labels, shape)
    with err.status("tuning") as status:
        result = tune(
            model_file.path,
            output,
            calibration=CalibrationData(
                calibration.inputs, source=calibration.source, batch_axes=calibration.batch_axes
            ),
            inputs=evaluation.inputs,
            labels=evaluation.labels,
            max_accuracy_drop=max_accuracy_drop,
            variants=default_variants(layout),
            source=evaluation.source,
            threads=threads,
            iterations=iterations,
            progress=lambda text: status.update(text),
        )
    compared = result.comparison
    names = [row.label for row in compared.rows]
    title = f"tune: {compared.samples} samples from {compared.source}"
    cells = result.cells(reference="ref")
    columns = result.key_columns()
    columns += [c for c in ("fp32 nodes",) if c in cells[0] and c not in columns]  # what the guard kept in FP32
    _render_table(title, cells, columns, wide, bold=names.index(result.chosen))
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
