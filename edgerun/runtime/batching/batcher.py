"""`DynamicBatcher`: concurrent requests merged into batches in front of any session.

Triton's knobs and semantics (max batch size, queue delay, preferred sizes, bounded queue,
per-request timeout, instances, preserved order), in process. Rules:

* Requests with different non-batch shapes or dtypes never share a batch: each shape has its
  own group (what fixed-shape backends and CUDA graph buckets need). The batch lies on each
  input's and output's own axis (``session.roles``: ``state [2, batch, 128]`` on axis 1);
  constants are not stacked, and requests with different constants never share a batch.
  ``pad_sequences`` pads requests of different lengths to shared buckets through the mask.
* No idle wait: a lone request on an idle batcher runs at once (``infer`` even runs it in the
  caller's thread, skipping the hand-off), so a single caller is never slower than no batching.
  The queue delay only applies under load (every worker busy, or a batch of several requests
  just finished and its callers are about to return), and it counts from when a worker could
  take the batch: waiting behind a busy worker does not use it up.
* A request is validated at ``submit`` (bad feeds never poison a batch), rejected at once when
  the queue is full, failed with `RequestTimeoutError` when it waits past its timeout (never
  run late), and gets exactly the rows it sent back. A backend error fails exactly the
  requests of that batch, each with the original error chained.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any

import numpy as np

from edgerun.errors import BackendError, BatcherClosedError, InputError, QueueFullError, RequestTimeoutError
from edgerun.runtime.batching.direct import DirectCalls
from edgerun.runtime.batching.layout import Layout
from edgerun.runtime.batching.options import check_args, check_direct
from edgerun.runtime.batching.requests import (
    Group,
    Outcome,
    Request,
    count_rows,
    resolve_all,
    split_rows,
    stack_rows,
)
from edgerun.runtime.batching.stats import Stats, add_direct
from edgerun.runtime.session import Session
from edgerun.runtime.streaming import Stream


class DynamicBatcher:
    """Merge concurrent requests to ``session`` into batches of up to ``max_batch_size`` rows.

    ``instances`` workers run batches in parallel: they share ``session`` when its backend runs
    concurrent calls (ONNX Runtime), or each gets its own (``session_per_instance``; TensorRT
    contexts serialise calls). ``pad_to_preferred`` pads a batch up to the nearest
    ``preferred_batch_sizes`` entry (for fixed-shape backends) and drops the padding rows.
    ``pad_sequences`` (True or bucket lengths) lets requests of different sequence lengths share a
    batch, padded through the model's mask input and cut back to each request's length.
    ``direct_calls`` (a session that runs concurrent calls): each blocking ``infer`` runs at once in
    its caller's thread, with no queue and no instance cap, as threads sharing the session would, and
    a request of several rows runs as it is (nothing is merged, and timeouts do not apply: nothing
    waits in a queue); what the device policy chooses where batching blocking callers does not pay.
    ``submit`` and ``infer_async`` still queue, batched up to ``max_batch_size``: a queued request
    is handed to a worker anyway, so merging it costs little and saves calls.
    Futures are resolved outside the batcher's lock, so their callbacks may use the batcher.
    """

    def __init__(
        self,
        session: Session,
        *,
        max_batch_size: int,
        max_queue_delay_ms: float = 0.0,
        preferred_batch_sizes: Sequence[int] = (),
        max_queue_size: int = 0,
        default_timeout_ms: float = 0.0,
        instances: int = 1,
        preserve_order: bool = False,
        pad_to_preferred: bool = False,
        session_per_instance: bool | None = None,
        session_factory: Callable[[], Session] | None = None,
        pad_sequences: bool | Sequence[int] = False,
        direct_calls: bool = False,
    ) -> None:
        check_args(session, max_batch_size, max_queue_delay_ms, preferred_batch_sizes, max_queue_size,
                   default_timeout_ms, instances, preserve_order, pad_to_preferred, session_per_instance)  # fmt: skip
        check_direct(session, direct_calls, preserve_order, pad_to_preferred)
        self.session = session
        self.layout = Layout(session, max_batch_size, pad_sequences)
        """Each input's and output's batch axis (``session.roles``), shared constants, sequence buckets."""
        self._plain = self.layout.plain
        self.pad_sequences = self.layout.buckets
        """The sequence bucket lengths requests are padded to (empty: no padding)."""
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_ms / 1e3
        self.preferred_batch_sizes = tuple(sorted(set(preferred_batch_sizes)))
        self.max_queue_size = max_queue_size
        self.default_timeout_s = default_timeout_ms / 1e3
        self.preserve_order = preserve_order
        self.pad_to_preferred = pad_to_preferred
        if session_per_instance is None:
            session_per_instance = not session.capabilities.concurrent_runs  # ORT sessions run concurrent calls
        factory = session_factory or session.reopen
        self._own_sessions = [factory() for _ in range(instances - 1)] if session_per_instance else []
        pool = [session, *self._own_sessions] if session_per_instance else [session] * instances
        self._pool_size = len(pool)
        self._free: deque[Session] = deque(pool)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        """Workers (and close) wait here for queued work or a returned session."""
        self._deadline_wake = threading.Condition(self._lock)
        """The timeout reaper waits here for an earlier deadline or close."""
        self._groups: OrderedDict[tuple[Any, ...], Group] = OrderedDict()
        self._queued = 0
        self._closing = False
        self._drain = True
        self._stats = Stats()
        self._sequence = itertools.count()
        self._deadlines: list[tuple[float, int, Request]] = []
        self._release_next = 0
        self._last_batch_end = 0.0
        self._busy_until = 0.0
        """Until then, a request finding a free worker may still wait for company: right after a
        batch of several requests, that batch's callers are about to come back."""
        self._expected_back = 0
        """Callers of that batch not yet back; when the last one is, the wait ends at once."""
        self._finished: dict[int, Outcome] = {}
        self._idle_timed = 0
        """Idle workers whose wait ends with the current hold (a held request then needs no wake-up)."""
        self._direct = DirectCalls(session, None if self._plain else self.layout.fill) if direct_calls else None
        self.chosen: dict[str, Any] = {}
        """What the defaults chose (instances, max batch size) and why; in ``stats()`` when set."""
        inputs = session.inputs
        self._single = inputs[0].name if self._plain and len(inputs) == 1 else None
        """The one input's name (plain layout): a bare array like the last accepted one skips validation."""
        self._idle_path = not preserve_order and not pad_to_preferred
        """A lone request on an idle batcher may take `_run_idle` (no ordering, no padding to honour)."""
        self._fast: tuple[Any, int, tuple[Any, ...]] | None = None
        """The last accepted array (``Validate.accepted_array``) with its rows and group key: an array shaped
        like it needs neither a check nor a new key (`_check`'s fast path)."""
        self._workers = [
            threading.Thread(target=self._work, name=f"edgerun-batcher-{i}", daemon=True) for i in range(instances)
        ]
        self._reaper = threading.Thread(target=self._reap, name="edgerun-batcher-timeouts", daemon=True)
        for thread in (*self._workers, self._reaper):
            thread.start()

    # --- public API -------------------------------------------------------------------------

    def submit(
        self, feeds: np.ndarray | Mapping[str, Any], *, timeout_ms: float | None = None
    ) -> Future[dict[str, np.ndarray]]:
        """Queue a request; the future resolves to exactly this request's rows of every output."""
        future: Future[dict[str, np.ndarray]] = Future()
        request = self._admit(feeds, timeout_ms, future)
        future.add_done_callback(lambda _: self._on_done(request))
        return future

    def infer(self, feeds: np.ndarray | Mapping[str, Any], *, timeout_ms: float | None = None) -> dict[str, np.ndarray]:
        """Run a request and wait for it; on an idle batcher (or ``direct_calls``) it runs at once in this thread."""
        if self._direct is not None:
            return self._direct.run(feeds)
        checked = None
        if not self._queued and self._free and self._idle_path:  # a peek; `_run_idle` decides under the lock
            checked = self._check(feeds)
            done = self._run_idle(checked[0], checked[1])  # None: not idle after all; `_admit` reuses the check
            if done is not None:
                return done
        return self._admit(feeds, timeout_ms, None, checked).wait()

    def _run_idle(self, checked: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray] | None:
        """A lone request on an idle batcher, run in the caller's thread with no request record, or None
        when the batcher is not idle after all (nothing queued, a session free, no hold, not closing).

        The short path matters most after a heavy call, when every line runs with cold caches (a lone
        request cost +146 us over ``Session.run`` on the 4x2048 MLP through the general path).
        """
        with self._lock:
            if self._closing or self._queued or not self._free or time.perf_counter() < self._busy_until:
                return None
            session = self._free.pop()
            stats = self._stats
            stats.requests += 1
            stats.inline += 1
            stats.queue_wait_s.append(0.0)
        elapsed = -1.0  # set once the call ran: its counters are updated below
        try:
            started = time.perf_counter()
            try:
                if self._plain:
                    result = session.run_validated(checked)
                    split_rows(result, [rows], rows, self.session.label)  # the same output check as a batch
                else:
                    result = self.layout.split(
                        session.run_validated(self.layout.stack([checked], [rows], 0)), [checked], [rows], rows
                    )[0]
            except Exception as exc:
                failure = BackendError(
                    f"{self.session.label}: the batch of {rows} rows this request was in failed: {exc}"
                )
                with self._lock:
                    self._stats.failed += 1
                raise failure from exc
            elapsed = time.perf_counter() - started
            return result
        finally:
            with self._lock:
                if elapsed >= 0:
                    stats = self._stats
                    stats.batches += 1
                    stats.batch_sizes[rows] += 1
                    stats.execute_s.append(elapsed)
                self._last_batch_end = time.perf_counter()
                self._free.append(session)
                if self._work_waits_locked():  # requests may have queued while this one ran
                    self._wake.notify_all()

    def _work_waits_locked(self) -> bool:
        """Queued requests or a close waiting for the session just returned."""
        return bool(self._queued or self._closing)

    async def infer_async(
        self, feeds: np.ndarray | Mapping[str, Any], *, timeout_ms: float | None = None
    ) -> dict[str, np.ndarray]:
        """``infer`` for asyncio apps; cancelling the awaiting task withdraws a queued request.

        The request carries an asyncio future of the running loop, not a `concurrent.futures.Future`
        wrapped into one: a batch's results reach the loop in one call, so one thread serving many
        streams costs one wake-up per batch, with no hand-off of the GIL per request.
        """
        awaited: asyncio.Future[dict[str, np.ndarray]] = asyncio.get_running_loop().create_future()
        request = self._admit(feeds, timeout_ms, None, awaited=awaited)
        try:
            return await awaited
        except asyncio.CancelledError:
            self._withdraw(request)
            raise

    run = infer
    __call__ = infer

    @property
    def blocking_call(self) -> Callable[[np.ndarray | Mapping[str, Any]], dict[str, np.ndarray]]:
        """``infer`` without a timeout, as directly as this batcher allows (what `BatchedSession.run` binds)."""
        return self.infer if self._direct is None else self._direct.run

    def stream(self) -> Stream:
        """A stream of steps through this stateful model via the batcher: concurrent streams share batches."""
        return Stream(self.infer, self.session.roles, self.session.inputs, self.session.label)

    def stats(self) -> dict[str, Any]:
        """Counters, batch-size histogram and queue-wait / execution percentiles (ms)."""
        with self._lock:
            summary = self._stats.summary(self._queued)
        if self._direct is not None:
            add_direct(summary, *self._direct.counts())
        if self.chosen:
            summary["chosen"] = dict(self.chosen)
        return summary

    def close(self, drain: bool = True) -> None:
        """Stop: finish queued work (``drain``) or cancel it; waits for every thread and inline call."""
        cancelled: list[Request] = []
        outcomes: list[Outcome] = []
        with self._lock:
            if not self._closing:
                self._closing = True
                if self._direct is not None:
                    self._direct.refuse()
                self._drain = drain
                if not drain:
                    for group in self._groups.values():
                        for request in group:
                            cancelled.append(request)
                            outcomes += self._cancel_locked(request)
                    self._groups.clear()
                    self._queued = 0
            self._wake.notify_all()
            self._deadline_wake.notify_all()
        for request in cancelled:
            if request.future is not None and request.future.cancel():
                request.future.set_running_or_notify_cancel()  # what wakes concurrent.futures.wait()
        resolve_all(outcomes)
        current = threading.current_thread()
        for thread in (*self._workers, self._reaper):
            if thread is not current:
                thread.join()
        with self._lock:  # requests running inline in callers' threads finish on their sessions
            while len(self._free) < self._pool_size:
                self._wake.wait()
        if self._direct is not None:
            self._direct.close()
        for own in self._own_sessions:
            own.close()
        self._own_sessions = []

    @property
    def direct_calls(self) -> bool:
        """Whether blocking requests run as direct calls in their callers' threads (``direct_calls``)."""
        return self._direct is not None

    @property
    def closed(self) -> bool:
        return self._closing

    def __enter__(self) -> DynamicBatcher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- admission ----------------------------------------------------------------------------

    def _admit(
        self,
        feeds: Any,
        timeout_ms: float | None,
        future: Future[dict[str, np.ndarray]] | None,
        checked: tuple[dict[str, np.ndarray], int, tuple[Any, ...]] | None = None,
        awaited: asyncio.Future[dict[str, np.ndarray]] | None = None,
    ) -> Request:
        """Validate and queue a request (``future`` and ``awaited`` None: a blocking ``infer``, which an
        idle batcher runs at once in the caller's thread); wake a worker only when the request changes
        its plan. An ``awaited`` request never runs in its caller's thread: that would block its loop."""
        checked_feeds, rows, group = checked or self._check(feeds)  # `infer` may have checked them already
        timeout_s = self.default_timeout_s if timeout_ms is None else timeout_ms / 1e3
        now = time.perf_counter()
        batch: list[Request] = []
        withdrawn: list[Outcome] | None = None
        with self._lock:
            if self._closing:
                raise BatcherClosedError(f"batcher for {self.session.label} is closed")
            if self.max_queue_size and self._queued >= self.max_queue_size:
                self._stats.rejected += 1
                raise QueueFullError(
                    f"{self.session.label}: queue full ({self._queued} requests waiting, max_queue_size "
                    f"{self.max_queue_size}); retry later or raise the limit"
                )
            holding = now < self._busy_until
            held = self._hold_until_locked(now) if holding else 0.0
            request = Request(
                checked_feeds,
                rows,
                group,
                future,
                now,
                now + timeout_s if timeout_s > 0 else None,
                next(self._sequence),
                not self._free,
                held,
            )
            self._stats.requests += 1
            session = None
            blocking = future is None and awaited is None
            if awaited is not None:
                request.awaited = awaited
            elif blocking:
                request.waiter = waiter = threading.Lock()
                waiter.acquire()
                if self._free and not self._queued and not held:
                    session = self._free.pop()  # idle batcher: run here, no hand-off to a worker
                    request.state = "taken"
                    self._stats.inline += 1
                    self._stats.queue_wait_s.append(0.0)
            if session is None:
                queue = self._groups.get(group)
                # A new group needs a worker, unless it is held, nothing else is queued and an idle
                # worker waits until the hold ends anyway. The last caller back ends the hold.
                timed = held and not self._queued and self._idle_timed
                wake = (queue is None and not timed) or (holding and not held)
                if queue is None:
                    queue = self._groups[group] = Group()
                queue.append(request)
                queue.rows += rows
                self._queued += 1
                if request.deadline is not None:
                    earliest = not self._deadlines or request.deadline < self._deadlines[0][0]
                    heapq.heappush(self._deadlines, (request.deadline, request.sequence, request))
                    if earliest:
                        self._deadline_wake.notify()
                # A worker waits for the head of each group (or the end of a hold): only a new group,
                # a full one or everyone being back changes its plan (one wake-up per batch).
                if self._free and (wake or queue.rows >= self._target_rows(queue.rows)):
                    if blocking and self._ready_now_locked(queue, now):
                        # The caller completing a batch runs it here: no hand-off to a worker and back.
                        withdrawn = []
                        batch = self._take_locked(group, queue, withdrawn)
                        if batch:
                            session = self._free.pop()
                    else:
                        self._wake.notify()
            else:
                batch = [request]
        if withdrawn:
            resolve_all(withdrawn)
        if session is not None:
            self._execute(session, batch, request)
        return request

    def _ready_now_locked(self, queue: Group, now: float) -> bool:
        """Whether ``queue`` (the only group, holding the caller's request) is a whole batch ready to run."""
        if len(self._groups) != 1 or queue.rows > self.max_batch_size:
            return False
        return queue.rows >= self._target_rows(queue.rows) or self._ready_at_locked(queue[0]) <= now

    def _check(self, feeds: Any) -> tuple[dict[str, np.ndarray], int, tuple[Any, ...]]:
        """A request's validated feeds (a dict of our own: the caller may reuse theirs), rows and group key."""
        if self._single is not None and type(feeds) is np.ndarray:
            accepted = self.session.validate.accepted_array
            if (
                accepted is not None
                and feeds.shape == accepted[0]
                and feeds.dtype == accepted[1]
                and feeds.flags.c_contiguous
            ):  # the fast path of Session.run: as checked as the last accepted array
                fast = self._fast
                if fast is None or fast[0] is not accepted:
                    fast = self._fast = self._fast_entry(accepted)
                if fast is not None:
                    return {self._single: feeds}, fast[1], fast[2]
        if self._plain:
            checked = dict(self.session.validate(feeds))
            rows = count_rows(checked, self.session.label)
            group = tuple((name, array.dtype.str, array.shape[1:]) for name, array in sorted(checked.items()))
        else:
            checked = dict(self.session.validate(self.layout.fill(feeds)))
            rows, group = self.layout.rows_and_group(checked)
        return checked, self._within_max(rows), group

    def _fast_entry(self, accepted: tuple[tuple[int, ...], np.dtype[Any]]) -> tuple[Any, int, tuple[Any, ...]] | None:
        """Rows and group key of every array shaped like ``accepted`` (None: no rows, left to the full check)."""
        shape, dtype = accepted
        if not shape or shape[0] <= 0:
            return None
        return accepted, self._within_max(shape[0]), ((self._single, dtype.str, shape[1:]),)

    def _within_max(self, rows: int) -> int:
        if rows > self.max_batch_size:
            raise InputError(
                f"{self.session.label}: request of {rows} rows exceeds max_batch_size {self.max_batch_size}",
                expected=f"<= {self.max_batch_size} rows",
                got=f"{rows} rows",
            )
        return rows

    def _hold_until_locked(self, now: float) -> float:
        """How long a new request may wait for the callers of the batch that just ended (0: no wait).

        In a closed loop (camera threads calling ``infer`` again as soon as they have a result)
        the first caller back would otherwise run alone and split the batch for good. The wait
        ends when all of that batch's callers are back, and never outlasts the queue delay.
        """
        if now >= self._busy_until:
            return 0.0
        self._expected_back -= 1
        if self._expected_back <= 0:
            self._busy_until = now  # everyone is back: whatever is held can run now
            self._expected_back = 0
            return 0.0
        return self._busy_until

    def _cancel_locked(self, request: Request) -> list[Outcome]:
        """Mark a request that will never run as cancelled; its outcomes to resolve outside the lock."""
        request.state = "cancelled"
        self._stats.cancelled += 1
        return self._release_locked(Outcome(request, None, None))

    def _on_done(self, request: Request) -> None:
        """A caller cancelled a queued request: withdraw it at once (it frees its place)."""
        assert request.future is not None
        if request.future.cancelled() and self._withdraw(request):
            request.future.set_running_or_notify_cancel()  # tells concurrent.futures.wait() it is done

    def _withdraw(self, request: Request) -> bool:
        """Take a cancelled request out of the queue and count it; False when it already left it."""
        with self._lock:
            if request.state != "queued":
                return False
            self._unqueue_locked(request)
            outcomes = self._cancel_locked(request)
        resolve_all(outcomes)
        return True

    # --- workers --------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            withdrawn: list[Outcome] = []
            with self._lock:
                batch, session = self._next_batch_locked(withdrawn)
            resolve_all(withdrawn)
            if session is None:
                return
            self._execute(session, batch)

    def _next_batch_locked(self, withdrawn: list[Outcome]) -> tuple[list[Request], Session | None]:
        """Wait for queued work and a free session, then take one batch (no session: shut down).

        Requests whose callers cancelled them as they were taken go to ``withdrawn``.
        """
        while True:
            if self._queued and self._free:
                choice = self._choose_locked()
                if choice is not None:
                    batch = self._take_locked(*choice, withdrawn)
                    if batch:
                        session = self._free.pop()  # the warmest session
                        if self._queued and self._free:
                            self._wake.notify()  # more work and another free worker: pass it on
                        return batch, session
                continue
            if self._closing and (not self._queued or not self._drain):
                return [], None
            # Idle: until news, or until the hold after a batch ends (held requests do not wake us).
            hold = self._busy_until - time.perf_counter() if self._busy_until else 0.0
            if hold <= 0:
                self._wake.wait()
                continue
            self._idle_timed += 1  # held requests need not wake this worker: it wakes when the hold ends
            try:
                self._wake.wait(hold)
            finally:
                self._idle_timed -= 1

    def _choose_locked(self) -> tuple[tuple[Any, ...], Group] | None:
        """A group ready to run: a full one first, else the oldest whose own wait is over.

        Each group is judged on its own, so one group waiting for company never holds up another
        that is ready. Returns None after waiting (until the earliest wait ends or news arrives).
        """
        now = time.perf_counter()
        full: list[tuple[tuple[Any, ...], Group]] = []
        ready: list[tuple[tuple[Any, ...], Group]] = []
        earliest = float("inf")
        for key, group in self._groups.items():
            rows = group.rows
            if rows >= self._target_rows(rows):
                full.append((key, group))
                continue
            ready_at = self._ready_at_locked(group[0])
            if now >= ready_at:
                ready.append((key, group))
            else:
                earliest = min(earliest, ready_at)
        if full or ready:
            return min(full or ready, key=lambda item: item[1][0].enqueued)
        self._wake.wait(timeout=earliest - now)
        return None

    def _ready_at_locked(self, oldest: Request) -> float:
        """When a group whose oldest request is ``oldest`` stops waiting for company."""
        if self._closing:
            return 0.0
        ready_at = 0.0
        if oldest.behind_busy:
            # The delay gives others a chance to join once a worker can take them: time spent
            # queued behind a busy worker does not use it up (else batches split under load).
            ready_at = max(oldest.enqueued, self._last_batch_end) + self.max_queue_delay_s
        if oldest.hold_until:
            ready_at = max(ready_at, min(oldest.hold_until, self._busy_until))
        return ready_at

    def _target_rows(self, rows: int) -> int:
        """Rows worth waiting for: the next preferred size at or above ``rows``, else the maximum."""
        for size in self.preferred_batch_sizes:
            if size >= rows:
                return size
        return self.max_batch_size

    def _take_locked(self, key: tuple[Any, ...], group: Group, withdrawn: list[Outcome]) -> list[Request]:
        """Up to ``max_batch_size`` rows from the head of ``group``, marked running.

        A request its caller cancels while it is being taken (its ``_on_done`` is waiting for the
        lock) is skipped here and counted as cancelled: it never runs. So is an ``infer_async`` request
        whose task was cancelled before its loop withdrew it; one cancelled a moment later still runs,
        and its loop drops the result.
        """
        batch: list[Request] = []
        rows = 0
        now = time.perf_counter()
        waits = self._stats.queue_wait_s
        limit = self.max_batch_size
        while group and rows + group[0].rows <= limit:
            request = group.popleft()
            group.rows -= request.rows
            self._queued -= 1
            if request.future is not None and not request.future.set_running_or_notify_cancel():
                withdrawn.extend(self._cancel_locked(request))
                continue
            if request.awaited is not None and request.awaited.cancelled():  # a read only: the loop owns it
                withdrawn.extend(self._cancel_locked(request))
                continue
            request.state = "taken"
            waits.append(now - request.enqueued)
            batch.append(request)
            rows += request.rows
        if not group:
            del self._groups[key]
        return batch

    def _execute(self, session: Session, batch: list[Request], own: Request | None = None) -> None:
        """Run one batch on ``session`` and hand every request its rows (or the batch's error).

        ``own``: the request of the caller running the batch in its thread, woken first (it is awake).
        """
        outcomes: list[Outcome] = []
        elapsed: float | None = None  # set once the batch ran: its counters are updated once, below
        rows = [r.rows for r in batch]
        total = sum(rows)
        try:
            padded = self._padded_size(total)
            started = time.perf_counter()
            try:
                if self._plain:
                    feeds = {
                        name: stack_rows([r.feeds[name] for r in batch], padded - total) for name in batch[0].feeds
                    }
                    outputs = session.run_validated(feeds)  # validated at submit: skip the session's check
                    results = split_rows(outputs, rows, padded, self.session.label)
                else:
                    parts = [r.feeds for r in batch]
                    outputs = session.run_validated(self.layout.stack(parts, rows, padded - total))
                    results = self.layout.split(outputs, parts, rows, padded)
            except BaseException as exc:
                failure = BackendError(
                    f"{self.session.label}: the batch of {total} rows this request was in failed: {exc}"
                )
                failure.__cause__ = exc
                with self._lock:
                    self._stats.failed += len(batch)
                    for request in batch:
                        outcomes += self._release_locked(Outcome(request, None, failure))
                if not isinstance(exc, Exception):
                    raise
                return
            elapsed = time.perf_counter() - started
            if self.preserve_order:
                with self._lock:
                    for request, result in zip(batch, results, strict=True):
                        outcomes += self._release_locked(Outcome(request, result, None))
            else:
                outcomes = [Outcome(request, result, None) for request, result in zip(batch, results, strict=True)]
                if own is not None and own is not batch[0]:
                    outcomes.sort(key=lambda outcome: outcome.request is not own)  # the awake caller wakes the rest
        finally:
            with self._lock:
                if elapsed is not None:
                    self._stats.batches += 1
                    self._stats.batch_sizes[total] += 1
                    self._stats.execute_s.append(elapsed)
                self._last_batch_end = time.perf_counter()
                if len(batch) > 1 and self.max_queue_delay_s:
                    self._busy_until = self._last_batch_end + self.max_queue_delay_s
                    self._expected_back = len(batch)
                self._free.append(session)
                if self._queued or self._closing:  # an idle batcher has nobody to wake
                    self._wake.notify_all()
            resolve_all(outcomes)  # outside the lock: futures' callbacks may call the batcher

    def _padded_size(self, rows: int) -> int:
        if not self.pad_to_preferred:
            return rows
        return next((size for size in self.preferred_batch_sizes if size >= rows), rows)

    # --- completion -------------------------------------------------------------------------

    def _release_locked(self, outcome: Outcome) -> list[Outcome]:
        """Outcomes that may be resolved now; with ``preserve_order``, only once every earlier one is."""
        if not self.preserve_order:
            return [outcome]
        self._finished[outcome.request.sequence] = outcome
        ready = []
        while self._release_next in self._finished:
            ready.append(self._finished.pop(self._release_next))
            self._release_next += 1
        return ready

    def _unqueue_locked(self, request: Request) -> None:
        group = self._groups.get(request.group)
        if group is not None and request in group:
            group.remove(request)
            group.rows -= request.rows
            self._queued -= 1
            if not group:
                del self._groups[request.group]

    def _reap(self) -> None:
        """Fail queued requests the moment their timeout passes: none is ever run late."""
        while True:
            outcomes: list[Outcome] = []
            with self._lock:
                if self._closing and not self._queued:
                    return
                now = time.perf_counter()
                while self._deadlines and (self._deadlines[0][0] <= now or self._deadlines[0][2].state != "queued"):
                    deadline, _, request = heapq.heappop(self._deadlines)
                    if request.state != "queued" or deadline > now:
                        continue
                    request.state = "expired"
                    self._stats.timed_out += 1
                    self._unqueue_locked(request)
                    waited = (now - request.enqueued) * 1e3
                    error = RequestTimeoutError(
                        f"{self.session.label}: request waited {waited:.1f} ms in the queue, past its timeout; "
                        "it was not run"
                    )
                    outcomes += self._release_locked(Outcome(request, None, error))
                if not outcomes:
                    timeout = self._deadlines[0][0] - now if self._deadlines else None
                    if self._closing:
                        timeout = 0.05 if timeout is None else min(timeout, 0.05)
                    self._deadline_wake.wait(timeout=timeout)
            resolve_all(outcomes)
