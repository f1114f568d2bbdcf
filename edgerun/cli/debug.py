"""``edgerun debug precision``: why an FP16/INT8 model misses its quality budget, and the mix that meets it.

The same guard `load(..., precision=...)`, ``convert`` and ``quantize`` run (`edgerun.precision.guard`),
with everything it found shown: the culprit nodes and why (measured ranges or bisection), how many
nodes stay in FP32, quality before and after, each probe, and the time it took. ``--json`` for CI.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from edgerun.cli.common import CONTEXT, emit_json, err, out
from edgerun.cli.precision import (
    _DATA_HELP,
    _TARGET_HELP,
    TARGET_CHOICES,
    _load_data,
    _model_and_spec,
    budget_from_flags,
    budget_options,
    check_samples_from,
    declared_outputs,
    resolve_target,
)
from edgerun.errors import ThresholdError


@click.group("debug", context_settings=CONTEXT)
def debug_group() -> None:
    """Look inside what edgerun decided: why a converted model was mixed or refused."""


@debug_group.command("precision")
@click.argument("model")
@click.option("--fp16", "precision", flag_value="fp16", help="Check (and mix) the FP16 conversion.")
@click.option("--int8", "precision", flag_value="int8", help="Check (and mix) the INT8 quantization.")
@click.option(
    "--data",
    "data",
    default=None,
    help="Check samples (default: the model card's check set, data held apart from calibration, else seeded random "
    "inputs, which prove little). " + _DATA_HELP,
)
@click.option(
    "--calib",
    "calib",
    default=None,
    help="INT8 calibration data (default: the model card's). " + _DATA_HELP,
)
@click.option("--target", type=click.Choice(TARGET_CHOICES), default="auto", show_default=True, help=_TARGET_HELP)
@click.option("--device", default="auto", show_default=True, help="Plan --target auto for this device.")
@click.option("--backend", default="auto", show_default=True, help="Plan --target auto for this backend.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="Write the mixed model here.")
@click.option("--max-probes", type=click.IntRange(min=1), default=None, help="Most conversions to try (default 40).")
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    default=None,
    help="Check samples to draw (default: all of --data, or the card's count).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of sample draws and random inputs.")
@click.option("--preprocess", type=click.Path(path_type=Path), default=None, help="JSON preprocessing spec.")
@budget_options
@click.option("--json", "as_json", is_flag=True, help="Print the guard's report as JSON.")
def debug_precision_cmd(
    model: str,
    precision: str | None,
    data: str | None,
    calib: str | None,
    target: str,
    device: str,
    backend: str,
    output: Path | None,
    max_probes: int | None,
    samples: int | None,
    seed: int,
    preprocess: Path | None,
    as_json: bool,
    **budget: float | None,
) -> None:
    """Check MODEL's FP16 or INT8 version against FP32; name the nodes that need FP32 and find the mix.

    Exit 0 when a mix meets the quality budget, 3 when none does.
    """
    from edgerun.precision.guard import QualityCheckError
    from edgerun.precision.mixed import MAX_PROBES

    if precision is None:
        raise click.UsageError("give --fp16 or --int8")
    model_file, card, spec = _model_and_spec(model, preprocess)
    budget_used = budget_from_flags(precision, budget)
    probes = max_probes or MAX_PROBES
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edgerun-debug-") as tmp:
        destination = output or Path(tmp) / "mixed.onnx"
        try:
            if precision == "fp16":
                checks, _ = check_samples_from(data, model_file, card, spec, samples=samples, seed=seed)
                report = _run_fp16(model_file, card, destination, checks, budget_used, probes)
            else:
                report = _run_int8(
                    model_file, card, spec, destination, data, calib, samples, seed,
                    (target, device, backend), budget_used, probes, lines, as_json,
                )  # fmt: skip
        except QualityCheckError as exc:
            failed = {**exc.report, "written": None, "note": _note(exc.report), "error": str(exc)}
            if as_json:
                emit_json(failed)
            else:
                render_report(failed, lines, output=None)
            raise ThresholdError(str(exc)) from exc
    report = {**report, "written": None if output is None else str(output), "note": _note(report)}
    if as_json:
        emit_json(report)
        return
    render_report(report, lines, output=output)


def _note(report: Mapping[str, Any]) -> str | None:
    from edgerun.precision.checks import RANDOM_NOTE

    return RANDOM_NOTE if report.get("random_inputs") else None


def _run_fp16(
    model_file: Any, card: Any, destination: Path, samples: Any, budget: Any, max_probes: int
) -> dict[str, Any]:
    from edgerun.precision.guard import guard_fp16

    with err.status(f"checking FP16 against FP32 on {samples.describe()}"):
        result = guard_fp16(
            model_file, destination, samples, budget, declared=declared_outputs(card), max_probes=max_probes
        )
    return result.to_dict()


def _run_int8(
    model_file: Any,
    card: Any,
    spec: Any,
    destination: Path,
    data: str | None,
    calib: str | None,
    samples: int | None,
    seed: int,
    where: tuple[str, str, str],
    budget: Any,
    max_probes: int,
    lines: list[str],
    as_json: bool,
) -> dict[str, Any]:
    """The INT8 guard with --calib (else the card's calibration), check samples held apart from it;
    what the report does not say (the calibration used) goes into ``lines``."""
    from edgerun.errors import CalibrationError
    from edgerun.precision.calibration import CalibrationData
    from edgerun.precision.guard import guard_int8
    from edgerun.precision.quantize import QuantizeOptions

    layout, target_line = resolve_target(model_file, *where)
    if not as_json:
        out.print(escape(target_line), highlight=False, soft_wrap=True)
    source: Any
    count: int | None = None
    if calib is not None:
        source = calib
    elif card is not None and card.calibration:
        source, count = card.folder / card.calibration["source"], card.calibration.get("samples")
    else:
        raise CalibrationError(f"{model_file.path}: INT8 needs calibration data: --calib SRC")
    loaded = _load_data(str(source), model_file, card, spec, count, seed, None, ())
    calibration = CalibrationData(loaded.inputs, source=loaded.source, batch_axes=loaded.batch_axes)
    checks, left = check_samples_from(data, model_file, card, spec, samples=samples, seed=seed, calibration=calibration)
    calibration = left or calibration
    lines.append(f"calibration: {calibration.count} samples of {calibration.source}")
    with err.status(f"checking INT8 against FP32 on {checks.describe()}"):
        result = guard_int8(
            model_file, destination, calibration, checks, QuantizeOptions(target=layout), budget,
            declared=declared_outputs(card), max_probes=max_probes,
        )  # fmt: skip
    return {**result.to_dict(), "target": layout}


def render_report(report: Mapping[str, Any], lines: Sequence[str], *, output: Path | None) -> None:
    """The guard's report for a terminal: samples, budget, before/after, kept nodes, probes, verdict."""
    from edgerun.cli.render import render_cells

    precision = str(report.get("precision", "?"))
    budget = report.get("budget") or {}
    say = _say
    note = report.get("note")
    say(f"{precision} checked against fp32 on {report.get('samples', '?')}")
    for line in lines:
        say(line)
    if budget:
        from edgerun.quality import QualityBudget

        say(f"budget: {QualityBudget.from_dict(budget).describe()}")
    if note:
        out.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
    before = report.get("before", [])
    say(f"before (plain {precision}): {_describe(before)}")
    kept = report.get("kept", [])
    total = report.get("total_nodes", "?")
    passed = bool(report.get("passed"))
    for violation in report.get("violations", []) if not passed else _violations(budget, before) if kept else []:
        say(f"  misses the budget: {violation}")
    if passed:
        say(f"kept in FP32: {len(kept)} of {total} nodes")
        for node in kept:
            say(f"  {node['name']} ({node['op_type']}): {node['why']}")
        if kept:
            say(f"after (mixed): {_describe(report.get('after', []))}")
    rows = [
        {
            "stage": f"{index}. {probe['stage']}",
            "kept": str(probe["kept"]),
            "passed": "yes" if probe["passed"] else "no",
            "seconds": f"{probe['seconds']:.2f}",
        }
        for index, probe in enumerate(report.get("probes", []), start=1)
    ]
    if rows:
        render_cells(out, f"probes ({len(rows)}):", rows, ["stage", "kept", "passed", "seconds"])
    seconds = float(report.get("seconds", 0.0))
    if report.get("passed"):
        verdict = f"passed: {precision} meets the budget with {len(kept)} of {total} nodes in FP32"
        say(f"{verdict} ({len(rows)} probe{'s' if len(rows) != 1 else ''}, {seconds:.1f} s in all)")
        if output is not None:
            say(f"wrote {output}")
        else:
            say("the mixed model was not written: give -o OUT.onnx to keep it")
    else:
        say(f"FAILED: no mix of precisions meets the budget ({len(rows)} probes, {seconds:.1f} s in all)")


def _say(text: str) -> None:
    out.print(escape(text), highlight=False, soft_wrap=True)


def _violations(budget: Mapping[str, Any], qualities: Sequence[Mapping[str, Any]]) -> list[str]:
    """What the plain conversion broke (the report keeps only the returned model's violations)."""
    from edgerun.quality import QualityBudget

    return QualityBudget.from_dict(budget).violations(_qualities(qualities)) if budget else []


def _qualities(qualities: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The report's per-output figures (dicts, lists for tuples after JSON) as `OutputQuality` again."""
    from edgerun.quality import OutputQuality

    rebuilt: list[dict[str, Any]] = [
        {k: tuple(v) if isinstance(v, list) else v for k, v in q.items()} for q in qualities
    ]
    return [OutputQuality(**fields) for fields in rebuilt]


def _describe(qualities: Sequence[Mapping[str, Any]]) -> str:
    """`describe_quality` of the report's per-output figures (dicts), or "-" when there are none."""
    from edgerun.precision.guard import describe_quality

    return describe_quality(_qualities(qualities)) or "-"
