"""Compare models on the same inputs: what a precision or compression step costs and buys.

For a reference and candidates (other files, or the same model at another precision:
``model@int8``), per output the task-aware figures of `edgerun.quality` (max abs and relative
error, cosine similarity per output and per feature slice, top-1 agreement for classifiers,
mask IoU for probability maps, detections kept for detectors); with labels, accuracy and
retention versus the reference; always file size, parameters, latency (p50/p99 from
interleaved calls, so drift hits every model alike), speed-up, and how many nodes the
precision guard kept in FP32. Thresholds and quality budgets turn it into a CI gate.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgerun.data.samples import run_in_chunks, sample_count, take
from edgerun.errors import InputError, ModelError
from edgerun.loading import load
from edgerun.quality import OutputQuality, QualityBudget, output_quality
from edgerun.runtime.plan import Plan, as_precision
from edgerun.runtime.session import Session
from edgerun.stats import LatencyStats

PRECISION_SUFFIXES = ("fp32", "fp16", "int8")
KEY_COLUMNS = ("model", "size", "p50 ms", "speed-up")
"""The cells `edgerun compare` shows by default, before the quality figures (`Comparison.key_columns`):
what a step costs and buys, narrow enough for an 80-column terminal; ``--wide`` shows every cell."""


OutputDiff = OutputQuality
"""The former name of `OutputQuality` (one output of a candidate against the reference's)."""


@dataclass(frozen=True)
class ModelRow:
    label: str
    path: str
    precision: str
    size_bytes: int
    parameters: int
    latency_ms: LatencyStats
    accuracy: float | None = None
    correct: int | None = None
    retention_pct: float | None = None
    speedup: float = 1.0
    size_ratio: float = 1.0
    outputs: list[OutputQuality] = field(default_factory=list)
    kept_fp32: int | None = None
    """Nodes the precision guard kept in FP32 (None: no guard ran, e.g. an FP32 model or a file as given)."""
    total_nodes: int | None = None
    """Nodes the guard considered (with `kept_fp32`: the "3/330" of the tables)."""
    guard: str | None = None
    """What the guard did: ``passed`` (model unchanged), ``mixed`` (nodes kept in FP32), ``fallback`` (FP32
    served instead, with the reason after a colon) or ``failed``; None when no guard ran."""


@dataclass(frozen=True)
class Comparison:
    rows: list[ModelRow]
    """The reference first."""
    samples: int
    source: str
    latency_batch: int
    iterations: int

    @property
    def reference(self) -> ModelRow:
        return self.rows[0]

    def violations(
        self,
        *,
        max_accuracy_drop: float | None = None,
        min_cosine: float | None = None,
        budget: QualityBudget | None = None,
    ) -> list[str]:
        """Each threshold a candidate breaks, as a sentence (empty: all pass); ``budget``: every limit of a
        `QualityBudget` (per output, per slice, top-1, mask IoU, detections kept) for every candidate."""
        problems = []
        ref = self.reference
        for row in self.rows[1:]:
            if max_accuracy_drop is not None:
                if ref.accuracy is None or row.accuracy is None:
                    problems.append("--max-accuracy-drop needs labels (--labels, or labels in the data)")
                    break
                drop = (ref.accuracy - row.accuracy) * 100
                if drop > max_accuracy_drop:
                    problems.append(
                        f"{row.label}: accuracy drop {drop:.2f} points > {max_accuracy_drop:g} "
                        f"({row.accuracy:.2%} vs {ref.accuracy:.2%})"
                    )
            if min_cosine is not None:
                for out in row.outputs:
                    if out.cosine_mean < min_cosine:
                        problems.append(f"{row.label}: output '{out.name}' cosine {out.cosine_mean:.5f} < {min_cosine}")
            if budget is not None:
                problems += [f"{row.label}: {problem}" for problem in budget.violations(row.outputs)]
        return problems

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for row in self.rows:
            data = asdict(row)
            data["latency_ms"] = row.latency_ms.to_dict()
            rows.append(data)
        return {
            "samples": self.samples,
            "source": self.source,
            "latency_batch": self.latency_batch,
            "iterations": self.iterations,
            "models": rows,
        }

    @property
    def has_detections(self) -> bool:
        """Whether an output is a detector's (the tables then show the share of detections kept)."""
        return any(out.detections_kept is not None for row in self.rows for out in row.outputs)

    @property
    def has_guard(self) -> bool:
        """Whether the precision guard checked a candidate (the tables then show its FP32 nodes)."""
        return any(row.kept_fp32 is not None or row.guard is not None for row in self.rows)

    def cells(self, reference: str = "reference") -> list[dict[str, str]]:
        """Every row formatted once, for the Markdown table and the terminal table alike. Quality cells show
        a candidate's worst output; "detections kept" and "fp32 nodes" appear only when some row has them."""
        table = []
        detections, guard = self.has_detections, self.has_guard
        for index, row in enumerate(self.rows):
            ref = index == 0 and not row.outputs
            top1 = _worst([o.top1_agreement for o in row.outputs], min)
            cosine = _worst([o.cosine_mean for o in row.outputs], min)
            max_abs = _worst([o.max_abs for o in row.outputs], max)
            iou = _worst([o.mask_iou for o in row.outputs], min)
            cells = {
                "model": row.label,
                "precision": row.precision,
                "size": f"{row.size_bytes / 1024:.0f} KiB ({row.size_ratio:.2f}x)",
                "params": f"{row.parameters:,}",
                "accuracy": _pct(row.accuracy),
                "retention": "-" if row.retention_pct is None else f"{row.retention_pct:.1f}%",
                "p50 ms": f"{row.latency_ms.p50:.3f}",
                "p99 ms": f"{row.latency_ms.p99:.3f}",
                "speed-up": f"{row.speedup:.2f}x",
                "top-1 agreement": reference if ref else _pct(top1),
                "cosine (mean)": reference if ref else ("-" if cosine is None else f"{cosine:.5f}"),
                "max abs err": reference if ref else ("-" if max_abs is None else f"{max_abs:.3g}"),
                "mask IoU": reference if ref else ("-" if iou is None else f"{iou:.4f}"),
            }
            if detections:
                cells["detections kept"] = reference if ref else _detections_cell(row.outputs)
            if guard:
                cells["fp32 nodes"] = _guard_cell(row)
            table.append(cells)
        return table

    def quality_columns(self) -> list[str]:
        """The main quality figure(s) among the cells: accuracy with labels, else top-1 agreement for a
        classifier, else mean cosine similarity; mask IoU for probability maps (or with a mask threshold);
        the share of detections kept for detectors."""
        diffs = [out for row in self.rows for out in row.outputs]
        if self.reference.accuracy is not None:
            columns = ["accuracy"]
        elif any(diff.top1_agreement is not None for diff in diffs):
            columns = ["top-1 agreement"]
        else:
            columns = ["cosine (mean)"]
        if any(diff.mask_iou is not None for diff in diffs):
            columns.append("mask IoU")
        if self.has_detections:
            columns.append("detections kept")
        return columns

    def key_columns(self) -> list[str]:
        """The cells worth a glance: `KEY_COLUMNS`, then `quality_columns`, then the guard's FP32 nodes if any."""
        return [*KEY_COLUMNS, *self.quality_columns(), *(["fp32 nodes"] if self.has_guard else [])]

    def markdown(self) -> str:
        """A table users can paste into a README or a pull request."""
        columns = [c for c in self.cells()[0] if c != "mask IoU"]
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(row[c] for c in columns) + " |" for row in self.cells()]
        lines.append("")
        lines.append(
            f"{self.samples} samples from {self.source}; latency: {self.iterations} interleaved calls per model at "
            f"batch {self.latency_batch}; size ratio and speed-up are relative to {self.reference.label}."
        )
        return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _worst(values: Sequence[float | None], pick: Callable[[list[float]], float]) -> float | None:
    present = [v for v in values if v is not None]
    return pick(present) if present else None


def _detections_cell(outputs: Sequence[OutputQuality]) -> str:
    """The detector output that keeps the smallest share: ``25.0% of 76``."""
    found = [o for o in outputs if o.detections_kept is not None]
    if not found:
        return "-"
    worst = min(found, key=lambda o: o.detections_kept or 0.0)
    return f"{worst.detections_kept:.1%} of {worst.detections}"


def _guard_cell(row: ModelRow) -> str:
    """``3/330`` nodes kept in FP32, ``fp32 (fallback)`` when the guard served FP32, ``-`` without a guard."""
    if row.guard is not None and row.guard.startswith("fallback"):
        return "fp32 (fallback)"
    if row.kept_fp32 is None:
        return "-"
    return f"{row.kept_fp32}/{row.total_nodes}" if row.total_nodes is not None else str(row.kept_fp32)


def guard_of(plan: Plan) -> tuple[int | None, int | None, str | None]:
    """(nodes kept in FP32, nodes considered, what the guard did) from ``plan.quality``, all None when no
    guard ran (see `ModelRow.guard`)."""
    quality = plan.quality
    if not isinstance(quality, Mapping):
        return None, None, None
    names = quality.get("kept_fp32")
    kept = len(names) if isinstance(names, Sequence) and not isinstance(names, str) else None
    total = quality.get("total_nodes")
    total = total if isinstance(total, int) and not isinstance(total, bool) else None
    fallback = quality.get("fallback")
    if fallback:
        verdict = f"fallback: {fallback}"
    elif quality.get("passed") is False:
        verdict = "fallback" if plan.precision == "fp32" else "failed"
    else:
        verdict = "mixed" if kept else "passed"
    return kept, total, verdict


def split_precision(spec: str | os.PathLike[str]) -> tuple[str, str]:
    """``digits-teacher@int8`` -> (``digits-teacher``, ``int8``); anything else is a plain model."""
    text = str(spec)
    model, _, precision = text.rpartition("@")
    if not model or precision not in PRECISION_SUFFIXES:
        return text, "auto"
    return model, precision


def open_for_compare(spec: str | os.PathLike[str], threads: int | None = None, **options: Any) -> Session:
    """``model`` or ``model@precision`` (``digits-teacher@int8``) as a session."""
    model, precision = split_precision(spec)
    if threads is not None:
        options["threads"] = threads
    return load(model, precision=as_precision(precision), **options)


def check_same_io(sessions: Sequence[Session]) -> None:
    """All models take the same inputs and give the same outputs (names, dtypes, ranks)."""
    ref = sessions[0]

    def signature(s: Session) -> tuple[Any, ...]:
        return (
            tuple((t.name, t.dtype.str, t.rank) for t in s.inputs),
            tuple((t.name, t.rank) for t in s.outputs),
        )

    for other in sessions[1:]:
        if signature(other) != signature(ref):
            raise ModelError(
                other.model.path,
                f"cannot compare it with {ref.label}: different inputs or outputs "
                f"({', '.join(t.describe() for t in other.inputs)} -> {', '.join(t.describe() for t in other.outputs)} "
                f"vs {', '.join(t.describe() for t in ref.inputs)} -> {', '.join(t.describe() for t in ref.outputs)})",
            )


def run_all(
    session: Session,
    inputs: Mapping[str, np.ndarray],
    batch_size: int,
    batch_axes: Mapping[str, int | None] | None = None,
) -> dict[str, np.ndarray]:
    """Outputs for every sample, run in batches (one at a time unless every input takes any batch on its
    batch axis); samples lie along each input's batch axis (``batch_axes``: default the session's roles;
    None for constants) and along axis 0 of every output."""
    axes = {**session.roles.batch_axes, **(batch_axes or {})}
    dynamic = all(
        axis < spec.rank and isinstance(spec.shape[axis], str)
        for spec in session.inputs
        if (axis := axes.get(spec.name, 0)) is not None
    )
    step = batch_size if dynamic else 1
    return run_in_chunks(session.run, inputs, axes, step, "the data", session.roles.output_axes)


def compare(
    models: Sequence[str | os.PathLike[str]],
    inputs: Mapping[str, np.ndarray],
    *,
    labels: np.ndarray | None = None,
    labels_output: str | None = None,
    source: str = "<inputs>",
    batch_size: int = 32,
    latency_batch: int = 1,
    warmup: int = 10,
    iterations: int = 100,
    threads: int | None = None,
    mask_threshold: float | None = None,
    declared: Mapping[str, Any] | None = None,
    names: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
    batch_axes: Mapping[str, int | None] | None = None,
) -> Comparison:
    """Run ``models`` (the first is the reference) on ``inputs`` and measure them side by side.

    ``batch_axes``: each input's batch axis (`SampleSet.batch_axes`; default 0, None for constants);
    ``declared``: output kinds (a model card's ``outputs``, see `edgerun.quality.output_kind`);
    ``labels_output`` is judged as class scores.
    """
    if len(models) < 2:
        raise ModelError(None, "compare needs a reference and at least one candidate")
    count = sample_count(inputs, batch_axes or {}, source)
    if labels is not None and len(labels) != count:
        raise InputError(
            f"{len(labels)} labels for {count} samples of {source}", expected=str(count), got=str(len(labels))
        )
    sessions = [open_for_compare(m, threads) for m in models]
    try:
        check_same_io(sessions)
        labels_of = [str(n) for n in (names or models)]
        if progress:
            progress("running every model on the data")
        outputs = [run_all(s, inputs, batch_size, batch_axes) for s in sessions]
        if progress:
            progress("timing interleaved calls")
        latency = _interleaved_latency(sessions, inputs, latency_batch, warmup, iterations, batch_axes or {})
        class_output = labels_output or _classifier_output(sessions[0], outputs[0])
        rows: list[ModelRow] = []
        ref_acc: float | None = None
        for index, (session, produced, timing) in enumerate(zip(sessions, outputs, latency, strict=True)):
            accuracy = correct = None
            if labels is not None and class_output is not None:
                predicted = produced[class_output].reshape(len(labels), -1).argmax(axis=1)
                correct = int((predicted == labels).sum())
                accuracy = correct / len(labels)
            if index == 0:
                ref_acc = accuracy
            ref_row = rows[0] if rows else None
            kept_fp32, total_nodes, guard = guard_of(session.plan)
            rows.append(
                ModelRow(
                    label=labels_of[index],
                    path=str(session.model.path),
                    precision=session.plan.precision,
                    size_bytes=session.model.size_bytes,
                    parameters=session.model.parameters,
                    latency_ms=timing,
                    accuracy=accuracy,
                    correct=correct,
                    retention_pct=None if accuracy is None or not ref_acc else accuracy / ref_acc * 100,
                    speedup=1.0 if ref_row is None else ref_row.latency_ms.p50 / timing.p50,
                    size_ratio=1.0 if ref_row is None else session.model.size_bytes / ref_row.size_bytes,
                    outputs=[]
                    if index == 0
                    else [
                        output_quality(
                            name,
                            outputs[0][name],
                            produced[name],
                            kind="classes" if name == labels_output else None,
                            declared=declared,
                            mask_threshold=mask_threshold,
                        )
                        for name in outputs[0]
                    ],
                    kept_fp32=kept_fp32,
                    total_nodes=total_nodes,
                    guard=guard,
                )
            )
    finally:
        for session in sessions:
            session.close()
    return Comparison(rows, count, source, latency_batch, iterations)


def _classifier_output(session: Session, produced: Mapping[str, np.ndarray]) -> str | None:
    """The first output shaped [batch, classes] (classes > 1): where top-1 is meaningful."""
    for spec in session.outputs:
        value = produced[spec.name]
        if value.ndim == 2 and value.shape[1] > 1 and value.dtype.kind == "f":
            return spec.name
    return None


def _interleaved_latency(
    sessions: Sequence[Session],
    inputs: Mapping[str, np.ndarray],
    batch: int,
    warmup: int,
    iterations: int,
    batch_axes: Mapping[str, int | None],
) -> list[LatencyStats]:
    """Per-call latency of each model, calls interleaved so drift is shared.

    Each round runs every model once in a new (seeded) random order: a rotation would keep each
    model's predecessor fixed, and a small model run right after a large one pays for the caches
    the large one evicted (measured: the same file 16% slower when always run after the teacher).
    """
    feeds = {k: np.asarray(v, order="C") for k, v in take(inputs, batch_axes, slice(0, batch)).items()}
    for session in sessions:
        for _ in range(warmup):
            session.run(feeds)
    clock = time.perf_counter
    samples: list[list[float]] = [[] for _ in sessions]
    rng = np.random.default_rng(0)
    for _ in range(iterations):
        for k in rng.permutation(len(sessions)).tolist():
            start = clock()
            sessions[k].run(feeds)
            samples[k].append(clock() - start)
    return [LatencyStats.from_seconds(s) for s in samples]
