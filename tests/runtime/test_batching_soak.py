"""Soak: many threads, random batch sizes and a mix of shapes; nothing lost, misrouted or duplicated.

Every request is a block of uniquely tagged rows of the row model (exact arithmetic, so a result
does not depend on how rows were batched). Each result is compared with a solo run of the same
input on a second, unbatched session, and the backend's own calls are recorded to prove every row
ran exactly once. The default variant (100,000 requests, 64 threads) runs in CI; the long one
(1,000,000 requests) only with ``python -m pytest -m slow``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest

import edgerun
from edgerun.runtime.batching import DynamicBatcher
from edgerun.runtime.session import Session

from ..batching_helpers import tagged_rows

WIDTHS = (4, 5, 8)
"""Non-batch shapes in the mix: requests of different widths must never share a batch."""


class Recorder:
    """Wraps ``session.run_validated`` and keeps a copy of every batch it runs, to count each row's runs."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.real = session.run_validated
        self.batches: list[np.ndarray] = []
        self._lock = threading.Lock()

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = feeds["x"]
        with self._lock:
            self.batches.append(x.copy())
        return self.real(feeds)

    def __enter__(self) -> Recorder:
        self.session.run_validated = self
        return self

    def __exit__(self, *_: object) -> None:
        self.session.run_validated = self.real


def soak(row_path: Path, rows_ref: Session, requests: int, threads: int, seed: int) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, size=requests)
    widths = rng.choice(WIDTHS, size=requests)
    firsts = np.concatenate([[1], 1 + np.cumsum(sizes)[:-1]])  # row ids: unique across all requests
    inputs = [tagged_rows(int(f), int(s), int(w)) for f, s, w in zip(firsts, sizes, widths, strict=True)]
    expected = [rows_ref.run(x)["y"] for x in inputs]
    results: list[np.ndarray | None] = [None] * requests
    errors: list[BaseException] = []

    with edgerun.load(row_path) as session, Recorder(session) as recorder:
        batcher = DynamicBatcher(session, max_batch_size=16, max_queue_delay_ms=1.0, instances=2)

        def client(index: int) -> None:
            try:
                mine = range(index, requests, threads)
                pending: list[tuple[int, Future[dict[str, np.ndarray]]]] = []
                for k, i in enumerate(mine):
                    if k % 3 == 0:  # blocking calls (inline on an idle batcher) mixed with futures
                        results[i] = batcher.infer(inputs[i])["y"]
                    else:
                        pending.append((i, batcher.submit(inputs[i])))
                    if len(pending) >= 4:
                        for j, future in pending:
                            results[j] = future.result(timeout=60)["y"]
                        pending.clear()
                for j, future in pending:
                    results[j] = future.result(timeout=60)["y"]
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        batcher.close()
        stats = batcher.stats()

    assert errors == []
    lost = [i for i, got in enumerate(results) if got is None]
    assert lost == [], f"{len(lost)} requests never answered"
    pairs = enumerate(zip(results, expected, strict=True))
    misrouted = [i for i, (got, want) in pairs if not np.array_equal(got, want)]
    assert misrouted == [], f"{len(misrouted)} requests got rows that are not theirs"

    ran: dict[tuple[int, bytes], int] = {}
    for batch in recorder.batches:
        assert batch.shape[0] <= 16
        for row in batch:
            key = (row.shape[0], row.tobytes())
            ran[key] = ran.get(key, 0) + 1
    sent = {(x.shape[1], row.tobytes()) for x in inputs for row in x}
    assert set(ran) == sent  # nothing run that was not sent (e.g. rows of two widths mixed)
    duplicated = sum(1 for count in ran.values() if count != 1)
    assert duplicated == 0, f"{duplicated} rows ran more than once"
    assert stats["requests"] == requests
    assert (stats["rejected"], stats["timed_out"], stats["failed"], stats["cancelled"]) == (0, 0, 0, 0)
    assert stats["batches"] == len(recorder.batches)  # inline runs count as batches of one
    return stats


def test_soak_100k_requests_from_64_threads(row_path: Path, rows_ref: Session) -> None:
    stats = soak(row_path, rows_ref, requests=100_000, threads=64, seed=1)
    assert stats["mean_batch_size"] > 1  # it did batch: this was a soak of the batcher, not of run()


@pytest.mark.slow
def test_soak_1m_requests_from_64_threads(row_path: Path, rows_ref: Session) -> None:
    soak(row_path, rows_ref, requests=1_000_000, threads=64, seed=2)
