"""Asyncio callers against thread callers on a tiny model: does batching pay when callers share one event loop?

Thread callers pay a GIL hand-off per request, so on digits-student (a few microseconds of model
per row) a batcher fed by threads loses to threads sharing the session. Tasks on one event loop
awaiting ``infer_async`` get a batch's results in one wake-up of their loop. Modes, N callers each
sending batch-1 requests back to back (``batching.py``'s closed loops, interleaved rounds):

* ``threads``: N threads calling ``Session.run`` on one shared session (no batching);
* ``batcher threads``: N threads calling ``DynamicBatcher.infer`` (max batch 16, 1 ms delay);
* ``batcher asyncio 1i`` / ``2i``: N asyncio tasks on one loop thread awaiting ``infer_async``,
  one or two instances.

    python benchmarks/asyncio_callers.py [--callers 16 64] [--rounds 4] [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from _common import machine_line, row_shape
from batching import Cell, run_rounds, summarise

import edgerun
from edgerun.runtime.batching import DynamicBatcher


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model", default="digits-student")
    parser.add_argument("--callers", nargs="+", type=int, default=[16, 64])
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (forward, then backward)")
    parser.add_argument("--seconds", type=float, default=0.5, help="seconds per cell per round")
    args = parser.parse_args(argv)
    print(f"{machine_line()}; {args.model}, max batch 16, delay 1 ms")
    session = edgerun.load(args.model)
    shape = row_shape(session)
    rng = np.random.default_rng(0)
    batchers = {i: DynamicBatcher(session, max_batch_size=16, max_queue_delay_ms=1.0, instances=i) for i in (1, 2)}
    cells = []
    for n in args.callers:
        rows = [rng.random(shape, dtype=np.float32) for _ in range(n)]
        cells += [
            Cell("threads", n, session.run, rows),
            Cell("batcher threads", n, batchers[1].infer, rows, batcher=batchers[1]),
            *(
                Cell(
                    f"batcher asyncio {i}i",
                    n,
                    batchers[i].infer,
                    rows,
                    batcher=batchers[i],
                    awaited=batchers[i].infer_async,
                )
                for i in (1, 2)
            ),
        ]
    run_rounds(cells, args.rounds, args.seconds)
    for batcher in batchers.values():
        batcher.close()
    session.close()
    threads = {c.callers: summarise(c)["req_per_s"] for c in cells if c.mode == "threads"}
    print(f"{'mode':22s} {'N':>3s} {'req/s':>9s} {'÷ threads':>9s} {'p99 ms':>7s} {'mean batch':>10s}")
    for cell in cells:
        s = summarise(cell)
        ratio = s["req_per_s"] / threads[s["callers"]]
        print(f"{s['mode']:22s} {s['callers']:3d} {s['req_per_s']:9,.0f} {ratio:8.2f}x {s['p99_ms']:7.2f} "
              f"{s['mean_batch']:10.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
