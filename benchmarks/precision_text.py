"""FP32 vs static and dynamic INT8 on a transformer-style text classifier on this CPU: latency and agreement.

    python benchmarks/precision_text.py [--out benchmarks/results/precision_text.txt]

The model is tests/sequence_models.py's ``text_classifier_model`` at a realistic size (vocab 8000,
dim 128, one masked attention layer + FFN, sequence 128): its MACs sit in MatMuls, two of them with
activations on both sides (Q @ K^T, attention @ V), and it has no Conv. Quantized with edgerun's
quantizer for target ``cpu`` (ONNX Runtime's CPU layout): static Q/DQ calibrated on 64 padded
sequences, and dynamic (weights INT8, activation ranges per call). Latency: p50/p90 of 200 calls at
batch 1, one thread, interleaved. Agreement on 256 held-out sequences of random lengths: logits
cosine (mean, min) and top-1 agreement with FP32. The result decides `edgerun.precision.quantize.auto_mode`:
dynamic for such models on a CPU.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

VOCAB, DIM, CLASSES, SEQUENCE = 8000, 128, 4, 128


def sequences(count: int, seed: int) -> dict[str, np.ndarray]:
    """``count`` sequences padded to `SEQUENCE`, real lengths 16..128, the mask 0 on the padding."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, (count, SEQUENCE))
    lengths = rng.integers(16, SEQUENCE + 1, count)
    mask = (np.arange(SEQUENCE)[None] < lengths[:, None]).astype(np.int64)
    return {"input_ids": ids * mask, "attention_mask": mask}


def session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def latencies(sessions: dict[str, Any], feed: dict[str, np.ndarray], calls: int = 200) -> dict[str, np.ndarray]:
    """Per-call seconds of each session, calls interleaved so drift hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for s in sessions.values():
        for _ in range(20):
            s.run(None, feed)
    for _ in range(calls):
        for name, s in sessions.items():
            started = time.perf_counter()
            s.run(None, feed)
            times[name].append(time.perf_counter() - started)
    return {name: np.asarray(values) for name, values in times.items()}


def cpu_facts() -> list[str]:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ["lscpu: not available"]
    keep = ("Model name", "Architecture", "CPU(s)", "Flags")
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith(keep)]
    out = []
    for line in lines:
        if line.startswith("Flags"):
            flags = line.split(":", 1)[1].split()
            wanted = [f for f in flags if f.startswith(("avx", "amx", "fma", "sse4", "vnni")) or "vnni" in f]
            out.append("Flags (SIMD): " + " ".join(wanted))
        else:
            out.append(line)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "precision_text.txt")
    args = parser.parse_args()
    import onnxruntime

    from edgerun.precision.calibration import CalibrationData
    from edgerun.precision.quantize import QuantizeOptions, auto_mode, quantize
    from tests.sequence_models import text_classifier_model

    lines = ["# FP32 vs INT8 (static Q/DQ, dynamic) on a text classifier, CPU, batch 1, 1 thread", ""]
    lines += cpu_facts()
    lines.append(f"onnxruntime {onnxruntime.__version__}, python {sys.version.split()[0]}")
    lines.append(f"model: text_classifier_model(vocab={VOCAB}, dim={DIM}, classes={CLASSES}), sequence {SEQUENCE}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        fp32 = folder / "fp32.onnx"
        onnx.save(text_classifier_model(vocab=VOCAB, dim=DIM, classes=CLASSES), str(fp32))
        from edgerun.runtime.modelfile import ModelFile

        choice = auto_mode(ModelFile.open(fp32), "cpu")
        lines.append(f"edgerun's automatic mode for target cpu: {choice[0]} ({choice[1]})")
        calibration = CalibrationData(sequences(64, 1), batch_size=8)
        paths = {"fp32": fp32}
        for mode in ("static", "dynamic"):
            paths[mode] = folder / f"{mode}.onnx"
            quantize(fp32, paths[mode], calibration, QuantizeOptions(mode=mode, target="cpu"), cache=folder)
        sessions = {name: session(path) for name, path in paths.items()}
        held = sequences(256, 2)
        logits = {name: s.run(None, held)[0] for name, s in sessions.items()}
        timed = latencies(sessions, {k: v[:1] for k, v in held.items()})
    lines += [
        "",
        f"{'variant':<10} {'p50 ms':>8} {'p90 ms':>8} {'vs fp32':>8} {'cos mean':>9} {'cos min':>8} {'top-1':>7}",
    ]
    base = float(np.median(timed["fp32"]))
    for name in paths:
        a, b = logits["fp32"], logits[name]
        cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        top1 = float(np.mean(a.argmax(1) == b.argmax(1)))
        p50, p90 = (float(np.percentile(timed[name], q)) * 1e3 for q in (50, 90))
        speed = base * 1e3 / p50
        lines.append(
            f"{name:<10} {p50:>8.3f} {p90:>8.3f} {speed:>7.2f}x {cos.mean():>9.5f} {cos.min():>8.5f} {top1:>7.3f}"
        )
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
