"""`ScenarioRunner`: a `BenchConfig` turned into what LoadGen's four scenarios time, for one session.

Single-stream and multi-stream run a closed loop, offline a batch stream, server a Poisson
arrival process through a `DynamicBatcher` (with an optional search for the highest rate that
holds the latency bound). This module picks the rows per call, builds the input source and the
query callables, and reports the settings used; `benchmark` turns the timings into a result.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgerun.bench.config import BenchConfig
from edgerun.bench.inputs import InputSource, data_source, random_source
from edgerun.bench.loadgen import Progress, ScenarioRun, closed_loop, find_max_qps
from edgerun.bench.loadgen import offline as run_offline
from edgerun.bench.loadgen import server as run_server
from edgerun.data.preprocess import PreprocessSpec
from edgerun.errors import ConfigError
from edgerun.runtime.session import Session


def batched_shapes(shapes: Mapping[str, Sequence[int]], batch: int) -> dict[str, list[int]]:
    """Card shapes (given at batch 1) with axis 0 set to ``batch``."""
    return {name: [batch, *dims[1:]] for name, dims in shapes.items()}


class ScenarioRunner:
    """Turns a config into the callables a `loadgen` runner times, for one session."""

    def __init__(self, session: Session, config: BenchConfig, deadline_ms: float) -> None:
        self.session = session
        self.config = config
        self.deadline_ms = deadline_ms
        self.label = session.card.name if session.card else str(session.model.path)
        self.fixed_batch = fixed_batch(session)
        self.batch = self._rows_per_call()
        self.calls_per_query = 1
        if config.scenario == "multi-stream" and self.fixed_batch is not None:
            self.calls_per_query = math.ceil(config.samples_per_query / self.fixed_batch)
        self.source = self._source(self.batch)

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

    def _source(self, rows: int) -> InputSource:
        config, session = self.config, self.session
        if config.data is None:
            shapes = config.shapes
            if shapes is not None and self.fixed_batch is None:
                shapes = batched_shapes(shapes, rows)  # --shape gives the sample shape; the batch is ours
            if shapes is None and session.card is not None:
                shapes = batched_shapes(session.card.input_shapes, rows)
            return random_source(session.inputs, rows, shapes, config.seed)
        spec = config.preprocess
        if spec is None and session.card is not None and session.card.preprocessing:
            spec = PreprocessSpec.from_dict(session.card.preprocessing)
        return data_source(
            Path(config.data),
            session.inputs,
            rows,
            spec,
            include_preprocess=config.include_preprocess,
            seed=config.seed,
        )

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
        }

    def inputs_facts(self) -> dict[str, Any]:
        """Where the inputs came from, whether preprocessing was timed, and their shapes."""
        return {
            "source": self.source.description,
            "include_preprocess": self.source.timed,
            "shapes": self.source.shapes,
        }

    @property
    def bound_ms(self) -> float:
        return self.config.latency_bound_ms if self.config.latency_bound_ms is not None else self.deadline_ms

    @property
    def max_batch_size(self) -> int:
        return self.config.batch or 8

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
        from edgerun.runtime.batching import DynamicBatcher

        config, feeds = self.config, self.source.feeds
        bound_s = self.bound_ms / 1e3
        duration = config.min_duration_s if config.min_duration_s > 0 else (3.0 if config.find_max_qps else 10.0)
        for i in range(config.warmup):
            self.session.run(feeds(i))

        def trial(qps: float, seconds: float) -> ScenarioRun:
            with DynamicBatcher(
                self.session,
                max_batch_size=self.max_batch_size,
                max_queue_delay_ms=self.queue_delay_ms,
                default_timeout_ms=10 * self.bound_ms,
            ) as batcher:
                return run_server(
                    lambda i: batcher.submit(feeds(i)),
                    target_qps=qps,
                    duration_s=seconds,
                    latency_bound_s=bound_s,
                    seed=config.seed,
                    progress=progress,
                )

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

    def _qps_bracket(self) -> tuple[float, float]:
        """Where the search for the highest rate starts: half the serial rate to twice the batched one."""
        one = self.source.feeds(0)
        many = {k: np.repeat(v, self.max_batch_size, axis=0) for k, v in one.items()}
        serial = _median_seconds(lambda: self.session.run(one))
        batched = _median_seconds(lambda: self.session.run(many)) / self.max_batch_size
        return 0.5 / serial, 2.0 / min(serial, batched)


def _median_seconds(call: Callable[[], object], repeats: int = 7) -> float:
    """Median wall time of ``repeats`` calls (at least a microsecond: it divides rates)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return max(float(np.median(times)), 1e-6)


def fixed_batch(session: Session) -> int | None:
    """The batch size every input fixes (None when axis 0 is symbolic)."""
    first = session.inputs[0].shape[0] if session.inputs and session.inputs[0].shape else None
    return first if isinstance(first, int) else None
