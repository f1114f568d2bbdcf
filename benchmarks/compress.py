"""The hybrid compression table: teacher -> distilled student -> pruned -> INT8, each step measured, over seeds.

    python benchmarks/compress.py [--seeds 0 1 2] [--out benchmarks/results]

Needs the distill extra (torch, Torch-Pruning, scikit-learn): ``pip install -e '.[distill]'``.

Data: scikit-learn's ``load_digits``, the bundled digits models' split (1,437 training images,
360 test images; one image is 0.28 points). Every setting below was fixed before the first run:

* teacher: the bundled 3-conv CNN (227k parameters), 800 Adam steps through `fit_student` on the
  labels, random shifts of up to one pixel (as `benchmarks/distill_digits.py`).
* distilled student: the bundled student's 3-conv design (26k parameters), 800 steps, T=4,
  alpha 0.7, from that seed's teacher.
* teacher pruned unstructured 50% and 80%: global magnitude pruning of every Conv/Linear weight
  (`edgerun.distill.prune.magnitude_prune`), then 400 steps of fine-tuning with the distillation
  loss (T=4, alpha 0.7) against the unpruned teacher, the masks keeping the zeros.
* teacher pruned structured: whole channels removed by L1 magnitude with Torch-Pruning
  (`prune_channels`) until its MACs are at or below the student's, then distilled from the
  unpruned teacher like the student (800 steps, T=4, alpha 0.7).
* each of those five + INT8: `edgerun.precision.quantize`, the CPU layout (per-channel, minmax,
  256 training images).

Measured on the exported ONNX files with ONNX Runtime (one thread): accuracy on the test split;
p50 latency of 1,000 batch-1 and 300 batch-16 calls, models interleaved (`edgerun.compare`);
MACs counted from each ONNX graph at batch 1 (`edgerun.runtime.macs`); size on disk and
compressed with zlib (what sparsity buys in storage). Speed-ups are ratios to the FP32 teacher of
the same seed and run. Writes ``compress.md`` and ``compress.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from edgerun.compare.comparison import Comparison, compare
from edgerun.precision.calibration import CalibrationData
from edgerun.precision.quantize import QuantizeOptions, quantize
from edgerun.runtime.macs import count_macs

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
try:
    import sklearn  # noqa: F401  (make_digits_models needs it: fail here with the install hint)
    import torch
    from torch import nn

    from edgerun.distill import export_onnx, fit_student
    from edgerun.distill.prune import magnitude_prune, prune_channels, remove_masks
except ImportError as exc:  # torch, Torch-Pruning (the distill extra) or scikit-learn missing
    sys.exit(f"{exc}: this benchmark needs: pip install -e '.[distill]' scikit-learn")

from _common import lscpu_facts, machine, vector_flags  # noqa: E402  (benchmarks/: the script's own folder)
from distill_digits import CALIBRATION_SAMPLES, prepared_run  # noqa: E402  (the same split and set-up)
from make_digits_models import Student, Teacher, shift_augment  # noqa: E402  (the bundled digits models)

STEPS = 800
FINE_TUNE_STEPS = 400
T = 4.0
ALPHA = 0.7
SPARSITIES = (0.5, 0.8)
ITERATIONS = {1: 1000, 16: 300}
FLOAT_ROWS = ("teacher", "distilled student", "teacher unstructured 50% + ft", "teacher unstructured 80% + ft",
              "teacher structured to student MACs + kd")  # fmt: skip
ROWS = (*FLOAT_ROWS, *(f"{name} + int8" for name in FLOAT_ROWS))


def train_models(seed: int, x: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """The five float models of one seed, and what pruning reported."""
    kd: dict[str, Any] = {"temperature": T, "alpha": ALPHA, "augment": shift_augment, "seed": seed}
    torch.manual_seed(seed)
    teacher = Teacher()
    fit_student(teacher, x, y, steps=STEPS, augment=shift_augment, seed=seed)
    torch.manual_seed(seed)
    student = Student()
    fit_student(student, x, y, teacher=teacher, steps=STEPS, **kd)
    models: dict[str, nn.Module] = {"teacher": teacher, "distilled student": student}
    notes: dict[str, Any] = {}
    for sparsity, name in zip(SPARSITIES, FLOAT_ROWS[2:4], strict=True):
        pruned = copy.deepcopy(teacher)
        magnitude_prune(pruned, sparsity=sparsity)
        fit_student(pruned, x, y, teacher=teacher, steps=FINE_TUNE_STEPS, **kd)
        notes[name] = {"sparsity": remove_masks(pruned).sparsity}
        models[name] = pruned
    sample = x[:1]
    student_macs = count_torch_macs(student, sample)
    structured = copy.deepcopy(teacher)
    report = prune_channels(structured, sample, target_macs=student_macs)
    fit_student(structured, x, y, teacher=teacher, steps=STEPS, **kd)
    models[FLOAT_ROWS[4]] = structured
    notes[FLOAT_ROWS[4]] = {"macs_before": report.macs_before, "macs_after": report.macs_after, "steps": report.steps,
                            "student_macs": student_macs}  # fmt: skip
    return models, notes


def count_torch_macs(model: nn.Module, sample: torch.Tensor) -> int:
    import torch_pruning as tp

    return int(tp.utils.count_ops_and_params(model, sample)[0])


def parameters(model: nn.Module) -> tuple[int, int]:
    """All parameters, and those not zero."""
    values = [p.detach() for p in model.parameters()]
    return sum(v.numel() for v in values), sum(int(torch.count_nonzero(v)) for v in values)


def export_all(models: dict[str, nn.Module], folder: Path, sample: torch.Tensor, calib: np.ndarray) -> list[str]:
    """ONNX files in ROWS order: the five float models, then each quantized to INT8 (the CPU layout)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (name, model) in enumerate(models.items()):
        path = folder / f"m{index}.onnx"
        export_onnx(model, sample, path, input_names=["image"], output_names=["logits"], card={"model": name})
        paths.append(str(path))
    options = QuantizeOptions(per_channel=True, target="cpu", method="minmax")
    data_set = CalibrationData({"image": calib}, source="training images")
    for index, path in enumerate(list(paths)):
        int8 = folder / f"m{index}-int8.onnx"
        quantize(path, int8, data_set, options, cache=folder / "calibration-cache", warn_if_empty=False)
        paths.append(str(int8))
    return paths


def measure(paths: list[str], x_test: torch.Tensor, y_test: torch.Tensor) -> dict[int, Comparison]:
    """Accuracy and latency at batch 1 and 16 of every file, the teacher first (the reference)."""
    return {
        batch: compare(paths, {"image": x_test.numpy()}, labels=y_test.numpy(), names=list(ROWS),
                       source="digits test split", latency_batch=batch, iterations=iterations, warmup=30, threads=1)
        for batch, iterations in ITERATIONS.items()
    }  # fmt: skip


def summarize(per_seed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for name in ROWS:
        acc = [s["accuracy"][name] for s in per_seed]
        vs_teacher = [s["accuracy"][name] - s["accuracy"]["teacher"] for s in per_seed]
        first = per_seed[0]
        rows.append({
            "model": name,
            "accuracy_per_seed": acc,
            "accuracy_mean": statistics.mean(acc),
            "accuracy_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            "vs_teacher_points_mean": 100 * statistics.mean(vs_teacher),
            "vs_teacher_points_std": 100 * statistics.stdev(vs_teacher) if len(acc) > 1 else 0.0,
            "parameters": first["parameters"][name],
            "nonzero_mean": statistics.mean(s["nonzero"][name] for s in per_seed),
            "size_bytes_mean": statistics.mean(s["size"][name] for s in per_seed),
            "zlib_bytes_mean": statistics.mean(s["zlib"][name] for s in per_seed),
            "macs_mean": statistics.mean(s["macs"][name] for s in per_seed),
            "p50_ms_b1_mean": statistics.mean(s["p50"][1][name] for s in per_seed),
            "p50_ms_b16_mean": statistics.mean(s["p50"][16][name] for s in per_seed),
            "speedup_b1_mean": statistics.mean(s["p50"][1]["teacher"] / s["p50"][1][name] for s in per_seed),
            "speedup_b16_mean": statistics.mean(s["p50"][16]["teacher"] / s["p50"][16][name] for s in per_seed),
        })  # fmt: skip
    return rows


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "| model | accuracy (mean ± std) | vs teacher (paired) | params | non-zero | size | zlib | MACs "
        "| p50 ms b1 | p50 ms b16 | speed-up b1 | speed-up b16 |",
        "|" + "---|" * 12,
    ]
    for r in rows:
        vs = (
            "-"
            if r["model"] == "teacher"
            else f"{r['vs_teacher_points_mean']:+.2f} ± {r['vs_teacher_points_std']:.2f} pts"
        )
        size, packed = r["size_bytes_mean"] / 1024, r["zlib_bytes_mean"] / 1024
        lines.append(
            f"| {r['model']} | {r['accuracy_mean']:.2%} ± {r['accuracy_std']:.2%} | {vs} | {r['parameters']:,} "
            f"| {r['nonzero_mean']:,.0f} | {size:.1f} KiB | {packed:.1f} KiB "
            f"| {r['macs_mean'] / 1e6:.2f} M | {r['p50_ms_b1_mean']:.4f} | {r['p50_ms_b16_mean']:.4f} "
            f"| {r['speedup_b1_mean']:.2f}x | {r['speedup_b16_mean']:.2f}x |"
        )
    m = meta["machine"]
    lines += [
        "",
        f"Seeds {meta['seeds']}; test split of {meta['test_samples']} images (one image = "
        f"{100 / meta['test_samples']:.2f} points). Accuracy from ONNX Runtime on the exported files; 'vs teacher' is "
        "the per-seed difference to the FP32 teacher, mean ± std. INT8 rows keep their float source's parameter "
        "counts. Latency: p50, one ORT thread, models interleaved; speed-ups vs the FP32 teacher of the same seed, "
        "mean over seeds.",
        "",
        f"`python benchmarks/compress.py` on {m['cpu']} ({m['cores']} cores; lscpu flags: {meta['lscpu_flags']}), "
        f"torch {meta['torch']}, onnxruntime {m['onnxruntime']}: {meta['seconds']:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    started = time.perf_counter()
    x, y, x_test, y_test, calib = prepared_run()
    per_seed = []
    with tempfile.TemporaryDirectory(prefix="edgerun-compress-") as tmp:
        for seed in args.seeds:
            models, notes = train_models(seed, x, y)
            paths = export_all(models, Path(tmp) / f"seed{seed}", x_test[:1], calib)
            results = measure(paths, x_test, y_test)
            counts = [parameters(m) for m in models.values()] * 2  # INT8 rows: their float source's counts
            record: dict[str, Any] = {
                "seed": seed,
                "notes": notes,
                "accuracy": {r.label: r.accuracy or 0.0 for r in results[1].rows},
                "p50": {b: {r.label: r.latency_ms.p50 for r in c.rows} for b, c in results.items()},
                "parameters": dict(zip(ROWS, (c[0] for c in counts), strict=True)),
                "nonzero": dict(zip(ROWS, (c[1] for c in counts), strict=True)),
                "size": {n: Path(p).stat().st_size for n, p in zip(ROWS, paths, strict=True)},
                "zlib": {n: len(zlib.compress(Path(p).read_bytes(), 9)) for n, p in zip(ROWS, paths, strict=True)},
                "macs": {n: count_macs(p, {"image": (1, 1, 8, 8)}) for n, p in zip(ROWS, paths, strict=True)},
            }
            per_seed.append(record)
            accs = ", ".join(f"{n} {a:.2%}" for n, a in record["accuracy"].items())
            print(f"[{time.perf_counter() - started:5.0f} s] seed {seed}: {accs}", flush=True)
    rows = summarize(per_seed)
    meta = {
        "command": "python benchmarks/compress.py",
        "seeds": args.seeds,
        "settings": {
            "steps": STEPS,
            "fine_tune_steps": FINE_TUNE_STEPS,
            "temperature": T,
            "alpha": ALPHA,
            "sparsities": list(SPARSITIES),
            "calibration_samples": CALIBRATION_SAMPLES,
            "latency_iterations": {str(k): v for k, v in ITERATIONS.items()},
        },
        "test_samples": len(y_test),
        "torch": torch.__version__,
        "machine": machine(),
        "lscpu_flags": " ".join(vector_flags(lscpu_facts())) or "none of avx2/avx512/vnni/amx",
        "seconds": time.perf_counter() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"meta": meta, "rows": rows, "per_seed": per_seed}
    (args.out / "compress.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    table = markdown(rows, meta)
    (args.out / "compress.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
