"""A batched request, its outcome, and the row arithmetic between requests and batches.

A request's feeds are stacked with the others of its batch (`stack_rows`), the batch runs once,
and each request gets back exactly its own rows of every output (`split_rows`). Outcomes are
resolved outside the batcher's lock (`resolve_all`), so futures' callbacks may use the batcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Mapping
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgerun.errors import BackendError, InputError


@dataclass(eq=False, slots=True)  # identity: requests hold arrays, and `in`/remove must not compare them
class Request:
    """One caller's feeds, queued until a worker takes them into a batch.

    A ``submit`` request resolves its ``future``; a blocking ``infer`` one (``future`` None) is its
    own result slot: the worker stores the result or error and releases ``waiter``, which the
    caller is blocked acquiring (CPython's cheapest hand-off between threads). The callers of one
    batch are woken in turn, each by the one before as it wakes (``successor``): one thread at a
    time asks for the GIL, instead of all of them at once while the worker still holds it.
    An ``infer_async`` one carries an asyncio future of its ``loop`` (``awaited``): a batch's
    results reach each loop in one call, so a loop serving many streams wakes once per batch.
    """

    feeds: dict[str, np.ndarray]
    rows: int
    group: tuple[Any, ...]
    future: Future[dict[str, np.ndarray]] | None
    enqueued: float
    deadline: float | None
    sequence: int
    behind_busy: bool
    """It arrived while every worker was busy: it may wait (up to the queue delay) for company."""
    hold_until: float
    """It arrived just after a batch of several requests: it may wait until then for that batch's
    callers to come back (0.0: it did not)."""
    state: str = "queued"
    """queued -> taken | expired | cancelled."""
    waiter: Any = None
    """A blocking request's lock, held until its outcome is stored (None for ``submit``)."""
    result: dict[str, np.ndarray] | None = None
    error: BaseException | None = None
    successor: Request | None = None
    """The next blocking request resolved with this one: this caller wakes it as soon as it wakes."""
    awaited: asyncio.Future[dict[str, np.ndarray]] | None = None
    """An ``infer_async`` request's future, resolved in its own event loop (None otherwise)."""

    def wait(self) -> dict[str, np.ndarray]:
        """A blocking request's rows, once a worker (or the caller's own inline run) stored them."""
        woken = False
        try:
            woken = self.waiter.acquire()
        finally:
            if woken:
                if self.successor is not None:
                    self.successor.waiter.release()
            else:  # interrupted (KeyboardInterrupt): still wake the rest when our turn comes
                threading.Thread(target=self._pass_on, name="edgerun-batcher-wake", daemon=True).start()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def _pass_on(self) -> None:
        """For a caller that stopped waiting: take its turn when it comes, and wake the next one."""
        self.waiter.acquire()
        if self.successor is not None:
            self.successor.waiter.release()


class Group(deque[Request]):
    """The queued requests of one shape group, with their total rows kept up to date."""

    rows: int = 0


@dataclass(slots=True)
class Outcome:
    """What a request's future resolves to: its rows, or the error that failed it (neither: cancelled)."""

    request: Request
    result: dict[str, np.ndarray] | None
    error: BaseException | None


def resolve_all(outcomes: list[Outcome]) -> None:
    """Resolve each outcome's future (or blocking slot), skipping futures their callers cancelled.

    Blocking callers are woken first (nothing after can leave them waiting), then each event loop is
    handed its requests of the batch in one call, then ``submit`` futures are set: with
    ``preserve_order``, their callbacks reach a loop after the earlier awaited requests' results.
    """
    first: Request | None = None
    last: Request | None = None
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    futures: list[Outcome] = []
    for outcome in outcomes:
        request = outcome.request
        awaited = request.awaited
        if awaited is not None:
            by_loop.setdefault(awaited.get_loop(), []).append(outcome)
        elif request.future is not None:
            futures.append(outcome)
        else:  # a blocking slot: no outcome at all means close(drain=False) cancelled it
            request.result = outcome.result
            request.error = outcome.error
            if outcome.result is None and outcome.error is None:
                request.error = CancelledError()
            if last is None:
                first = request
            else:
                last.successor = request
            last = request
    if first is not None:
        first.waiter.release()  # the rest are woken in turn, each by the caller before it
    for loop, delivered in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody awaits these any more
            loop.call_soon_threadsafe(_settle_awaited, delivered)  # one wake-up of each loop per batch
    for outcome in futures:
        future = outcome.request.future
        assert future is not None
        if future.done():  # cancelled (by the caller, or close(drain=False))
            continue
        if not future.running() and not future.set_running_or_notify_cancel():
            continue
        if outcome.error is not None:
            future.set_exception(outcome.error)
        elif outcome.result is not None:
            future.set_result(outcome.result)


def _settle_awaited(outcomes: list[Outcome]) -> None:
    """In the requests' own event loop: set each awaited future (no outcome: cancelled), unless cancelled."""
    for outcome in outcomes:
        awaited = outcome.request.awaited
        assert awaited is not None
        if awaited.done():  # its task was cancelled
            continue
        if outcome.error is not None:
            awaited.set_exception(outcome.error)
        elif outcome.result is not None:
            awaited.set_result(outcome.result)
        else:
            awaited.cancel()  # close(drain=False)


def count_rows(feeds: Mapping[str, np.ndarray], label: str) -> int:
    """The request's batch size: axis 0, the same on every input and at least 1."""
    counts = {array.shape[0] if array.ndim else 0 for array in feeds.values()}
    if len(counts) != 1 or 0 in counts:
        raise InputError(f"{label}: every input of a batched request needs the same batch size >= 1, got {counts}")
    return counts.pop()


def stack_rows(parts: list[np.ndarray], padding: int) -> np.ndarray:
    """The requests' arrays of one input as one batch, plus ``padding`` zero rows."""
    if padding:
        parts = [*parts, np.zeros((padding, *parts[0].shape[1:]), dtype=parts[0].dtype)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def split_rows(
    outputs: Mapping[str, np.ndarray], rows: list[int], total: int, label: str
) -> list[dict[str, np.ndarray]]:
    """Each request's rows of every output, as arrays it owns (copies, not views of the batch)."""
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != total:
            raise BackendError(f"{label}: output '{name}' has no batch axis of {total} rows (shape {array.shape})")
    if len(rows) == 1 and rows[0] == total:
        return [dict(outputs)]  # the backend's arrays are new on every call: this request owns them
    results: list[dict[str, np.ndarray]] = []
    start = 0
    if len(outputs) == 1:  # most models: no comprehension per request
        ((name, array),) = outputs.items()
        for count in rows:
            end = start + count
            results.append({name: array[start:end].copy()})
            start = end
        return results
    for count in rows:
        results.append({name: array[start : start + count].copy() for name, array in outputs.items()})
        start += count
    return results
