"""The thread hand-off floor: why a Python batcher fed by blocking threads cannot beat threads on a tiny model.

A batch of N blocking callers ends with N threads to wake, and under the GIL they wake one after
another: each must be scheduled, then take the GIL from the thread before it. This script measures
that price with no batcher at all (a ring of threads passing a lock, nothing else per hop), then
puts it beside the model and the batcher, all in one run:

* ``ring``: per-hop microseconds of N threads passing a lock around (what one wake-up costs here);
* ``threads``: N threads sharing one session (``Session.run``), N = 1, 2 and 16;
* ``batch of 16``: one thread running 16-row batches back to back (the model's time per batch);
* ``batcher``: 16 threads calling ``DynamicBatcher.infer`` (max batch 16, one instance), with a
  queue delay of 1 ms (it holds a batch until the last one's callers are back) and of 0.

Each cell also gives the process's CPU time per request (all cores, waits excluded): it moves less
with this VM's wake-up latency than the rates do, so it is the figure to compare between commits.

When a batch holds all 16 closed-loop callers (what the 1 ms delay's hold aims for), nothing else
runs while they wake, so the rate is at most ``16 / (16 x hop + batch time)`` requests/s before
any Python of the batcher. When that floor is below the threads' rate, no trim of the batcher's
Python can make it win; with no delay, batches overlap the wake-ups but are smaller. Callers on one
asyncio loop (``asyncio_callers.py``: one wake-up per batch) or a device call long enough to hide
the wake-ups (``batching.py``'s stand-in) are where batching such a model pays.

    python benchmarks/handoff_floor.py [--model digits-student] [--rounds 4] [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time

import numpy as np
from _common import block_seconds, machine_line, row_shape
from batching import Cell, run_rounds, standin_run, summarise

import edgerun
from edgerun.runtime.batching import DynamicBatcher

CALLERS = 16
STANDIN_S = 0.5e-3


def ring_hop_us(threads: int, hops: int) -> float:
    """Microseconds per hop of ``threads`` threads handing one token around a ring of locks."""
    locks = [threading.Lock() for _ in range(threads)]
    for lock in locks:
        lock.acquire()
    passed = [0]
    done = threading.Event()

    def member(i: int) -> None:
        mine, following = locks[i], locks[(i + 1) % threads]
        while True:
            mine.acquire()
            passed[0] += 1
            if passed[0] >= hops:
                done.set()
                following.release()  # let the next one see the count and stop too
                return
            following.release()

    members = [threading.Thread(target=member, args=(i,), daemon=True) for i in range(threads)]
    for thread in members:
        thread.start()
    started = time.perf_counter()
    locks[0].release()
    done.wait()
    elapsed = time.perf_counter() - started
    return elapsed / passed[0] * 1e6


def cycle_line(label: str, rate: float, hop_us: float, batch_us: float, target: float, target_name: str) -> str:
    """A held batch's cycle split into wake-ups, the batch and the batcher's own work, and what ``target`` leaves it."""
    cycle_us = CALLERS / rate * 1e6
    own_us = (cycle_us - CALLERS * hop_us - batch_us) / CALLERS
    budget_us = (CALLERS / target * 1e6 - CALLERS * hop_us - batch_us) / CALLERS
    return (
        f"{label}: a cycle of {cycle_us:.0f} µs = {CALLERS} wake-ups ({CALLERS * hop_us:.0f} µs) + the batch "
        f"({batch_us:.0f} µs) + {own_us:.1f} µs of the batcher's own work per request; {target_name} leaves "
        f"{budget_us:.1f} µs per request for it"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model", default="digits-student")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (forward, then backward)")
    parser.add_argument("--seconds", type=float, default=0.5, help="seconds per cell per round")
    parser.add_argument("--hops", type=int, default=100_000, help="hops per ring measurement")
    args = parser.parse_args(argv)
    print(f"{machine_line()}; {args.model}")

    rings = {n: [ring_hop_us(n, args.hops) for _ in range(3)] for n in (2, CALLERS)}
    hop_us = statistics.median(rings[CALLERS])
    for n, values in rings.items():
        print(f"ring of {n:2d} threads: {statistics.median(values):5.1f} µs per hop (runs: "
              f"{', '.join(f'{v:.1f}' for v in values)})")  # fmt: skip

    session = edgerun.load(args.model)
    shape = row_shape(session)
    rng = np.random.default_rng(0)
    rows = [rng.random(shape, dtype=np.float32) for _ in range(CALLERS)]
    full = rng.random((CALLERS, *shape[1:]), dtype=np.float32)
    batch_s = min(block_seconds(lambda: session.run(full), 200) for _ in range(5))
    standin = session.reopen()  # its batches sleep STANDIN_S with the GIL released, as a GPU call waits
    standin.run_validated = standin_run(session, STANDIN_S)
    standin_s = min(block_seconds(lambda: standin.run_validated({session.inputs[0].name: full}), 50) for _ in range(3))
    batchers = {
        delay: DynamicBatcher(session, max_batch_size=CALLERS, max_queue_delay_ms=delay, instances=1)
        for delay in (1.0, 0.0)
    }
    held_standin = DynamicBatcher(standin, max_batch_size=CALLERS, max_queue_delay_ms=1.0, instances=1)
    cells = [Cell("threads", n, session.run, rows[:n]) for n in (1, 2, CALLERS)]
    cells += [
        Cell(f"batcher, delay {delay:g} ms", CALLERS, batcher.infer, rows, batcher=batcher)
        for delay, batcher in batchers.items()
    ]
    cells.append(Cell("stand-in, delay 1 ms", CALLERS, held_standin.infer, rows, batcher=held_standin))
    run_rounds(cells, args.rounds, args.seconds)
    for batcher in (*batchers.values(), held_standin):
        batcher.close()
    standin.close()
    session.close()

    results = {(r["mode"], r["callers"]): r for r in map(summarise, cells)}
    threads = results[("threads", CALLERS)]["req_per_s"]
    ideal = CALLERS / standin_s
    print(f"batch of {CALLERS} rows, one thread: {batch_s * 1e6:.0f} µs ({batch_s / CALLERS * 1e6:.1f} µs per row); "
          f"stand-in call {standin_s * 1e6:.0f} µs (ideal {ideal:,.0f} req/s)")  # fmt: skip
    print(f"{'mode':22s} {'N':>3s} {'req/s':>9s} {'÷ threads(16)':>13s} {'mean batch':>10s} {'CPU µs/req':>10s}")
    for r in results.values():
        ratio = f"{r['req_per_s'] / ideal:.2f} of ideal" if r["mode"].startswith("stand-in") else (
            f"{r['req_per_s'] / threads:.2f}x")  # fmt: skip
        print(f"{r['mode']:22s} {r['callers']:3d} {r['req_per_s']:9,.0f} {ratio:>13s} {r['mean_batch']:10.1f} "
              f"{r['cpu_us_per_request']:10.1f}")  # fmt: skip
    floor = CALLERS / (CALLERS * hop_us * 1e-6 + batch_s)
    standin_floor = CALLERS / (CALLERS * hop_us * 1e-6 + standin_s)
    print(
        f"floor for a batch of all {CALLERS} blocking callers, woken in turn, before any Python of the batcher: "
        f"{CALLERS} / ({CALLERS} x {hop_us:.1f} µs + the batch) = {floor:,.0f} req/s = {floor / threads:.2f}x "
        f"threads; on the stand-in {standin_floor / ideal:.2f} of ideal"
    )
    held = results[("batcher, delay 1 ms", CALLERS)]["req_per_s"]
    print(cycle_line("batcher, delay 1 ms", held, hop_us, batch_s * 1e6, threads, "matching threads"))
    held = results[("stand-in, delay 1 ms", CALLERS)]["req_per_s"]
    print(cycle_line("stand-in, delay 1 ms", held, hop_us, standin_s * 1e6, 0.6 * ideal, "0.60 of ideal"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
