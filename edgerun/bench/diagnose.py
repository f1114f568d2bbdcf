"""Warnings and notes for a bench report, in the spirit of trtexec's: what makes a number untrustworthy.

Warnings say a figure may be wrong or a setting leaves speed on the table (unstable latency,
too few samples behind the scored percentile, thermal throttling, an enqueue- or
transfer-bound GPU run, an interrupted run). Notes state facts a reader needs (a run shorter
than LoadGen's minimum, a CPU governor that lets clocks move).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from edgerun.stats import LatencyStats

UNSTABLE_CV = 0.10
"""Coefficient of variation of latency above which a run is called unstable."""
ENQUEUE_BOUND_RATIO = 0.8
"""trtexec's rule: median enqueue time above 0.8x the median GPU compute time."""
TAIL_SAMPLES = 10
"""At least this many queries should lie beyond the scored percentile."""
_SCORED_PERCENTILE = {"single-stream": 90.0, "multi-stream": 99.0, "server": 99.0}


def diagnose(
    *,
    scenario: str,
    latency: LatencyStats,
    queries: int,
    wall_s: float,
    interrupted: bool,
    throttling: Sequence[str],
    governor: str | None,
    gpu_phases_ms: Mapping[str, float] | None,
    min_duration_s: float,
) -> tuple[list[str], list[str]]:
    """The (warnings, notes) for one run."""
    warnings: list[str] = []
    notes: list[str] = []
    if interrupted:
        warnings.append(f"interrupted after {queries} queries: these are partial results")
    if scenario != "server" and latency.cv > UNSTABLE_CV:
        warnings.append(
            f"unstable: latency stdev is {latency.cv:.0%} of the mean (> {UNSTABLE_CV:.0%}); fix CPU clocks "
            "(governor 'performance'), the power mode (Jetson: nvpmodel / jetson_clocks), stop other work, "
            "and run longer"
        )
    percentile = _SCORED_PERCENTILE.get(scenario)
    if percentile is not None:
        beyond = queries * (100 - percentile) / 100
        if beyond < TAIL_SAMPLES:
            needed = int(TAIL_SAMPLES * 100 / (100 - percentile))
            warnings.append(
                f"too few queries for p{percentile:g}: {queries} leave {beyond:.1f} beyond it; "
                f"use at least {needed} (--min-queries)"
            )
    for reason in throttling:
        warnings.append(f"thermal throttling during the run: {reason}; cool the device or lower the power mode")
    if gpu_phases_ms:
        warnings += _gpu_warnings(gpu_phases_ms)
    if wall_s < min_duration_s:
        notes.append(
            f"ran {wall_s:.1f} s: MLPerf LoadGen requires >= {min_duration_s:.0f} s for a valid result; "
            "this is a device check, not a submission"
        )
    if governor is not None and governor != "performance":
        notes.append(f"CPU governor '{governor}': clocks move with load; 'performance' gives steadier figures")
    return warnings, notes


def _gpu_warnings(phases: Mapping[str, float]) -> list[str]:
    warnings: list[str] = []
    compute = phases.get("compute", 0.0)
    enqueue = phases.get("enqueue", 0.0)
    transfers = phases.get("h2d", 0.0) + phases.get("d2h", 0.0)
    if compute > 0 and enqueue > ENQUEUE_BOUND_RATIO * compute:
        warnings.append(
            f"enqueue-bound: median enqueue {enqueue:.3f} ms > {ENQUEUE_BOUND_RATIO}x median GPU compute "
            f"{compute:.3f} ms; enable CUDA graphs (load(..., cuda_graphs=True)) or batch more work per call"
        )
    if compute > 0 and transfers > compute:
        warnings.append(
            f"transfer-bound: host-device copies take {transfers:.3f} ms vs {compute:.3f} ms of compute; "
            "keep data on the GPU, use pinned memory, or send smaller (e.g. uint8) inputs"
        )
    return warnings
