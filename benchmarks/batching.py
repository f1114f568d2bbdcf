"""Dynamic batching: edgerun's `DynamicBatcher` against threads, serial calls and the offline limit.

For each model, ``N`` caller threads issue batch-1 requests back to back (a closed loop: each
caller sends its next request when the last one returns; inputs seeded per caller), in these
modes, all measured in one run:

* ``serial``: one thread calling ``Session.run`` (the single-stream baseline; N = 1).
* ``threads``: N threads sharing one ``Session`` (ONNX Runtime runs concurrent calls), no batching.
* ``batcher 1i``: ``DynamicBatcher(session, instances=1)``, callers use ``batcher.infer``.
* ``batcher 2i shared``: ``instances=2`` over the one shared ORT session.
* ``batcher 2i own``: ``instances=2, session_per_instance=True`` (a second session for worker 2).
* ``offline 1T`` / ``offline 2T shared`` / ``offline 2T own``: pre-formed batches of the maximum
  size, back to back from one thread (the issue's physical ceiling), and from two threads (on
  one shared session, or one session each) as the ceiling of the two-instance batchers.

Every cell of a model runs ``--rounds`` blocks, visiting the cells forward then backward so drift
hits them alike; throughput is requests / wall time (the window ends when the last request
returns) and latencies are pooled per request (offline: per batch call). The batchers' mean
batch size comes from `DynamicBatcher.stats()`.

A GPU stand-in (``--standin MS ...``, default 0.25 0.5 1 2 ms; ``--quick``: 0.5) replaces the
session's ``run_validated`` with a call that sleeps a fixed time per batch whatever its size
(``time.sleep`` releases the GIL, like a GPU kernel launch and sync) and returns zero rows of the
right shapes, max batch 16. The stand-in's real duration ``d`` is measured (sleep overshoots); the
ideal rate is ``16 / d`` and each cell reports the batcher's fraction of it at 1, 4, 16, 64
closed-loop callers, instances 1 and 2 (2 instances can pass 1.0), with p50/p99 latency.
Targets: >= 60% of ideal at 16 callers, >= 80% at 64.

A further measurement times one request on an idle batcher: ``batcher.infer`` (it runs in the
caller's thread) and ``batcher.submit(x).result()`` (hand-off to a worker) against a direct
``Session.run``, in interleaved rounds like ``overhead.py``.

    python benchmarks/batching.py [--quick] [--models tiny mlp cnn] [--callers 1 4 16 64] [--standin 0.5]
                                  [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _common import REPO, bootstrap_median, interleaved_blocks, lscpu_facts, machine, row_shape, vector_flags
from rich.console import Console
from rich.table import Table

import edgerun
from edgerun.runtime.batching import DynamicBatcher
from edgerun.runtime.batching.stats import mean_batch_size

MLP_PATH = REPO / "benchmarks" / ".models" / "mlp-2048x4.onnx"

# Targets from the issue.
MLP_VS_THREADS = 4.0
"""Weight-bound MLP, 16 callers: batcher throughput >= 4x that of 16 threads sharing one session."""
MLP_VS_OFFLINE = 0.80
"""... and >= 80% of the offline limit."""
CNN_VS_OFFLINE = 0.95
"""CNN, 16 callers: batcher throughput >= 95% of the offline limit (p99 reported)."""
LONE_TARGET_US = 100.0
"""A lone request on an idle batcher: latency <= direct Session.run + 0.1 ms."""
TARGET_CALLERS = 16
STANDIN_MAX_BATCH = 16
STANDIN_CALLERS = (1, 4, 16, 64)
STANDIN_VS_IDEAL = {16: 0.60, 64: 0.80}
"""GPU stand-in: the batcher's throughput as a fraction of the ideal 16 / d, by callers."""


@dataclass(frozen=True)
class ModelCase:
    key: str
    model: str
    """Bundled name or path, as given to `edgerun.load`."""
    label: str
    input_name: str
    row_shape: tuple[int, ...]
    max_batch: int
    seconds: float
    """Default measured seconds per cell (split over the rounds)."""

    def row(self, seed: int) -> np.ndarray:
        """One seeded batch-1 request."""
        return np.random.default_rng(seed).random((1, *self.row_shape), dtype=np.float32)

    def batch(self, seed: int) -> np.ndarray:
        """One seeded, pre-formed batch of the maximum size."""
        return np.random.default_rng(seed).random((self.max_batch, *self.row_shape), dtype=np.float32)


def model_cases(mlp_path: Path) -> dict[str, ModelCase]:
    return {
        "tiny": ModelCase("tiny", "digits-student", "digits-student (tiny CNN)", "image", (1, 8, 8), 64, 1.5),
        "mlp": ModelCase("mlp", str(mlp_path), "MLP 4x2048 (weight-bound)", "x", (2048,), 16, 2.5),
        "cnn": ModelCase("cnn", "ppocr-det", "ppocr-det 224x224 (CNN)", "x", (3, 224, 224), 16, 4.0),
    }


def ensure_mlp(path: Path, console: Console, widths: Sequence[int] = ()) -> None:
    """Write the MLP (``widths``: input, hidden, output sizes; default 4x2048) with scripts/make_mlp.py when missing."""
    if path.is_file():
        return
    console.print(f"[dim]{path} missing: generating it with scripts/make_mlp.py[/]")
    extra = ["--widths", *map(str, widths)] if widths else []
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_mlp.py"), str(path), *extra], check=True)


# --- the closed loop ----------------------------------------------------------------------------


@dataclass
class Block:
    requests: int
    wall_s: float
    latencies_s: list[float]
    cpu_s: float = 0.0
    """CPU seconds of the whole process (every core) over the block: what the requests cost, waits excluded."""


def closed_loop(calls: Sequence[Callable[[np.ndarray], object]], inputs: Sequence[np.ndarray], seconds: float) -> Block:
    """``len(inputs)`` threads, thread ``i`` calling ``calls[i](inputs[i])`` back to back for ``seconds``.

    All threads start together (a barrier); each stops issuing at the deadline and finishes its
    request in flight. The wall time runs from the start to the last completion, so a block
    never ends between the requests of a batch.
    """
    n = len(inputs)
    latencies: list[list[float]] = [[] for _ in range(n)]
    last_done = [0.0] * n
    errors: list[BaseException] = []
    barrier = threading.Barrier(n + 1)
    window: dict[str, float] = {}

    def caller(i: int) -> None:
        call, x, out, clock = calls[i], inputs[i], latencies[i], time.perf_counter
        barrier.wait()
        stop = window["stop"]
        try:
            while True:
                began = clock()
                if began >= stop:
                    break
                call(x)
                ended = clock()
                out.append(ended - began)
                last_done[i] = ended
        except BaseException as exc:  # reported after the block, never silently dropped
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        cpu_start = time.process_time()
        window["start"] = time.perf_counter()
        window["stop"] = window["start"] + seconds
        barrier.wait()
        for thread in threads:
            thread.join()
        cpu_s = time.process_time() - cpu_start
    finally:
        if gc_was_enabled:
            gc.enable()
    if errors:
        raise RuntimeError(f"a caller failed: {errors[0]!r}") from errors[0]
    pooled = [value for per_thread in latencies for value in per_thread]
    return Block(len(pooled), max(last_done) - window["start"], pooled, cpu_s)


def closed_loop_async(
    call: Callable[[np.ndarray], Awaitable[object]], inputs: Sequence[np.ndarray], seconds: float
) -> Block:
    """``closed_loop`` with asyncio tasks instead of threads: one event loop thread, task ``i`` awaiting
    ``call(inputs[i])`` back to back for ``seconds`` (how one server thread serves many streams)."""
    n = len(inputs)
    latencies: list[list[float]] = [[] for _ in range(n)]
    last_done = [0.0] * n
    window: dict[str, float] = {}

    async def caller(i: int) -> None:
        x, out, clock, stop = inputs[i], latencies[i], time.perf_counter, window["stop"]
        while True:
            began = clock()
            if began >= stop:
                break
            await call(x)
            ended = clock()
            out.append(ended - began)
            last_done[i] = ended

    async def main() -> None:
        window["start"] = time.perf_counter()
        window["stop"] = window["start"] + seconds
        await asyncio.gather(*(caller(i) for i in range(n)))

    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        cpu_start = time.process_time()
        asyncio.run(main())
        cpu_s = time.process_time() - cpu_start
    finally:
        if gc_was_enabled:
            gc.enable()
    pooled = [value for per_task in latencies for value in per_task]
    return Block(len(pooled), max(last_done) - window["start"], pooled, cpu_s)


# --- cells ----------------------------------------------------------------------------------------


@dataclass
class Cell:
    mode: str
    callers: int
    call: Callable[[np.ndarray], object] | list[Callable[[np.ndarray], object]]
    """What every caller thread calls, or one callable per thread."""
    inputs: list[np.ndarray]
    rows_per_call: int = 1
    batcher: DynamicBatcher | None = None
    offline_ref: str | None = None
    """The offline cell with the same parallelism (batcher cells)."""
    blocks: list[Block] | None = None
    histogram: dict[int, int] | None = None
    inline: int = 0
    awaited: Callable[[np.ndarray], Awaitable[object]] | None = None
    """Callers are asyncio tasks on one event loop awaiting this (``call`` unused), not threads."""


def histogram_diff(after: dict[int, int], before: dict[int, int]) -> dict[int, int]:
    """The batch sizes counted between two ``stats()`` histograms (sizes that did not change left out)."""
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def run_cell(cell: Cell, seconds: float) -> None:
    before = cell.batcher.stats() if cell.batcher else None
    calls = cell.call if isinstance(cell.call, list) else [cell.call] * len(cell.inputs)
    if cell.awaited is not None:
        block = closed_loop_async(cell.awaited, cell.inputs, seconds)
    else:
        block = closed_loop(calls, cell.inputs, seconds)
    cell.blocks = [*(cell.blocks or []), block]
    if cell.batcher is not None and before is not None:
        after = cell.batcher.stats()
        diff = histogram_diff(after["batch_size_histogram"], before["batch_size_histogram"])
        merged = dict(cell.histogram or {})
        for size, count in diff.items():
            merged[size] = merged.get(size, 0) + count
        cell.histogram = merged
        cell.inline += after["inline"] - before["inline"]


def run_rounds(cells: Sequence[Cell], rounds: int, block_s: float) -> None:
    """Every cell once per round for ``block_s``, forward then backward, so drift hits them alike."""
    for r in range(rounds):
        for cell in cells if r % 2 == 0 else list(reversed(cells)):
            run_cell(cell, block_s)


def summarise(cell: Cell) -> dict[str, Any]:
    blocks = cell.blocks or []
    calls = sum(b.requests for b in blocks)
    wall = sum(b.wall_s for b in blocks)
    lat_ms = np.asarray([v for b in blocks for v in b.latencies_s]) * 1e3
    if cell.histogram:
        batches = sum(cell.histogram.values())
        mean_batch = mean_batch_size(cell.histogram, batches)
    else:
        batches, mean_batch = calls, float(cell.rows_per_call)
    return {
        "mode": cell.mode,
        "callers": cell.callers,
        "requests": calls * cell.rows_per_call,
        "calls": calls,
        "wall_s": wall,
        "req_per_s": calls * cell.rows_per_call / wall if wall else 0.0,
        "cpu_us_per_request": sum(b.cpu_s for b in blocks) / (calls * cell.rows_per_call) * 1e6 if calls else None,
        "per_round_req_per_s": [b.requests * cell.rows_per_call / b.wall_s for b in blocks if b.wall_s],
        "latency_unit": "batch call" if cell.rows_per_call > 1 else "request",
        "p50_ms": float(np.percentile(lat_ms, 50, method="inverted_cdf")) if lat_ms.size else None,
        "p99_ms": float(np.percentile(lat_ms, 99, method="inverted_cdf")) if lat_ms.size else None,
        "mean_batch": mean_batch,
        "batches": batches,
        "batch_size_histogram": {str(k): v for k, v in sorted((cell.histogram or {}).items())},
        "inline": cell.inline,
        "offline_ref": cell.offline_ref,
    }


def _warm(session: edgerun.Session, case: ModelCase) -> None:
    """Run every batch size a batcher can form once (ORT's first call per shape is slow)."""
    for rows in range(1, case.max_batch + 1):
        session.run(case.batch(0)[:rows].copy())


def measure_model(
    case: ModelCase, callers: Sequence[int], seconds: float, rounds: int, delay_ms: float, console: Console
) -> dict[str, Any]:
    session = edgerun.load(case.model)
    second = session.reopen()  # the offline-2T-own side's second session
    opts = {"max_batch_size": case.max_batch, "max_queue_delay_ms": delay_ms}
    opened: list[edgerun.Session] = []  # the sessions "2i own" opens for its second instance, to warm them

    def reopen() -> edgerun.Session:
        opened.append(session.reopen())
        return opened[-1]

    batchers = {
        "batcher 1i": DynamicBatcher(session, instances=1, **opts),
        "batcher 2i shared": DynamicBatcher(session, instances=2, session_per_instance=False, **opts),
        "batcher 2i own": DynamicBatcher(
            session, instances=2, session_per_instance=True, session_factory=reopen, **opts
        ),
    }
    for s in (session, second, *opened):
        _warm(s, case)

    batch_inputs = [case.batch(1000 + i) for i in range(2)]
    cells: list[Cell] = [
        Cell("serial", 1, session.run, [case.row(0)]),
        Cell("offline 1T", 1, session.run, batch_inputs[:1], rows_per_call=case.max_batch),
        Cell("offline 2T shared", 2, session.run, batch_inputs, rows_per_call=case.max_batch),
    ]
    cells.append(Cell("offline 2T own", 2, [session.run, second.run], batch_inputs, rows_per_call=case.max_batch))
    refs = {"batcher 1i": "offline 1T", "batcher 2i shared": "offline 2T shared", "batcher 2i own": "offline 2T own"}
    for n in callers:
        inputs = [case.row(i) for i in range(n)]
        cells.append(Cell("threads", n, session.run, inputs))
        for mode, batcher in batchers.items():
            cells.append(Cell(mode, n, batcher.infer, inputs, batcher=batcher, offline_ref=refs[mode]))

    block_s = seconds / rounds
    total = len(cells) * seconds
    with console.status(f"{case.label}: {len(cells)} cells x {rounds} rounds (~{total:.0f} s)") as status:
        for r in range(rounds):
            order = cells if r % 2 == 0 else list(reversed(cells))
            for k, cell in enumerate(order):
                status.update(
                    f"{case.label}: round {r + 1}/{rounds}, cell {k + 1}/{len(cells)} ({cell.mode}, N={cell.callers})"
                )
                run_cell(cell, block_s)
    for batcher in batchers.values():
        batcher.close()
    second.close()
    session.close()

    rows = [summarise(c) for c in cells]
    by_key = {(r["mode"], r["callers"]): r for r in rows}
    offline = {r["mode"]: r for r in rows if r["mode"].startswith("offline")}
    for r in rows:
        shared = by_key.get(("threads", r["callers"]))
        is_batcher = r["mode"].startswith("batcher")
        r["vs_threads"] = r["req_per_s"] / shared["req_per_s"] if is_batcher and shared else None
        r["vs_offline_1t"] = r["req_per_s"] / offline["offline 1T"]["req_per_s"] if is_batcher else None
        ref = offline.get(r["offline_ref"] or "")
        r["vs_offline_same"] = r["req_per_s"] / ref["req_per_s"] if is_batcher and ref else None
        r["targets"] = _targets(case.key, r)
    serial = by_key[("serial", 1)]
    own_vs_shared = {
        n: by_key[("batcher 2i own", n)]["req_per_s"] / by_key[("batcher 2i shared", n)]["req_per_s"] for n in callers
    }
    return {
        "key": case.key,
        "model": case.label,
        "source": case.model,
        "input": {"name": case.input_name, "request_shape": [1, *case.row_shape]},
        "max_batch_size": case.max_batch,
        "max_queue_delay_ms": delay_ms,
        "threads_per_session": session.plan.threads,
        "seconds_per_cell": seconds,
        "rounds": rounds,
        "serial_req_per_s": serial["req_per_s"],
        "cells": rows,
        "own_vs_shared_throughput": {str(n): v for n, v in own_vs_shared.items()},
    }


def _targets(key: str, r: dict[str, Any]) -> dict[str, Any]:
    if not r["mode"].startswith("batcher") or r["callers"] != TARGET_CALLERS:
        return {}
    out: dict[str, Any] = {}
    if key == "mlp":
        out["vs_threads>=4x"] = r["vs_threads"] is not None and r["vs_threads"] >= MLP_VS_THREADS
        out["vs_offline>=0.80"] = r["vs_offline_same"] is not None and r["vs_offline_same"] >= MLP_VS_OFFLINE
        out["vs_offline_1t>=0.80"] = r["vs_offline_1t"] is not None and r["vs_offline_1t"] >= MLP_VS_OFFLINE
    elif key == "cnn":
        out["vs_offline>=0.95"] = r["vs_offline_same"] is not None and r["vs_offline_same"] >= CNN_VS_OFFLINE
        out["vs_offline_1t>=0.95"] = r["vs_offline_1t"] is not None and r["vs_offline_1t"] >= CNN_VS_OFFLINE
    return out


# --- GPU stand-in -----------------------------------------------------------------------------------


def standin_run(session: edgerun.Session, seconds: float) -> Callable[[Any], dict[str, np.ndarray]]:
    """A ``run_validated`` sleeping ``seconds`` per batch (GIL released), returning zero rows of the model's shapes."""
    x = np.zeros(row_shape(session), np.float32)
    shapes = {name: (value.shape[1:], value.dtype) for name, value in session.run(x).items()}
    sleep = time.sleep

    def run(feeds: Any) -> dict[str, np.ndarray]:
        rows = len(next(iter(feeds.values())))
        sleep(seconds)
        return {name: np.zeros((rows, *shape), dtype) for name, (shape, dtype) in shapes.items()}

    return run


def measure_standin(
    ms: float, callers: Sequence[int], seconds: float, rounds: int, delay_ms: float, console: Console
) -> dict[str, Any]:
    """The batcher in front of a fixed-time stand-in: fraction of 16 / d at each caller count, instances 1 and 2."""
    session = edgerun.load("digits-student")
    run = standin_run(session, ms / 1e3)
    full = {"image": np.zeros((STANDIN_MAX_BATCH, 1, 8, 8), np.float32)}
    durations = []
    for _ in range(max(20, int(0.2 / (ms / 1e3)))):
        began = time.perf_counter()
        run(full)
        durations.append(time.perf_counter() - began)
    measured_s = float(np.median(durations))
    session.run_validated = run
    opts = {"max_batch_size": STANDIN_MAX_BATCH, "max_queue_delay_ms": delay_ms, "session_per_instance": False}
    batchers = {i: DynamicBatcher(session, instances=i, **opts) for i in (1, 2)}
    cells = [
        Cell(
            f"stand-in {i}i",
            n,
            batchers[i].infer,
            [np.zeros((1, 1, 8, 8), np.float32) for _ in range(n)],
            batcher=batchers[i],
        )
        for i in batchers
        for n in callers
    ]
    cells += [  # one event loop thread whose tasks are the callers: one wake-up per batch, not per request
        Cell(
            "stand-in asyncio 1i",
            n,
            batchers[1].infer,
            [np.zeros((1, 1, 8, 8), np.float32) for _ in range(n)],
            batcher=batchers[1],
            awaited=batchers[1].infer_async,
        )
        for n in callers
    ]
    with console.status(f"GPU stand-in {ms} ms: {len(cells)} cells x {rounds} rounds"):
        run_rounds(cells, rounds, seconds / rounds)
    for batcher in batchers.values():
        batcher.close()
    session.close()
    ideal = STANDIN_MAX_BATCH / measured_s
    rows = []
    for cell in cells:
        r = summarise(cell)
        r["instances"] = int(cell.mode.split()[-1].rstrip("i"))
        r["caller_kind"] = "asyncio tasks" if cell.awaited is not None else "threads"
        r["vs_ideal"] = r["req_per_s"] / ideal
        target = STANDIN_VS_IDEAL.get(cell.callers)
        r["target"] = target
        r["meets_target"] = None if target is None else r["vs_ideal"] >= target
        rows.append(r)
    return {
        "standin_ms": ms,
        "measured_ms": measured_s * 1e3,
        "ideal_req_per_s": ideal,
        "max_batch_size": STANDIN_MAX_BATCH,
        "max_queue_delay_ms": delay_ms,
        "seconds_per_cell": seconds,
        "rounds": rounds,
        "cells": rows,
    }


def render_standin(console: Console, results: list[dict[str, Any]]) -> None:
    table = Table(
        title=(
            f"GPU stand-in: a fixed sleep per batch of up to {STANDIN_MAX_BATCH}; ideal = {STANDIN_MAX_BATCH} / "
            "measured duration (targets: >= 0.60 at 16 callers, >= 0.80 at 64)"
        )
    )
    for column in ("sleep ms", "measured ms", "ideal req/s", "callers", "instances", "N", "req/s", "÷ ideal", "p50 ms",
                   "p99 ms", "mean batch", "target"):  # fmt: skip
        table.add_column(column, justify="right")
    for result in results:
        for r in result["cells"]:
            target = "" if r["target"] is None else f"≥{r['target']:.2f} {_yes(r['meets_target'])}"
            table.add_row(
                f"{result['standin_ms']:g}",
                f"{result['measured_ms']:.3f}",
                f"{result['ideal_req_per_s']:.0f}",
                r["caller_kind"],
                str(r["instances"]),
                str(r["callers"]),
                f"{r['req_per_s']:.0f}",
                f"{r['vs_ideal']:.2f}",
                f"{r['p50_ms']:.3f}",
                f"{r['p99_ms']:.3f}",
                f"{r['mean_batch']:.1f}",
                target,
                end_section=r is result["cells"][-1],
            )
    console.print(table)


# --- a lone request ------------------------------------------------------------------------------


def lone_request(case: ModelCase, rounds: int, block_s: float) -> dict[str, Any]:
    """One caller, idle batcher: ``infer`` (inline) and ``submit().result()`` (worker) vs ``Session.run``."""
    session = edgerun.load(case.model)
    batcher = DynamicBatcher(session, max_batch_size=case.max_batch, max_queue_delay_ms=1.0)
    x = case.row(0)
    for got, want in zip(batcher.infer(x).values(), session.run(x).values(), strict=True):
        if not np.array_equal(got, want):
            raise SystemExit(f"{case.label}: batcher and session disagree; the comparison is void")
    sides: dict[str, Callable[[], object]] = {
        "direct": lambda: session.run(x),
        "infer": lambda: batcher.infer(x),
        "submit": lambda: batcher.submit(x).result(),
    }
    per_call, calls = interleaved_blocks(sides, rounds, block_s)
    before_inline = batcher.stats()["inline"]
    batcher.infer(x)
    inline_ok = batcher.stats()["inline"] == before_inline + 1
    batcher.close()
    session.close()
    direct = np.asarray(per_call["direct"])
    out: dict[str, Any] = {
        "model": case.label,
        "rounds": rounds,
        "calls_per_round": calls,
        "direct_us": float(np.median(direct) * 1e6),
        "infer_ran_inline": inline_ok,
    }
    for side in ("infer", "submit"):
        values = np.asarray(per_call[side])
        diff_us = (values - direct) * 1e6
        low, high = bootstrap_median(diff_us)
        out[side] = {
            "us": float(np.median(values) * 1e6),
            "delta_us": float(np.median(diff_us)),
            "delta_ci95_us": [low, high],
            "ratio": float(np.median(values / direct)),
            "meets_target": float(np.median(diff_us)) <= LONE_TARGET_US,
        }
    return out


# --- rendering -------------------------------------------------------------------------------------


def _yes(ok: bool) -> str:
    return "[green]yes[/]" if ok else "[red]no[/]"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def _target_text(key: str, r: dict[str, Any]) -> str:
    t = r["targets"]
    if not t:
        return ""
    if key == "mlp":
        return f"≥4x thr {_yes(t['vs_threads>=4x'])}, ≥0.80 off {_yes(t['vs_offline>=0.80'])}"
    if key == "cnn":
        return f"≥0.95 off {_yes(t['vs_offline>=0.95'])}, p99 {r['p99_ms']:.0f} ms"
    return ""


def render_model(console: Console, result: dict[str, Any]) -> None:
    table = Table(
        title=(
            f"{result['model']}: max_batch_size {result['max_batch_size']}, max_queue_delay "
            f"{result['max_queue_delay_ms']} ms, {result['threads_per_session']} ORT thread(s) per session"
        )
    )
    for column in (
        "mode",
        "N",
        "req/s",
        "p50 ms",
        "p99 ms",
        "mean batch",
        "÷ threads",
        "÷ offline 1T",
        "÷ offline same",
        "target (N=16)",
    ):
        table.add_column(column, justify="left" if column in ("mode", "target (N=16)") else "right")
    rows = result["cells"]
    offline_rows = [r for r in rows if r["mode"] in ("serial",) or r["mode"].startswith("offline")]
    others = [r for r in rows if r not in offline_rows]
    for r in offline_rows:
        unit = " /batch" if r["latency_unit"] == "batch call" else ""
        table.add_row(
            r["mode"],
            str(r["callers"]) + ("T" if r["mode"].startswith("offline") else ""),
            f"{r['req_per_s']:.0f}",
            f"{r['p50_ms']:.3f}{unit}",
            f"{r['p99_ms']:.3f}{unit}",
            f"{r['mean_batch']:.1f}",
            "",
            "",
            "",
            "",
            end_section=r is offline_rows[-1],
        )
    callers = sorted({r["callers"] for r in others})
    for n in callers:
        group = [r for r in others if r["callers"] == n]
        for r in group:
            table.add_row(
                r["mode"],
                str(n),
                f"{r['req_per_s']:.0f}",
                f"{r['p50_ms']:.3f}",
                f"{r['p99_ms']:.3f}",
                f"{r['mean_batch']:.1f}",
                _ratio(r["vs_threads"]),
                _ratio(r["vs_offline_1t"]),
                _ratio(r["vs_offline_same"]),
                _target_text(result["key"], r),
                end_section=r is group[-1],
            )
    console.print(table)
    shares = ", ".join(f"N={n}: {v:.2f}x" for n, v in result["own_vs_shared_throughput"].items())
    console.print(f"[dim]2 instances, session per instance vs shared session (throughput): {shares}[/]")


def render_lone(console: Console, results: list[dict[str, Any]]) -> None:
    table = Table(title="A lone request on an idle batcher vs a direct Session.run (median of interleaved rounds)")
    for column in (
        "model",
        "direct µs",
        "infer µs",
        "Δ infer µs (95% CI)",
        "≤ 100 µs",
        "submit().result() µs",
        "Δ submit µs (95% CI)",
    ):
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in results:
        i, s = r["infer"], r["submit"]
        table.add_row(
            r["model"],
            f"{r['direct_us']:.1f}",
            f"{i['us']:.1f}",
            f"{i['delta_us']:+.1f} ({i['delta_ci95_us'][0]:+.1f}..{i['delta_ci95_us'][1]:+.1f})",
            _yes(i["meets_target"]),
            f"{s['us']:.1f}",
            f"{s['delta_us']:+.1f} ({s['delta_ci95_us'][0]:+.1f}..{s['delta_ci95_us'][1]:+.1f})",
        )
    console.print(table)
    console.print(
        "[dim]infer on an idle batcher runs in the caller's thread; submit().result() always hands the "
        "request to a worker thread and waits on its future[/]"
    )


def render_summary(console: Console, results: list[dict[str, Any]]) -> None:
    table = Table(title="Issue targets (16 callers)")
    for column in ("model", "mode", "req/s", "÷ threads", "÷ offline same", "÷ offline 1T", "p99 ms", "met?"):
        table.add_column(column, justify="left" if column in ("model", "mode", "met?") else "right")
    for result in results:
        for r in result["cells"]:
            if not r["targets"]:
                continue
            met = all(v for k, v in r["targets"].items() if "_1t" not in k)
            table.add_row(
                result["model"],
                r["mode"],
                f"{r['req_per_s']:.0f}",
                _ratio(r["vs_threads"]),
                _ratio(r["vs_offline_same"]),
                _ratio(r["vs_offline_1t"]),
                f"{r['p99_ms']:.1f}",
                _yes(met),
            )
    if table.row_count:
        console.print(table)


def per_request_cost(result: dict[str, Any]) -> dict[str, float] | None:
    """Wall µs per request through ``batcher 1i`` at the most callers, minus the offline µs per row.

    With as many callers as the maximum batch size the batcher can fill every batch, so what
    remains over the offline per-row time is its own cost per request (queueing, stacking,
    splitting, futures and thread hand-offs, all under the GIL).
    """
    rows = result["cells"]
    offline = next(r for r in rows if r["mode"] == "offline 1T")
    loaded = [r for r in rows if r["mode"] == "batcher 1i"]
    if not loaded:
        return None
    best = max(loaded, key=lambda r: r["callers"])
    return {
        "callers": best["callers"],
        "batcher_us_per_request": 1e6 / best["req_per_s"],
        "offline_us_per_row": 1e6 / offline["req_per_s"],
        "overhead_us_per_request": 1e6 / best["req_per_s"] - 1e6 / offline["req_per_s"],
        "mean_batch": best["mean_batch"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        nargs="*",
        choices=("tiny", "mlp", "cnn"),
        default=["tiny", "mlp", "cnn"],
        help="models to measure (none given: only the stand-in)",
    )
    parser.add_argument("--callers", nargs="+", type=int, help="caller threads (default 1 4 16 64; --quick: 1 16)")
    parser.add_argument("--seconds", type=float, help="measured seconds per cell (default: tiny 1.5, mlp 2.5, cnn 4)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per model (default 2)")
    parser.add_argument("--delay-ms", type=float, default=1.0, help="max_queue_delay_ms of the batchers (default 1)")
    parser.add_argument("--lone-rounds", type=int, default=24, help="interleaved rounds of the lone-request timing")
    parser.add_argument("--no-lone", action="store_true", help="skip the lone-request timing")
    parser.add_argument("--quick", action="store_true", help="callers 1 and 16, 40%% of the time per cell")
    parser.add_argument("--mlp-path", type=Path, default=MLP_PATH, help=f"MLP model (made if missing; {MLP_PATH})")
    parser.add_argument("--standin", nargs="*", type=float, help="GPU stand-in ms per batch (default 0.25 0.5 1 2; "
                        "--quick: 0.5; none given: skip)")  # fmt: skip
    parser.add_argument("--standin-seconds", type=float, default=1.0, help="measured seconds per stand-in cell")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    callers = sorted(set(args.callers or ([1, 16] if args.quick else [1, 4, 16, 64])))
    if any(n < 1 for n in callers) or args.rounds < 1 or args.delay_ms < 0:
        parser.error("--callers and --rounds must be >= 1, --delay-ms >= 0")

    console = Console() if sys.stdout.isatty() else Console(width=150)
    info = {**machine(), **lscpu_facts()}
    console.print(
        f"[bold]{info['cpu']}[/] (lscpu: {info.get('lscpu_model')}), {info['cores']} cores, onnxruntime "
        f"{info['onnxruntime']}, numpy {info['numpy']}, Python {info['python']}"
    )
    flags = info.get("lscpu_flags") or ()
    wide = vector_flags(info)
    console.print(f"[dim]lscpu flags ({len(flags)}) include: {' '.join(wide) or 'none of avx2/avx512/amx'}[/]")
    standin_ms = args.standin if args.standin is not None else ([0.5] if args.quick else [0.25, 0.5, 1.0, 2.0])
    if args.standin is not None and not args.standin:
        standin_ms = []
    cases = model_cases(args.mlp_path)
    if "mlp" in args.models:
        ensure_mlp(args.mlp_path, console)
    started = time.perf_counter()
    results = []
    for key in args.models:
        case = cases[key]
        seconds = args.seconds if args.seconds is not None else case.seconds * (0.4 if args.quick else 1.0)
        results.append(measure_model(case, callers, seconds, args.rounds, args.delay_ms, console))
        render_model(console, results[-1])
    standin = [
        measure_standin(
            ms,
            args.callers or STANDIN_CALLERS,
            args.standin_seconds * (0.5 if args.quick else 1.0),
            args.rounds,
            args.delay_ms,
            console,
        )
        for ms in standin_ms
    ]
    if standin:
        render_standin(console, standin)
    lone = []
    if not args.no_lone:
        lone_rounds = max(6, args.lone_rounds // (2 if args.quick else 1))
        for key in args.models:
            with console.status(f"lone request: {cases[key].label}"):
                lone.append(lone_request(cases[key], lone_rounds, 0.1))
        render_lone(console, lone)
    render_summary(console, results)
    costs = {r["key"]: per_request_cost(r) for r in results}
    tiny = costs.get("tiny")
    if tiny:
        console.print(
            f"Per-request cost of the batcher under load (tiny model, batcher 1i, N={tiny['callers']}): "
            f"{tiny['batcher_us_per_request']:.1f} µs/request wall vs {tiny['offline_us_per_row']:.1f} µs/row offline "
            f"= {tiny['overhead_us_per_request']:.1f} µs per request (mean batch {tiny['mean_batch']:.1f})"
            + (" [dim](callers < max_batch_size: includes queue-delay waits)[/]" if tiny["callers"] < 64 else "")
        )
    console.print(f"[dim]total {time.perf_counter() - started:.0f} s[/]")
    if args.json is not None:
        data = {
            "machine": info,
            "callers": callers,
            "models": results,
            "lone_request": lone,
            "standin": standin,
            "per_request_cost": costs,
            "targets": {
                "mlp_vs_threads": MLP_VS_THREADS,
                "mlp_vs_offline": MLP_VS_OFFLINE,
                "cnn_vs_offline": CNN_VS_OFFLINE,
                "lone_delta_us": LONE_TARGET_US,
                "standin_vs_ideal": STANDIN_VS_IDEAL,
            },
        }
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
