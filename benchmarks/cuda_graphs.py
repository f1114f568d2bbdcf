"""Plain enqueue vs CUDA graph replay: wall time per iteration of a chain of small async copies.

One iteration is ``--copies`` copies (H2D, then D2D hops, then D2H) of ``--bytes`` each, queued on one
stream and waited for. The plain side makes one cuda-python call per copy; the graph side replays the
same chain captured once with ``edgerun.trt.cuda.CudaGraph`` (one call). Rounds alternate the order
(plain/graph, graph/plain) so drift hits both alike; the summary is the median per-iteration time of
each side and the median of the per-round ratios graph/plain. Without a GPU it prints why and exits 0.

    python benchmarks/cuda_graphs.py [--copies N] [--bytes B] [--rounds R] [--iterations I]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from edgerun.trt import cuda


def per_iteration_us(run: Callable[[], None], stream: cuda.Stream, iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        run()
        stream.synchronize()
    return (time.perf_counter() - start) / iterations * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=16, help="copies per iteration (>= 2)")
    parser.add_argument("--bytes", type=int, default=4096, help="bytes per copy")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=200, help="iterations per side per round")
    args = parser.parse_args()
    reason = cuda.unavailable_reason()
    if reason is not None:
        print(f"skipped: CUDA is not usable here ({reason})")
        return 0
    copies = max(args.copies, 2)
    n = args.bytes
    info = cuda.device_info()
    with (
        cuda.Stream() as stream,
        cuda.PinnedArray(n, np.uint8) as inp,
        cuda.PinnedArray(n, np.uint8) as out,
    ):
        buffers = [cuda.DeviceBuffer(n) for _ in range(copies - 1)]

        def enqueue() -> None:
            cuda.copy_to_device(buffers[0].ptr, inp.array, stream)
            for src, dst in itertools.pairwise(buffers):
                cuda.copy_device_to_device(dst.ptr, src.ptr, n, stream)
            cuda.copy_to_host(out.array, buffers[-1].ptr, stream)

        graph = cuda.CudaGraph.capture(stream, enqueue)
        inp.array[...] = np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8)
        graph.launch(stream)
        stream.synchronize()
        assert np.array_equal(out.array, inp.array), "the graph did not replay the copies"

        sides = {"plain": enqueue, "graph": lambda: graph.launch(stream)}
        for run in sides.values():  # warm up both
            per_iteration_us(run, stream, max(args.iterations // 10, 1))
        times: dict[str, list[float]] = {name: [] for name in sides}
        for i in range(args.rounds):
            for name in sides if i % 2 == 0 else reversed(sides):
                times[name].append(per_iteration_us(sides[name], stream, args.iterations))
        graph.close()
        for buffer in buffers:
            buffer.close()

    ratios = [g / p for g, p in zip(times["graph"], times["plain"], strict=True)]
    print(f"{info.name} (sm {info.compute_capability}); {copies} copies of {n} B per iteration, incl. synchronize")
    print(f"  plain enqueue : {statistics.median(times['plain']):8.1f} µs/iteration")
    print(f"  graph replay  : {statistics.median(times['graph']):8.1f} µs/iteration")
    print(
        f"  graph/plain   : {statistics.median(ratios):.3f} (median of {len(ratios)} rounds; "
        f"range {min(ratios):.3f}-{max(ratios):.3f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
