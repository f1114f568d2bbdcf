"""``load(..., batching=True)`` with its measured defaults against threads sharing one session.

Issue 18's "defaults that use the device": with 16 closed-loop callers, the batcher that
``load(model, batching=True)`` builds (instances from the cores, max batch where the per-row cost
stops falling: `edgerun.runtime.batching.policy`) must reach at least the rate of 16 threads
calling ``Session.run`` on one shared session. Both modes run in interleaved rounds in one process;
the policy's choice and its reason are printed from ``stats()["chosen"]``.

    python benchmarks/batching_defaults.py [--models tiny tinymlp mlp cnn] [--callers 16] [--seconds 1] [--rounds 6]
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from _common import lscpu_facts, machine, vector_flags
from batching import MLP_PATH, REPO, ModelCase, closed_loop, ensure_mlp, model_cases
from rich.console import Console
from rich.table import Table

import edgerun

TINY_MLP_WIDTHS = (64, 256, 10)
TINY_MLP_PATH = REPO / "benchmarks" / ".models" / "mlp-64-256-10.onnx"
"""Issue 18's tiny MLP (made by scripts/make_mlp.py when missing; the folder is git-ignored)."""
TARGET = 1.0
"""With defaults, 16 callers: the batcher >= 1.0x the rate of threads sharing a session."""


MODELS = ("tiny", "tinymlp", "mlp", "cnn")


def measure(case: ModelCase, callers: int, seconds: float, rounds: int) -> dict[str, Any]:
    """Requests per second of both modes (median over rounds) and what the defaults chose."""
    inputs = [case.row(seed) for seed in range(callers)]
    shared = edgerun.load(case.model)
    batched = edgerun.load(case.model, batching=True)
    rates: dict[str, list[float]] = {"threads": [], "batcher": []}
    try:
        for call in (shared.run, batched.run):  # warm both, and the policy's measurement is done at load
            call(inputs[0])
        for index in range(rounds):
            order = [("threads", shared.run), ("batcher", batched.run)]
            for mode, call in order if index % 2 == 0 else order[::-1]:
                block = closed_loop([call] * callers, inputs, seconds)
                rates[mode].append(block.requests / block.wall_s)
        stats = batched.batcher.stats()  # type: ignore[attr-defined]
    finally:
        batched.close()
        shared.close()
    threads, batcher = statistics.median(rates["threads"]), statistics.median(rates["batcher"])
    ratios = sorted(b / t for b, t in zip(rates["batcher"], rates["threads"], strict=True))  # adjacent blocks
    return {
        "model": case.label,
        "threads": threads,
        "batcher": batcher,
        "ratio": statistics.median(ratios),
        "ratio_range": (ratios[0], ratios[-1]),
        "mean_batch": stats.get("mean_batch_size"),
        "chosen": stats.get("chosen", {}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--callers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=1.0, help="measured seconds per mode per round")
    parser.add_argument("--rounds", type=int, default=6, help="rounds (modes alternate; the ratio is the median of "
                        "each round's, this VM's rates drift by 2x between seconds)")  # fmt: skip
    args = parser.parse_args(argv)
    console = Console(width=200)
    info = {**machine(), **lscpu_facts()}
    wide = " ".join(vector_flags(info))
    console.print(f"{info['cpu']} (lscpu: {info.get('lscpu_model')}; flags include {wide or 'no avx2/avx512/amx'}), "
                  f"{info['cores']} cores, onnxruntime {info['onnxruntime']}, Python {info['python']}")  # fmt: skip
    ensure_mlp(MLP_PATH, console)
    ensure_mlp(TINY_MLP_PATH, console, TINY_MLP_WIDTHS)
    cases = {**model_cases(MLP_PATH), "tinymlp": ModelCase(
        "tinymlp", str(TINY_MLP_PATH), "MLP 64-256-10 (tiny)", "x", (64,), 16, 1.5)}  # fmt: skip
    table = Table(title=f"load(..., batching=True) vs threads sharing a session, {args.callers} callers")
    for column in ("model", "threads req/s", "batcher req/s", "÷ threads (min-max)", "mean batch", "chosen",
                   f"≥ {TARGET}x"):  # fmt: skip
        table.add_column(column)
    for key in args.models:
        r = measure(cases[key], args.callers, args.seconds, args.rounds)
        chosen = r["chosen"]
        size = chosen.get("max_batch_size")
        why = f"{chosen.get('instances')} instance(s), max batch {size}: {chosen.get('batch_why')}"
        low, high = r["ratio_range"]
        table.add_row(
            r["model"], f"{r['threads']:.0f}", f"{r['batcher']:.0f}", f"{r['ratio']:.2f}x ({low:.2f}-{high:.2f})",
            f"{r['mean_batch']:.1f}" if r["mean_batch"] else "-", why, "yes" if r["ratio"] >= TARGET else "no",
        )  # fmt: skip
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
