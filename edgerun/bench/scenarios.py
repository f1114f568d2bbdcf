"""`ScenarioRunner`: a `BenchConfig` turned into what LoadGen's four scenarios time, for one session.

Single-stream and multi-stream run a closed loop, offline a batch stream, server a Poisson
arrival process through a `DynamicBatcher` (with an optional search for the highest rate that
holds the latency bound). This module picks the rows per call, builds the input source and the
query callables, and reports the settings used; `benchmark` turns the timings into a result.

A stateful model (``session.roles.stateful``: Silero's ``state`` -> ``stateN``) runs as streams:
each call is a `Stream` step whose state the previous step returned, on chunks made before the
run, so latencies are per chunk. Multi-stream steps N streams together (one call of N rows, or
several calls on a fixed-batch model); server gives every simulated caller its own stream through
the dynamic batcher, which merges concurrent callers' steps along each input's batch axis.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from edgerun.bench.config import BenchConfig
from edgerun.bench.inputs import STREAM_CHUNKS, input_source
from edgerun.bench.loadgen import Progress, ScenarioRun, closed_loop, find_max_qps
from edgerun.bench.loadgen import offline as run_offline
from edgerun.bench.loadgen import server as run_server
from edgerun.errors import ConfigError
from edgerun.roles import ModelRoles
from edgerun.runtime.session import Session
from edgerun.runtime.streaming import Stream
from edgerun.runtime.synthetic import on_batch_axes

if TYPE_CHECKING:
    from edgerun.runtime.batching import BatchPolicy, DynamicBatcher

STREAM_CALLERS = 8
"""server, stateful model: simulated callers (one stream each) unless ``--batch`` sets them."""


def batched_shapes(
    shapes: Mapping[str, Sequence[int]], batch: int, roles: ModelRoles | None = None
) -> dict[str, list[int]]:
    """Card shapes (given at batch 1) with ``batch`` on each input's batch axis (axis 0 without ``roles``)."""
    return on_batch_axes(shapes, batch, roles.batch_axes if roles is not None else dict.fromkeys(shapes, 0))


class ScenarioRunner:
    """Turns a config into the callables a `loadgen` runner times, for one session."""

    def __init__(self, session: Session, config: BenchConfig, deadline_ms: float) -> None:
        self.session = session
        self.config = config
        self.deadline_ms = deadline_ms
        self.label = session.card.name if session.card else str(session.model.path)
        self.roles = session.roles
        self.stateful = self.roles.stateful
        self.fixed_batch = fixed_batch(session)
        self.batch = self._rows_per_call()
        self.calls_per_query = 1
        if config.scenario == "multi-stream" and self.fixed_batch is not None:
            self.calls_per_query = math.ceil(config.samples_per_query / self.fixed_batch)
        self.source = input_source(session, config, self.batch, pool=STREAM_CHUNKS if self.stateful else 1)
        self.streams: list[Stream] = []
        """A stateful model's streams: one per call of a query (server: one per caller)."""
        self._chunks: list[dict[str, np.ndarray]] = []
        if self.stateful:
            count = self.stream_callers if config.scenario == "server" else self.calls_per_query
            self.streams = [session.stream(batch=self.batch) for _ in range(count)]
            self._data = self.streams[0].data_inputs
            if config.data is None:  # made now, untimed: the steps cycle through them
                self._chunks = [self._only_data(self.source.feeds(k)) for k in range(STREAM_CHUNKS)]

    def _only_data(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: feeds[name] for name in self._data if name in feeds}

    def chunk(self, i: int) -> dict[str, np.ndarray]:
        """A stream's i-th step: its data inputs only (state comes from the stream, constants from the roles)."""
        if self._chunks:
            return self._chunks[i % len(self._chunks)]
        return self._only_data(self.source.feeds(i))

    def _rows_per_call(self) -> int:
        scenario, wanted = self.config.scenario, self.config.batch
        if scenario == "server":
            if self.fixed_batch is not None:
                raise ConfigError(
                    f"{self.label}: the server scenario sends queries through the dynamic batcher, which needs a "
                    f"dynamic batch axis; this model fixes its batch at {self.fixed_batch}"
                )
            return 1  # each server query is one sample; the batcher forms batches
        if scenario == "multi-stream":
            if wanted is not None:
                raise ConfigError("multi-stream sets its batch with --samples-per-query, not --batch")
            return self.fixed_batch or self.config.samples_per_query
        default = 8 if scenario == "offline" else 1
        rows = wanted or self.fixed_batch or default
        if self.fixed_batch is not None and rows != self.fixed_batch:
            raise ConfigError(f"{self.label}: the model fixes its batch at {self.fixed_batch}; cannot run batch {rows}")
        return rows

    def settings(self) -> dict[str, Any]:
        config = self.config
        return {
            "samples_per_query": config.samples_per_query if config.scenario == "multi-stream" else self.batch,
            "target_qps": config.target_qps,
            "latency_bound_ms": self.bound_ms if config.scenario == "server" else None,
            "find_max_qps": config.find_max_qps,
            "min_duration_s": config.min_duration_s,
            "min_queries": config.min_queries,
            "warmup": min(config.warmup, 2) if config.scenario == "offline" else config.warmup,
            "seed": config.seed,
            "max_batch_size": self.max_batch_size if config.scenario == "server" else None,
            "max_queue_delay_ms": self.queue_delay_ms if config.scenario == "server" else None,
            "instances": self.instances if config.scenario == "server" else None,
            "batching": self.chosen if config.scenario == "server" else None,
        }

    def stream_facts(self) -> dict[str, Any] | None:
        """A stateful run's streams: state input -> output carried, streams, rows per call, steps run (all calls)."""
        if not self.stateful:
            return None
        return {
            "state": self.roles.state_pairs,
            "streams": len(self.streams) * self.batch,
            "rows_per_step": self.batch,
            "calls_per_query": 1 if self.config.scenario == "server" else len(self.streams),
            "steps": sum(stream.steps for stream in self.streams),
            "latency": "per chunk" if self.config.scenario != "offline" else "per batch of chunks",
        }

    def inputs_facts(self) -> dict[str, Any]:
        """Where the inputs came from, whether preprocessing was timed, and their shapes."""
        return {
            "source": self.source.description,
            "include_preprocess": self.source.timed,
            "shapes": self.source.shapes,
            "roles": {role.name: role.role for role in self.roles.inputs},
        }

    @property
    def bound_ms(self) -> float:
        return self.config.latency_bound_ms if self.config.latency_bound_ms is not None else self.deadline_ms

    @property
    def max_batch_size(self) -> int:
        """server: ``--batch``, else the device policy's (measured once per model and device)."""
        return self.config.batch or self.policy.max_batch_size

    @property
    def instances(self) -> int:
        """server: the batcher's workers, from the device (cores / threads; 2 on a GPU)."""
        return int(self.chosen["instances"])

    @property
    def stream_callers(self) -> int:
        """server, stateful model: simulated callers, one stream each."""
        return self.config.batch or max(STREAM_CALLERS, self.max_batch_size)

    @cached_property
    def policy(self) -> BatchPolicy:
        """The batcher defaults for this model on this device (`edgerun.runtime.batching.policy`)."""
        from edgerun.runtime.batching import batch_policy

        return batch_policy(self.session).for_queued_requests()  # the server's requests arrive through submit

    @cached_property
    def chosen(self) -> dict[str, Any]:
        """The server batcher's options and why: with ``--batch`` nothing is measured (as ``load(batching=N)``),
        else the policy's choice and reasons."""
        if self.config.batch is None:
            return self.policy.chosen()
        from edgerun.runtime.batching.policy import device_instances
        from edgerun.runtime.device import current_device

        instances, why = device_instances(self.session.plan, current_device())
        return {"instances": instances, "instances_why": why, "max_batch_size": self.config.batch,
                "batch_why": "given (--batch)", "batch_source": "given", "per_row_ms": {}}  # fmt: skip

    @property
    def queue_delay_ms(self) -> float:
        if self.config.max_queue_delay_ms is not None:
            return self.config.max_queue_delay_ms
        return min(2.0, self.bound_ms / 10)

    def run(self, progress: Progress | None) -> ScenarioRun:
        scenario = self.config.scenario
        if scenario in ("single-stream", "multi-stream"):
            return self._closed_loop(progress)
        if scenario == "offline":
            return self._offline(progress)
        return self._server(progress)

    def _query(self) -> Callable[[int], object]:
        if self.stateful:
            return self._stream_query()
        run, feeds, calls = self.session.run, self.source.feeds, self.calls_per_query
        if self.source.timed or calls > 1:

            def query(i: int) -> None:
                for j in range(calls):
                    run(feeds(i * calls + j))

            return query
        prepared = feeds(0) if self.config.data is None else None
        if prepared is not None:
            return lambda _: run(prepared)
        return lambda i: run(feeds(i))  # picking rows from memory: negligible next to a run

    def _stream_query(self) -> Callable[[int], object]:
        """Each query steps every stream once, on the next chunk."""
        streams, chunk = self.streams, self.chunk
        if len(streams) == 1:
            step = streams[0].step
            return lambda i: step(chunk(i))
        count = len(streams)

        def query(i: int) -> None:
            for j, stream in enumerate(streams):
                stream.step(chunk(i * count + j))

        return query

    def _closed_loop(self, progress: Progress | None) -> ScenarioRun:
        samples = self.config.samples_per_query if self.config.scenario == "multi-stream" else self.batch
        return closed_loop(
            self._query(),
            samples_per_query=samples,
            min_queries=self.config.min_queries,
            min_duration_s=self.config.min_duration_s,
            warmup=self.config.warmup,
            progress=progress,
        )

    def _offline(self, progress: Progress | None) -> ScenarioRun:
        query, rows = self._query(), self.batch

        def run_batch(i: int) -> int:
            query(i)
            return rows

        return run_offline(
            run_batch,
            total_samples=self.config.offline_samples,
            min_duration_s=self.config.min_duration_s,
            warmup=min(self.config.warmup, 2),
            progress=progress,
        )

    def _server(self, progress: Progress | None) -> ScenarioRun:
        config, feeds = self.config, self.source.feeds
        bound_s = self.bound_ms / 1e3
        duration = config.min_duration_s if config.min_duration_s > 0 else (3.0 if config.find_max_qps else 10.0)
        if self.stateful:
            return self._search(lambda qps, seconds: self._stream_trial(qps, seconds, progress), duration)
        for i in range(config.warmup):
            self.session.run(feeds(i))

        def trial(qps: float, seconds: float) -> ScenarioRun:
            with self._batcher() as batcher:
                return run_server(
                    lambda i: batcher.submit(feeds(i)),
                    target_qps=qps,
                    duration_s=seconds,
                    latency_bound_s=bound_s,
                    seed=config.seed,
                    progress=progress,
                )

        return self._search(trial, duration)

    def _search(self, trial: Callable[[float, float], ScenarioRun], duration: float) -> ScenarioRun:
        """The run at the target rate, or the search for the highest rate that holds the bound."""
        config = self.config
        if not config.find_max_qps:
            assert config.target_qps is not None
            return trial(config.target_qps, duration)
        low, high = self._qps_bracket()
        search = find_max_qps(lambda qps: trial(qps, duration), low_qps=low, high_qps=high)
        best = search.best or trial(low, duration)
        assert best.server is not None
        best.server = {**best.server, "max_qps": search.max_qps, "trials": search.trials}
        best.interrupted = best.interrupted or search.interrupted
        return best

    def _batcher(self) -> DynamicBatcher:
        from edgerun.runtime.batching import DynamicBatcher

        return DynamicBatcher(
            self.session,
            max_batch_size=self.max_batch_size,
            instances=self.instances,
            max_queue_delay_ms=self.queue_delay_ms,
            default_timeout_ms=10 * self.bound_ms,
        )

    def _stream_trial(self, qps: float, seconds: float, progress: Progress | None) -> ScenarioRun:
        """Poisson arrivals at ``qps``; query i is the next step of caller ``i % callers``'s stream. Each
        caller's steps run in order (its state carries), callers' steps share batches in the batcher."""
        from concurrent.futures import ThreadPoolExecutor

        chunk = self.chunk
        with self._batcher() as batcher:
            streams = [batcher.stream() for _ in range(self.stream_callers)]
            self.streams = streams
            callers = [ThreadPoolExecutor(1, thread_name_prefix="edgerun-bench-caller") for _ in streams]
            try:
                for i in range(self.config.warmup):
                    streams[i % len(streams)].step(chunk(i))
                return run_server(
                    lambda i: callers[i % len(callers)].submit(streams[i % len(streams)].step, chunk(i)),
                    target_qps=qps,
                    duration_s=seconds,
                    latency_bound_s=self.bound_ms / 1e3,
                    seed=self.config.seed,
                    progress=progress,
                )
            finally:
                for caller in callers:
                    caller.shutdown(wait=True, cancel_futures=True)

    def _qps_bracket(self) -> tuple[float, float]:
        """Where the search for the highest rate starts: half the serial rate to twice the batched one."""
        rows = self.max_batch_size
        if self.stateful:
            one_stream, many_streams, first = self.session.stream(), self.session.stream(batch=rows), self.chunk(0)
            many_chunk = _repeated(first, rows, self.roles.batch_axes)
            serial = _median_seconds(lambda: one_stream.step(first))
            batched = _median_seconds(lambda: many_streams.step(many_chunk)) / rows
            return 0.5 / serial, 2.0 / min(serial, batched)
        one = self.source.feeds(0)
        many = _repeated(one, rows, self.roles.batch_axes)
        serial = _median_seconds(lambda: self.session.run(one))
        batched = _median_seconds(lambda: self.session.run(many)) / rows
        return 0.5 / serial, 2.0 / min(serial, batched)


def _repeated(feeds: Mapping[str, np.ndarray], rows: int, axes: Mapping[str, int | None]) -> dict[str, np.ndarray]:
    """``feeds`` of one row repeated to ``rows`` along each input's batch axis (constants as they are)."""
    return {
        name: value if (axis := axes.get(name, 0)) is None else np.repeat(value, rows, axis=axis)
        for name, value in feeds.items()
    }


def _median_seconds(call: Callable[[], object], repeats: int = 7) -> float:
    """Median wall time of ``repeats`` calls (at least a microsecond: it divides rates)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return max(float(np.median(times)), 1e-6)


def fixed_batch(session: Session) -> int | None:
    """The batch size the model fixes on its inputs' batch axes (None when one is symbolic).

    A model whose inputs all lack a batch axis (every shape fixed, none at 1) fixes axis 0, as before roles.
    """
    axes = session.roles.batch_axes
    fixed: int | None = None
    for spec in session.inputs:
        axis = axes.get(spec.name)
        if axis is None or axis >= spec.rank:
            continue  # a constant: never batched
        dim = spec.shape[axis]
        if isinstance(dim, str):
            return None
        fixed = dim if fixed is None else fixed
    if fixed is None and not any(axis is not None for axis in axes.values()):
        first = next((spec.shape[0] for spec in session.inputs if spec.shape), None)
        return first if isinstance(first, int) else None
    return fixed


def bench_inputs(session: Session, config: BenchConfig) -> dict[str, np.ndarray]:
    """The feeds of a bench run's first query, as ``config`` makes them for ``session``: what is timed."""
    return ScenarioRunner(session, config, 1.0).source.feeds(0)
