"""Frame-level accuracy of the bundled Silero VAD on its speech / non-speech evaluation set.

    python benchmarks/vad_accuracy.py [--out benchmarks/results/vad_accuracy.txt]

Streams every clip of ``edgerun/models/silero-vad/eval/vad-eval.npz`` (made by
scripts/make_vad_eval.py) chunk by chunk, as silero-vad's own ``OnnxWrapper`` does: each call gets
the last 64 samples of the previous chunk (zeros at the clip's start) followed by 512 new samples,
and the ``stateN`` output of the previous call as ``state`` (zeros at the start). A frame is called
speech when the probability is >= 0.5; accuracy, precision, recall and F1 are against the frame
labels of the clean speech. Compared: ``edgerun.load("silero-vad", precision="fp32")``, a plain
ONNX Runtime session on the same file (must give identical probabilities), and what
``edgerun.load("silero-vad", precision="int8")`` does (it may fall back; its reason is reported).
"""

from __future__ import annotations

import argparse
import logging
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
FOLDER = REPO / "edgerun" / "models" / "silero-vad"
RATE = 16_000
CHUNK = 512
CONTEXT = 64
THRESHOLD = 0.5

Run = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


def load_eval(path: Path = FOLDER / "eval" / "vad-eval.npz") -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def stream(run: Run, clip: np.ndarray) -> np.ndarray:
    """Speech probability per 512-sample chunk of ``clip`` (int16), streamed with context and state."""
    samples = clip.astype(np.float32) / 32768
    context = np.zeros(CONTEXT, np.float32)
    state = np.zeros((2, 1, 128), np.float32)
    rate = np.array(RATE, np.int64)
    probabilities = []
    for start in range(0, len(samples) - CHUNK + 1, CHUNK):
        window = np.concatenate([context, samples[start : start + CHUNK]])[None]
        outputs = run({"input": window, "state": state, "sr": rate})
        probabilities.append(float(np.asarray(outputs["output"]).reshape(-1)[0]))
        state = np.asarray(outputs["stateN"], np.float32)
        context = window[0, -CONTEXT:]
    return np.array(probabilities, np.float32)


def scores(predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    predicted, labels = predicted.astype(bool).ravel(), labels.astype(bool).ravel()
    tp = int(np.sum(predicted & labels))
    fp = int(np.sum(predicted & ~labels))
    fn = int(np.sum(~predicted & labels))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def evaluate(run: Run, data: Mapping[str, np.ndarray], clips: slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities [clips, frames] over the selected clips, and their labels."""
    audio, labels = data["audio"][clips], data["labels"][clips]
    return np.stack([stream(run, clip) for clip in audio]), labels


def raw_run(path: Path) -> Run:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def run(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(None, dict(feeds)), strict=True))

    return run


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def table_row(label: str, result: Mapping[str, float]) -> str:
    return (
        f"{label:<34} acc {result['accuracy']:.4f}  precision {result['precision']:.4f}  "
        f"recall {result['recall']:.4f}  F1 {result['f1']:.4f}"
    )


def main() -> int:
    import edgerun

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "vad_accuracy.txt")
    args = parser.parse_args()
    data = load_eval()
    lines = [
        "Silero VAD (silero-vad 6.2.3, silero_vad_16k_op15.onnx) on edgerun's espeak-ng eval set",
        f"CPU: {cpu_model()}; edgerun {edgerun.__version__}; python {platform.python_version()}",
        f"eval: {data['audio'].shape[0]} clips x {data['audio'].shape[1] / RATE:.2f} s, "
        f"{data['labels'].size} frames of 32 ms, speech share {data['labels'].mean():.3f}, "
        f"seed {int(data['seed'])}, {data['espeak_version']}",
        f"threshold {THRESHOLD}; streamed 512 samples + 64 context per call, state carried",
        "",
    ]
    started = time.perf_counter()
    with edgerun.load("silero-vad", precision="fp32") as session:
        plan = session.plan
        fp32, labels = evaluate(session.run, data)
    elapsed = time.perf_counter() - started
    raw, _ = evaluate(raw_run(FOLDER / "model.onnx"), data)
    lines.append(f"edgerun plan: {plan.backend} {plan.device} {plan.precision}")
    lines.append(table_row("edgerun fp32 (all clips)", scores(fp32 >= THRESHOLD, labels)))
    lines.append(table_row("onnxruntime raw (all clips)", scores(raw >= THRESHOLD, labels)))
    identical = bool(np.array_equal(fp32, raw))
    lines.append(f"edgerun fp32 == raw onnxruntime: {identical} (max |diff| {float(np.max(np.abs(fp32 - raw))):.3g})")
    lines.append(f"edgerun fp32 stream time: {elapsed:.2f} s for {labels.size} chunks")
    lines.append("")
    for index, (kind, snr) in enumerate(zip(data["noise"], data["snr_db"], strict=True)):
        condition = str(kind) if not np.isfinite(snr) else f"{kind} {snr:g} dB"
        lines.append(table_row(f"clip {index} ({condition})", scores(fp32[index] >= THRESHOLD, labels[index])))
    lines.append("")
    calibration = calibration_arrays(data)
    check = dict(np.load(FOLDER / "check" / "check.npz"))
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("precision='int8' (the card's calibration/calib.npz)", {}),
        ("precision='int8', calibration=<clip 1 windows>", {"calibration": calibration}),
        (
            "precision='int8', calibration=<clip 1 windows>, check_data=<check.npz>",
            {"calibration": calibration, "check_data": check},
        ),
    ]
    for label, extra in attempts:
        lines += int8_attempt(edgerun, label, extra, data, fp32, labels)
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


def calibration_arrays(data: Mapping[str, np.ndarray], clip: int = 1, every: int = 3) -> dict[str, np.ndarray]:
    """Every ``every``-th streamed window of clean clip ``clip`` with its real carried state (batch axis 1)."""
    run = raw_run(FOLDER / "model.onnx")
    samples = data["audio"][clip].astype(np.float32) / 32768
    context = np.zeros(CONTEXT, np.float32)
    state = np.zeros((2, 1, 128), np.float32)
    windows, states = [], []
    for index, start in enumerate(range(0, len(samples) - CHUNK + 1, CHUNK)):
        window = np.concatenate([context, samples[start : start + CHUNK]])[None]
        if index % every == 0:
            windows.append(window[0])
            states.append(state[:, 0])
        state = np.asarray(run({"input": window, "state": state, "sr": np.array(RATE, np.int64)})["stateN"])
        context = window[0, -CONTEXT:]
    return {"input": np.stack(windows), "state": np.stack(states, axis=1), "sr": np.array(RATE, np.int64)}


def int8_attempt(
    edgerun: Any,
    label: str,
    extra: Mapping[str, Any],
    data: Mapping[str, np.ndarray],
    fp32: np.ndarray,
    labels: np.ndarray,
) -> list[str]:
    """What ``load(..., precision="int8", **extra)`` does: plan, fallbacks, warnings, accuracy if it runs."""
    lines = [f"edgerun.load('silero-vad', {label}):"]
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.WARNING)
    logging.getLogger("edgerun").addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with edgerun.load("silero-vad", precision="int8", **extra) as session:
                plan = session.plan
                int8, _ = evaluate(session.run, data)
    except Exception as exc:  # reported, not fixed: this benchmark only measures
        lines.append(f"  failed: {type(exc).__name__}: {exc}")
        lines += [f"  log: {r.getMessage()}" for r in records]
        return lines
    finally:
        logging.getLogger("edgerun").removeHandler(handler)
    lines.append(f"  plan: {plan.backend} {plan.device} {plan.precision}")
    lines += [f"  fallback: {f}" for f in plan.fallbacks]
    lines += [f"  reason: {r}" for r in plan.reasons]
    lines += [f"  warning: {w.message}" for w in caught]
    lines += [f"  log: {r.getMessage()}" for r in records]
    lines.append(table_row(f"  {plan.precision} session (all clips)", scores(int8 >= THRESHOLD, labels)))
    agree = float(np.mean((int8 >= THRESHOLD) == (fp32 >= THRESHOLD)))
    lines.append(f"  frame decisions equal to fp32: {agree:.4f} ({round(agree * fp32.size)}/{fp32.size})")
    lines.append(f"  max |p_int8 - p_fp32|: {float(np.max(np.abs(int8 - fp32))):.4f}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
