"""Compare models on the same inputs: what a precision or compression step costs and buys.

For a reference and candidates (other files, or the same model at another precision:
``model@int8``), per output: max abs error, max error relative to the reference's range,
cosine similarity, top-1 agreement for classifiers and mask IoU for probability maps; with
labels, accuracy and retention versus the reference; always file size, parameters, latency
(p50/p99 from interleaved calls, so drift hits every model alike) and speed-up. Thresholds
turn it into a CI gate.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgerun.errors import InputError, ModelError
from edgerun.loading import load
from edgerun.runtime.plan import as_precision
from edgerun.runtime.session import Session
from edgerun.stats import LatencyStats

PRECISION_SUFFIXES = ("fp32", "fp16", "int8")
KEY_COLUMNS = ("model", "size", "p50 ms", "speed-up")
"""The cells `edgerun compare` shows by default, before the quality figures (`Comparison.key_columns`):
what a step costs and buys, narrow enough for an 80-column terminal; ``--wide`` shows every cell."""


@dataclass(frozen=True)
class OutputDiff:
    """How one output of a candidate differs from the reference's."""

    name: str
    max_abs: float
    max_rel: float
    """max abs error / max abs reference value: error relative to the output's range."""
    cosine_mean: float
    cosine_min: float
    top1_agreement: float | None = None
    mask_iou: float | None = None
    mask_agreement: float | None = None
    """Fraction of elements on the same side of the mask threshold: top-1 agreement per pixel."""


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
    outputs: list[OutputDiff] = field(default_factory=list)


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

    def violations(self, *, max_accuracy_drop: float | None = None, min_cosine: float | None = None) -> list[str]:
        """Each threshold a candidate breaks, as a sentence (empty: all pass)."""
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

    def cells(self, reference: str = "reference") -> list[dict[str, str]]:
        """Every row formatted once, for the Markdown table and the terminal table alike."""
        table = []
        for row in self.rows:
            out = row.outputs[0] if row.outputs else None
            table.append(
                {
                    "model": row.label,
                    "precision": row.precision,
                    "size": f"{row.size_bytes / 1024:.0f} KiB ({row.size_ratio:.2f}x)",
                    "params": f"{row.parameters:,}",
                    "accuracy": _pct(row.accuracy),
                    "retention": "-" if row.retention_pct is None else f"{row.retention_pct:.1f}%",
                    "p50 ms": f"{row.latency_ms.p50:.3f}",
                    "p99 ms": f"{row.latency_ms.p99:.3f}",
                    "speed-up": f"{row.speedup:.2f}x",
                    "top-1 agreement": reference if out is None else _pct(out.top1_agreement),
                    "cosine (mean)": reference if out is None else f"{out.cosine_mean:.5f}",
                    "max abs err": reference if out is None else f"{out.max_abs:.3g}",
                    "mask IoU": reference if out is None else ("-" if out.mask_iou is None else f"{out.mask_iou:.4f}"),
                }
            )
        return table

    def quality_columns(self) -> list[str]:
        """The main quality figure(s) among the cells: accuracy with labels, else top-1 agreement for a
        classifier, else mean cosine similarity; and mask IoU when a mask threshold was given."""
        diffs = [row.outputs[0] for row in self.rows if row.outputs]
        if self.reference.accuracy is not None:
            columns = ["accuracy"]
        elif any(diff.top1_agreement is not None for diff in diffs):
            columns = ["top-1 agreement"]
        else:
            columns = ["cosine (mean)"]
        if any(diff.mask_iou is not None for diff in diffs):
            columns.append("mask IoU")
        return columns

    def key_columns(self) -> list[str]:
        """The cells worth a glance: `KEY_COLUMNS`, then `quality_columns`."""
        return [*KEY_COLUMNS, *self.quality_columns()]

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


def run_all(session: Session, inputs: Mapping[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    """Outputs for every sample, run in batches (one at a time for fixed-batch models)."""
    count = len(next(iter(inputs.values())))
    step = batch_size if all(s.has_dynamic_batch for s in session.inputs) else 1
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, count, step):
        batch = {k: v[start : start + step] for k, v in inputs.items()}
        for name, value in session.run(batch).items():
            parts.setdefault(name, []).append(value)
    return {name: np.concatenate(values) for name, values in parts.items()}


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
    names: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Comparison:
    """Run ``models`` (the first is the reference) on ``inputs`` and measure them side by side."""
    if len(models) < 2:
        raise ModelError(None, "compare needs a reference and at least one candidate")
    count = len(next(iter(inputs.values())))
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
        outputs = [run_all(s, inputs, batch_size) for s in sessions]
        if progress:
            progress("timing interleaved calls")
        latency = _interleaved_latency(sessions, inputs, latency_batch, warmup, iterations)
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
                        _diff(name, outputs[0][name], produced[name], name == class_output, mask_threshold)
                        for name in outputs[0]
                    ],
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


def _diff(name: str, ref: np.ndarray, got: np.ndarray, classifier: bool, mask_threshold: float | None) -> OutputDiff:
    r = ref.astype(np.float64).reshape(len(ref), -1)
    g = got.astype(np.float64).reshape(len(got), -1)
    error = np.abs(g - r)
    scale = float(np.max(np.abs(r))) or 1.0
    norms = np.linalg.norm(r, axis=1) * np.linalg.norm(g, axis=1)
    dots = np.einsum("ij,ij->i", r, g)
    cosine = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), np.where(error.max(axis=1) == 0, 1.0, 0.0))
    top1 = float((r.argmax(axis=1) == g.argmax(axis=1)).mean()) if classifier else None
    iou = agreement = None
    if mask_threshold is not None:
        a, b = r >= mask_threshold, g >= mask_threshold
        union = np.logical_or(a, b).sum()
        iou = float(np.logical_and(a, b).sum() / union) if union else 1.0
        agreement = float((a == b).mean()) if a.size else 1.0
    return OutputDiff(
        name=name,
        max_abs=float(error.max()) if error.size else 0.0,
        max_rel=float(error.max()) / scale if error.size else 0.0,
        cosine_mean=float(cosine.mean()),
        cosine_min=float(cosine.min()),
        top1_agreement=top1,
        mask_iou=iou,
        mask_agreement=agreement,
    )


def _interleaved_latency(
    sessions: Sequence[Session], inputs: Mapping[str, np.ndarray], batch: int, warmup: int, iterations: int
) -> list[LatencyStats]:
    """Per-call latency of each model, calls interleaved so drift is shared.

    Each round runs every model once in a new (seeded) random order: a rotation would keep each
    model's predecessor fixed, and a small model run right after a large one pays for the caches
    the large one evicted (measured: the same file 16% slower when always run after the teacher).
    """
    feeds = {k: np.ascontiguousarray(v[:batch]) for k, v in inputs.items()}
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
