"""Direct calls: requests run one by one in their callers' threads, for models batching does not pay on.

On a CPU a tiny model's call costs a few microseconds of Python against tens of microseconds of
compute, and callers are bound by the GIL: every microsecond of bookkeeping per request costs
throughput (measured on digits-student with 16 callers: two lock round trips and a second feed
check per call cut the rate of threads sharing a session by half). So the hot path takes no lock:
call ids come from an `itertools.count` and the calls in flight are tokens in a set, both single
atomic operations in CPython; only a failure takes the lock to be counted.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from edgerun.errors import BackendError, BatcherClosedError, EdgerunError
from edgerun.runtime.session import Session


class DirectCalls:
    """Run requests at once on a shared ``session`` (one that runs concurrent calls), counted for stats and close."""

    def __init__(self, session: Session, fill: Callable[[Any], Any] | None = None) -> None:
        self.session = session
        run = session.run
        self._call: Callable[[Any], dict[str, np.ndarray]] = run if fill is None else (lambda feeds: run(fill(feeds)))
        """``session.run``, after adding the constants a request may leave out (``fill``: the batcher's layout)."""
        self._ids = itertools.count()
        self._peeks = 0
        """Ids `started` took to read the counter (under ``_lock``): they are not calls."""
        self._running: set[int] = set()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._failed = 0
        self._closing = False

    def run(self, feeds: np.ndarray | Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run one request in this thread; `BatcherClosedError` once ``close`` began."""
        token = next(self._ids)
        running = self._running
        running.add(token)  # before the closing check: close then waits for this call
        failed = True
        try:
            if self._closing:
                raise BatcherClosedError(f"batcher for {self.session.label} is closed")
            result = self._call(feeds)
            failed = False
            return result
        except Exception as exc:
            if isinstance(exc, EdgerunError):
                raise
            raise BackendError(f"{self.session.label}: this request failed: {exc}") from exc
        finally:
            running.discard(token)  # first: a failed call is counted once, as failed, never also as running
            if failed or self._closing:
                with self._lock:
                    self._failed += failed
                    if self._closing:
                        self._idle.notify_all()

    def counts(self) -> tuple[int, int, int]:
        """Calls started, failed (closed batcher, bad input or a backend error) and running now."""
        with self._lock:
            started = next(self._ids) - self._peeks
            self._peeks += 1
            return started, self._failed, len(self._running)

    def refuse(self) -> None:
        """From now on new calls raise `BatcherClosedError` (those running go on: `close` waits for them)."""
        self._closing = True

    def close(self) -> None:
        """Refuse new calls and wait for those running."""
        with self._lock:
            self._closing = True
            while self._running:
                self._idle.wait(0.05)
