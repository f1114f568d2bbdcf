"""`edgerun bench`: run a scenario on a session and report it the way device engineers read reports.

`benchmark` builds the inputs and the scenario's callables (`scenarios`), runs one of LoadGen's
scenarios (`loadgen`) while watching temperatures (`sysinfo`), and returns a `BenchResult`: latency
distribution (nearest-rank percentiles), throughput, the scenario's score, the real-time verdict,
system facts and trtexec-style warnings (`diagnose`). `time_calls` is the plain one-query-at-a-time
timer other tools share. Rendering and files live elsewhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgerun import __version__
from edgerun.bench.config import BenchConfig
from edgerun.bench.diagnose import diagnose
from edgerun.bench.loadgen import LOADGEN_MIN_DURATION_S, Progress, ScenarioRun, closed_loop
from edgerun.bench.result import BenchResult
from edgerun.bench.scenarios import ScenarioRunner
from edgerun.errors import InputError
from edgerun.runtime.backends.base import PhaseTimedBackend
from edgerun.runtime.device import DeviceProfile
from edgerun.runtime.session import Session
from edgerun.stats import LatencyStats

if TYPE_CHECKING:
    from edgerun.bench.sysinfo import SystemInfo, ThermalMonitor

__all__ = ["Timing", "benchmark", "time_calls"]

LATENCY_SAMPLES_KEPT = 10_000
"""Per-query latencies written to result files (for plots), evenly thinned beyond this."""


@dataclass(frozen=True)
class Timing:
    """Raw per-call latencies (seconds) and the wall time of the measured loop."""

    latencies_s: np.ndarray
    wall_s: float


def time_calls(
    session: Session,
    feeds: Mapping[str, np.ndarray],
    *,
    warmup: int = 10,
    iterations: int = 200,
    duration_s: float = 0.0,
    progress: Callable[[int], None] | None = None,
) -> Timing:
    """Call ``session.run(feeds)`` warmup times, then until ``iterations`` and ``duration_s`` are met."""
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    run = session.run
    report = None if progress is None else (lambda done, _: progress(done))
    measured = closed_loop(
        lambda _: run(feeds),
        samples_per_query=1,
        min_queries=iterations,
        min_duration_s=duration_s,
        warmup=warmup,
        progress=report,
    )
    return Timing(measured.latencies_s, measured.wall_s)


def benchmark(
    session: Session,
    profile: DeviceProfile,
    config: BenchConfig | None = None,
    *,
    progress: Progress | None = None,
    **overrides: Any,
) -> BenchResult:
    """Run ``config``'s scenario on ``session`` (fields of `BenchConfig` may be given as keywords)."""
    from edgerun.bench.sysinfo import system_info
    from edgerun.runtime.defaults import DeviceDefaults

    config = dataclasses.replace(config or BenchConfig(), **overrides)
    deadline = config.deadline_ms if config.deadline_ms is not None else DeviceDefaults.for_profile(profile).deadline_ms
    runner = ScenarioRunner(session, config, deadline)
    system = system_info(profile.kind, root=config.thermal_root)
    measured, phases, monitor = _measure(session, runner, progress)
    if measured.queries == 0:
        raise InputError(f"{runner.label}: the run was stopped before a single query completed")
    latency = LatencyStats.from_seconds(measured.latencies_s)
    warnings, notes = diagnose(
        scenario=config.scenario,
        latency=latency,
        queries=measured.queries,
        wall_s=measured.wall_s,
        interrupted=measured.interrupted,
        throttling=monitor.reasons,
        governor=system.governor,
        gpu_phases_ms=phases,
        min_duration_s=LOADGEN_MIN_DURATION_S,
    )
    return BenchResult(
        model=runner.label,
        model_sha256=session.model.sha256,
        backend=session.backend,
        plan=session.plan.to_dict(),
        device=profile.to_dict(),
        system=_system_facts(system, monitor),
        scenario=config.scenario,
        settings=runner.settings(),
        batch=runner.batch,
        inputs=runner.inputs_facts(),
        queries=measured.queries,
        samples=measured.samples,
        wall_s=measured.wall_s,
        interrupted=measured.interrupted,
        latency_ms=latency,
        latency_samples_ms=_thin(measured.latencies_s * 1e3, LATENCY_SAMPLES_KEPT),
        deadline_ms=deadline,
        server=measured.server,
        gpu_phases_ms=phases,
        warnings=warnings,
        notes=notes,
        versions={"edgerun": __version__, **profile.versions},
        stream=runner.stream_facts(),
    )


def _measure(
    session: Session, runner: ScenarioRunner, progress: Progress | None
) -> tuple[ScenarioRun, dict[str, float] | None, ThermalMonitor]:
    """Run the scenario under a thermal monitor, with GPU phase timing on where the backend has it."""
    from edgerun.bench.sysinfo import ThermalMonitor

    timed: object = session.opened_backend if session.capabilities.phase_timing else None
    if isinstance(timed, PhaseTimedBackend):
        timed.measure_phases(True)
    try:
        with ThermalMonitor(root=runner.config.thermal_root) as monitor:
            measured = runner.run(progress)
        phases = _gpu_phases(session)
    finally:
        if isinstance(timed, PhaseTimedBackend):
            timed.measure_phases(False)
    return measured, phases, monitor


def _system_facts(system: SystemInfo, monitor: ThermalMonitor) -> dict[str, Any]:
    """The machine's facts, with what the thermal monitor saw during the run."""
    facts = system.to_dict()
    facts["max_temperatures_c"] = monitor.max_temperatures_c
    facts["throttling_seen"] = monitor.throttled
    facts["throttling_reasons"] = monitor.reasons
    return facts


def _gpu_phases(session: Session) -> dict[str, float] | None:
    """Median enqueue / compute / H2D / D2H times, from backends that measure them (TensorRT's)."""
    if session.closed or not session.capabilities.phase_timing:
        return None
    backend = session.opened_backend
    result = backend.phase_times_ms() if isinstance(backend, PhaseTimedBackend) else None
    return dict(result) if result else None


def _thin(values: np.ndarray, limit: int) -> list[float]:
    """At most ``limit`` of ``values``, evenly spaced, rounded to a nanosecond-of-a-millisecond (6 places)."""
    if len(values) > limit:
        values = values[np.linspace(0, len(values) - 1, limit).astype(int)]
    return [round(float(v), 6) for v in values]
