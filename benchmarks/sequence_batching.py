"""Sequence batching: text requests of random lengths through the `DynamicBatcher`, with and without length buckets.

The text classifier of ``tests/sequence_models.py`` (embedding, one masked attention layer, FFN,
masked mean pooling; ``--vocab`` 8000, ``--dim`` 128 by default), ``--callers`` closed-loop threads
(each sends its next request when the last returns) with lengths drawn uniformly from 8..128
(seeded per caller), in three modes measured in the same run:

* ``threads``: the callers share one ``Session`` without batching (the baseline).
* ``batcher``: ``DynamicBatcher(max_batch_size=16, max_queue_delay_ms=1, instances=cores)``: only requests of the
  same length share a batch, so with 121 lengths most batches hold one request.
* ``buckets``: the same batcher with ``pad_sequences=(16, 32, 64, 128)``: lengths share batches,
  padded through ``attention_mask`` and cut back before return.

Each round runs the modes forward then backward, so drift hits them alike; req/s is requests over
wall time, latencies are pooled per request, mean batch size comes from `DynamicBatcher.stats()`.

    python benchmarks/sequence_batching.py [--quick] [--seconds 3] [--rounds 2] [--out PATH]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from _common import REPO, machine, usable_cores

import edgerun
from edgerun.runtime.batching import DynamicBatcher

sys.path.insert(0, str(REPO))
from tests.sequence_models import save, text_classifier_model

BUCKETS = (16, 32, 64, 128)
LENGTHS = (8, 128)
MODES = ("threads", "batcher", "buckets")
RESULT = REPO / "benchmarks" / "results" / "sequence_batching.txt"
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")

Run = Callable[[Mapping[str, np.ndarray]], Any]


def cpu() -> tuple[str, list[str]]:
    """lscpu's model name and which of the flags of interest the CPU has."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return machine()["cpu"], []
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = set(fields.get("Flags", "").split())
    return fields.get("Model name", "?").strip(), [f"{f}={'yes' if f in flags else 'no'}" for f in FLAGS]


def caller_feeds(seed: int, count: int, vocab: int) -> list[dict[str, np.ndarray]]:
    """A caller's requests: one row each, length uniform in LENGTHS, ids in [1, vocab)."""
    rng = np.random.default_rng(seed)
    feeds = []
    for length in rng.integers(LENGTHS[0], LENGTHS[1] + 1, count):
        feeds.append(
            {
                "input_ids": rng.integers(1, vocab, (1, int(length)), dtype=np.int64),
                "attention_mask": np.ones((1, int(length)), np.int64),
            }
        )
    return feeds


def closed_loop(run: Run, feeds: list[list[dict[str, np.ndarray]]], seconds: float) -> tuple[int, float, list[float]]:
    """Requests done, wall seconds and every latency (s) of ``len(feeds)`` callers calling ``run`` back to back."""
    latencies: list[list[float]] = [[] for _ in feeds]
    start_gate = threading.Barrier(len(feeds) + 1)
    stop_at = [0.0]

    def caller(i: int) -> None:
        mine, own = feeds[i], latencies[i]
        start_gate.wait()
        k = 0
        while True:
            began = time.perf_counter()
            if began >= stop_at[0]:
                return
            run(mine[k % len(mine)])
            own.append(time.perf_counter() - began)
            k += 1

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(len(feeds))]
    for thread in threads:
        thread.start()
    begin = time.perf_counter()
    stop_at[0] = begin + seconds
    start_gate.wait()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - begin
    pooled = [x for own in latencies for x in own]
    return len(pooled), wall, pooled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--callers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per mode per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (modes forward, then backward)")
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--delay-ms", type=float, default=1.0)
    parser.add_argument(
        "--instances", type=int, default=usable_cores(), help="batcher workers (default: one per core, as threads use)"
    )
    parser.add_argument("--buckets", type=int, nargs="+", default=list(BUCKETS), help=f"default {BUCKETS}")
    parser.add_argument("--quick", action="store_true", help="1 round of 1.5 s per mode")
    parser.add_argument("--out", type=Path, default=RESULT, help=f"result text (default {RESULT})")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, 1.5

    folder = Path(tempfile.mkdtemp(prefix="edgerun-seqbatch-"))
    path = save(text_classifier_model(vocab=args.vocab, dim=args.dim), folder / "text.onnx")
    session = edgerun.load(path)
    feeds = [caller_feeds(1000 + i, 500, args.vocab) for i in range(args.callers)]
    options = {"max_batch_size": args.max_batch_size, "max_queue_delay_ms": args.delay_ms, "instances": args.instances}
    buckets = tuple(args.buckets)
    batchers = {
        "batcher": DynamicBatcher(session, **options),
        "buckets": DynamicBatcher(session, pad_sequences=buckets, **options),
    }
    runs: dict[str, Run] = {"threads": session.run, **{m: b.infer for m, b in batchers.items()}}

    row_ms = {}
    for length in (8, 64, 128):  # what one row costs alone, for scale
        one = caller_feeds(7, 1, args.vocab)[0]
        one = {k: np.resize(v, (1, length)) for k, v in one.items()}
        for _ in range(5):
            session.run(one)
        began = time.perf_counter()
        for _ in range(50):
            session.run(one)
        row_ms[length] = (time.perf_counter() - began) / 50 * 1e3

    for run in runs.values():  # warm-up
        closed_loop(run, feeds, 0.3)
    for batcher in batchers.values():
        batcher.close()
    batchers = {
        "batcher": DynamicBatcher(session, **options),
        "buckets": DynamicBatcher(session, pad_sequences=buckets, **options),
    }  # fresh stats after the warm-up
    runs = {"threads": session.run, **{m: b.infer for m, b in batchers.items()}}

    done = dict.fromkeys(MODES, 0)
    wall = dict.fromkeys(MODES, 0.0)
    latencies: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(args.rounds):
        for mode in MODES if r % 2 == 0 else tuple(reversed(MODES)):
            count, seconds, lat = closed_loop(runs[mode], feeds, args.seconds)
            done[mode] += count
            wall[mode] += seconds
            latencies[mode] += lat
    stats = {m: b.stats() for m, b in batchers.items()}
    for batcher in batchers.values():
        batcher.close()
    session.close()

    rate = {m: done[m] / wall[m] for m in MODES}
    lengths = [f["input_ids"].shape[1] for caller in feeds for f in caller]
    padded = [min([b for b in buckets if b >= n], default=n) for n in lengths]
    model, flags = cpu()
    info = machine()
    lines = [
        "Sequence batching: text classifier, random lengths, closed-loop callers (benchmarks/sequence_batching.py)",
        f"model: text classifier vocab {args.vocab}, dim {args.dim}, 1 attention layer, FFN {4 * args.dim}; "
        f"one row alone: " + ", ".join(f"len {n} {ms:.2f} ms" for n, ms in row_ms.items()),
        f"load: {args.callers} callers, lengths uniform {LENGTHS[0]}..{LENGTHS[1]} (seeded), max_batch_size "
        f"{args.max_batch_size}, max_queue_delay_ms {args.delay_ms}, instances {args.instances}, buckets {buckets}; "
        f"{args.rounds} round(s) x {args.seconds:g} s per mode",
        f"cpu: {model} ({info['cores']} cores); {' '.join(flags)}",
        f"onnxruntime {info['onnxruntime']}, numpy {info['numpy']}, python {info['python']}, {info['timestamp']}",
        "",
        f"{'mode':<10} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'mean batch':>11} {'requests':>9}",
    ]
    for mode in MODES:
        p50, p99 = np.percentile(np.array(latencies[mode]) * 1e3, [50, 99])
        batch = f"{stats[mode]['mean_batch_size']:.2f}" if mode in stats else "1 (none)"
        lines.append(f"{mode:<10} {rate[mode]:>9.1f} {p50:>9.2f} {p99:>9.2f} {batch:>11} {done[mode]:>9}")
    lines += [
        "",
        f"padding: the buckets run {sum(padded) / sum(lengths):.2f}x the tokens the requests hold "
        f"(mean length {np.mean(lengths):.1f}, mean bucket {np.mean(padded):.1f})",
        f"buckets / batcher (no buckets): {rate['buckets'] / rate['batcher']:.2f}x req/s",
        f"buckets / threads (no batching): {rate['buckets'] / rate['threads']:.2f}x req/s",
        f"batcher / threads: {rate['batcher'] / rate['threads']:.2f}x req/s",
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
