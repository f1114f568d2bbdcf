"""The batcher in front of a real GPU: does edgerun's Python keep the device busy?

``batching.py``'s stand-in predicts GPU behaviour with a sleep. This runs the real thing where a
CUDA device is present: the weight-bound 4x2048 MLP's own weights (read from its ONNX file) on
the GPU through PyTorch, one CUDA graph per batch size 1..16 (as edgerun's TensorRT path replays
one per shape), each call copying its rows to the device, replaying, and copying the output back
(the sync releases the GIL, as a TensorRT call's does). ``--repeat`` applies the four layers R
times inside the graph, a knob on GPU time per batch, so the ``--gpu-ms`` targets (default 0.05,
0.5 and 2 ms per full batch) are met by real kernels rather than a sleep.

One "context" serialises its calls (a lock, like a TensorRT execution context), so:

* ``offline 1T``: one thread sending full batches of 16 back to back: the limit, ``16 / d``.
* ``threads``: N callers sending batch-1 requests straight to one context (what an app without
  a batcher gets on TensorRT).
* ``batcher 1i`` / ``batcher 2i``: ``DynamicBatcher`` (max batch 16) over one context, or two
  contexts with their own streams and graphs; the callers are N threads calling ``infer``.
* ``asyncio 1i``: the one-context batcher with N asyncio tasks on one event loop thread awaiting
  ``infer_async`` (how a server thread serves many streams: one wake-up per batch, not per request).

Reported: each cell's rate and its fraction of the offline limit, p50/p99 latency, mean batch.
Without CUDA it runs the same cells eagerly on the CPU (``--device cpu``), which checks the
script, not the claim.

    python benchmarks/gpu_batching.py [--device cuda] [--dtype fp16] [--gpu-ms 0.05 0.5 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from _common import lscpu_facts, machine
from batching import MLP_PATH, Cell, ensure_mlp, run_rounds, summarise
from onnx import numpy_helper
from rich.console import Console
from rich.table import Table

import edgerun
from edgerun.runtime.batching import DynamicBatcher

MAX_BATCH = 16
ROW = 2048
MAX_REPEAT = 1000
"""At most this many passes of the four layers in one graph (about 10 ms of H200 time at FP16)."""


def mlp_weights(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight [in, out], bias [out]) per layer, in order, from the MLP written by scripts/make_mlp.py."""
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    layers = []
    while f"w{len(layers)}" in inits:
        layers.append((inits[f"w{len(layers)}"], inits[f"b{len(layers)}"]))
    return layers


class Context:
    """One GPU "execution context": its own stream, weights and graphs, calls serialised by a lock."""

    def __init__(self, torch: Any, layers: list[tuple[np.ndarray, np.ndarray]], device: str, dtype: Any, repeat: int):
        self.torch, self.device, self.dtype, self.repeat = torch, torch.device(device), dtype, repeat
        self.weights = [
            (torch.tensor(w, device=self.device, dtype=dtype), torch.tensor(b, device=self.device, dtype=dtype))
            for w, b in layers
        ]
        self.lock = threading.Lock()
        self.cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.graphs: dict[int, tuple[Any, Any, Any]] = {}
        if self.cuda:
            for rows in range(1, MAX_BATCH + 1):
                self.graphs[rows] = self._capture(rows)

    def _forward(self, h: Any) -> Any:
        last = len(self.weights) - 1
        for _ in range(self.repeat):
            for i, (w, b) in enumerate(self.weights):
                h = self.torch.addmm(b, h, w)
                if i < last:
                    h = self.torch.relu(h)
        return h

    def _capture(self, rows: int) -> tuple[Any, Any, Any]:
        torch = self.torch
        static_in = torch.zeros((rows, ROW), device=self.device, dtype=self.dtype)
        with torch.cuda.stream(self.stream), torch.inference_mode():
            for _ in range(3):  # warm-up on the capture stream, as torch.cuda.graph requires
                self._forward(static_in)
            self.stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self.stream):
                static_out = self._forward(static_in)
        return graph, static_in, static_out

    def run(self, x: np.ndarray) -> np.ndarray:
        torch = self.torch
        with self.lock, torch.inference_mode():
            if not self.cuda:
                return self._forward(torch.from_numpy(x).to(self.dtype)).float().numpy()
            graph, static_in, static_out = self.graphs[len(x)]
            with torch.cuda.stream(self.stream):
                static_in.copy_(torch.from_numpy(x))
                graph.replay()
                return static_out.float().cpu().numpy()  # waits for the stream, GIL released


def timed(fn: Callable[[], object], calls: int) -> float:
    """Median seconds per call of ``fn`` over ``calls`` calls."""
    durations = []
    for _ in range(calls):
        began = time.perf_counter()
        fn()
        durations.append(time.perf_counter() - began)
    return float(np.median(durations))


def choose_repeat(torch: Any, layers: Any, device: str, dtype: Any, target_ms: float) -> int:
    """The layer repeat whose full batch takes about ``target_ms`` (at least 1)."""
    probe = Context(torch, layers, device, dtype, 1)
    batch = np.zeros((MAX_BATCH, ROW), np.float32)
    one = timed(lambda: probe.run(batch), 50)
    probe4 = Context(torch, layers, device, dtype, 4)
    four = timed(lambda: probe4.run(batch), 50)
    per_repeat = max((four - one) / 3, one / 100)  # noise can make four passes look no slower than one
    fixed = max(one - per_repeat, 0.0)
    return min(MAX_REPEAT, max(1, round((target_ms / 1e3 - fixed) / per_repeat)))


def measure(
    torch: Any, layers: Any, device: str, dtype: Any, repeat: int, callers: Sequence[int], seconds: float,
    rounds: int, delay_ms: float, session: edgerun.Session,
) -> dict[str, Any]:  # fmt: skip
    contexts = [Context(torch, layers, device, dtype, repeat) for _ in range(2)]
    pool: queue.SimpleQueue[Context] = queue.SimpleQueue()
    for context in contexts:
        pool.put(context)

    def pooled(feeds: Any) -> dict[str, np.ndarray]:
        context = pool.get()
        try:
            return {"y": context.run(next(iter(feeds.values())))}
        finally:
            pool.put(context)

    full = np.random.default_rng(1).random((MAX_BATCH, ROW), dtype=np.float32)
    d = timed(lambda: contexts[0].run(full), 200)
    one = contexts[0]
    single = session.reopen()  # the one-instance batcher's session: one context, as on TensorRT
    single.run_validated = lambda feeds: {"y": one.run(next(iter(feeds.values())))}
    session.run_validated = pooled  # the two-instance batcher's calls take whichever context is free
    opts = {"max_batch_size": MAX_BATCH, "max_queue_delay_ms": delay_ms, "session_per_instance": False}
    batchers = {1: DynamicBatcher(single, instances=1, **opts), 2: DynamicBatcher(session, instances=2, **opts)}
    rows = {n: [np.random.default_rng(i).random((1, ROW), dtype=np.float32) for i in range(n)] for n in callers}
    cells = [Cell("offline 1T", 1, one.run, [full], rows_per_call=MAX_BATCH)]
    for n in callers:
        cells.append(Cell("threads", n, one.run, rows[n]))
        cells += [Cell(f"batcher {i}i", n, batchers[i].infer, rows[n], batcher=batchers[i]) for i in (1, 2)]
        cells.append(
            Cell("asyncio 1i", n, batchers[1].infer, rows[n], batcher=batchers[1], awaited=batchers[1].infer_async)
        )
    run_rounds(cells, rounds, seconds / rounds)
    for batcher in batchers.values():
        batcher.close()
    single.close()
    results = [summarise(cell) for cell in cells]
    offline = results[0]["req_per_s"]
    for result in results:
        result["vs_offline"] = result["req_per_s"] / offline
    return {"repeat": repeat, "full_batch_ms": d * 1e3, "ideal_req_per_s": MAX_BATCH / d, "cells": results}


def render(console: Console, label: str, result: dict[str, Any]) -> None:
    table = Table(title=f"{label}: full batch {result['full_batch_ms']:.3f} ms (repeat {result['repeat']})")
    for column in ("mode", "callers", "req/s", "vs offline", "p50 ms", "p99 ms", "mean batch"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for cell in result["cells"]:
        table.add_row(
            cell["mode"], str(cell["callers"]), f"{cell['req_per_s']:,.0f}", f"{cell['vs_offline']:.2f}",
            f"{cell['p50_ms']:.3f}", f"{cell['p99_ms']:.3f}", f"{cell['mean_batch']:.1f}",
        )  # fmt: skip
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--device", default=None, help="cuda (default where available) or cpu")
    parser.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16")
    parser.add_argument("--gpu-ms", nargs="+", type=float, default=[0.05, 0.5, 2.0], help="target ms per full batch")
    parser.add_argument("--callers", nargs="+", type=int, default=[1, 16, 64])
    parser.add_argument("--seconds", type=float, default=1.0, help="measured seconds per cell, over the rounds")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--delay-ms", type=float, default=1.0, help="max_queue_delay_ms of the batchers")
    parser.add_argument("--mlp-path", type=Path, default=MLP_PATH)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if args.dtype == "fp16" and device != "cpu" else torch.float32
    console = Console(width=150)
    info: dict[str, Any] = {**machine(), **lscpu_facts(), "torch": torch.__version__, "device": device}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    console.print(
        f"{info.get('gpu', 'CPU')} | {info['cpu']}, {info['cores']} cores | torch {torch.__version__} | {dtype}"
    )
    ensure_mlp(args.mlp_path, console)
    layers = mlp_weights(args.mlp_path)
    session = edgerun.load(str(args.mlp_path))
    results = []
    for target in args.gpu_ms:
        repeat = choose_repeat(torch, layers, device, dtype, target)
        result = measure(
            torch, layers, device, dtype, repeat, args.callers, args.seconds, args.rounds, args.delay_ms, session
        )
        result["target_ms"] = target
        render(console, f"target {target} ms", result)
        results.append(result)
    session.close()
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "dtype": str(dtype), "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
