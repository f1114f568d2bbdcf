"""`BenchResult`: one bench run's facts, figures and verdicts, and its form in result files (``to_dict``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from edgerun.bench.schema import SCHEMA
from edgerun.stats import LatencyStats


@dataclass(frozen=True)
class BenchResult:
    """One benchmark run: what ran where, how it was loaded, how fast, and the verdicts."""

    model: str
    model_sha256: str
    backend: str
    plan: dict[str, Any]
    device: dict[str, Any]
    system: dict[str, Any]
    scenario: str
    settings: dict[str, Any]
    batch: int
    inputs: dict[str, Any]
    queries: int
    samples: int
    wall_s: float
    interrupted: bool
    latency_ms: LatencyStats
    latency_samples_ms: list[float]
    deadline_ms: float
    server: dict[str, Any] | None
    gpu_phases_ms: dict[str, float] | None
    warnings: list[str]
    notes: list[str]
    versions: dict[str, str | None]
    stream: dict[str, Any] | None = None
    """A stateful model's run as streams (`ScenarioRunner.stream_facts`): state carried, latency per chunk."""
    timestamp: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def throughput_per_s(self) -> float:
        """Samples per second over the measured run."""
        return self.samples / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def qps(self) -> float:
        return self.queries / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def deadline_rule(self) -> str:
        if self.scenario == "offline":
            return f"throughput >= {1e3 / self.deadline_ms:.1f} samples/s (one sample per {self.deadline_ms:g} ms)"
        return f"p99 <= {self.deadline_ms:g} ms"

    @property
    def meets_deadline(self) -> bool:
        """Offline: the frame rate the deadline implies; otherwise p99 of queries within the deadline."""
        if self.scenario == "offline":
            return self.throughput_per_s >= 1e3 / self.deadline_ms
        return self.latency_ms.p99 <= self.deadline_ms

    @property
    def score(self) -> dict[str, Any]:
        """The scenario's headline figure, as LoadGen scores it."""
        if self.scenario == "single-stream":
            return {"metric": "p90 latency ms", "value": self.latency_ms.p90, "higher_is_better": False}
        if self.scenario == "multi-stream":
            return {"metric": "p99 latency ms", "value": self.latency_ms.p99, "higher_is_better": False}
        if self.scenario == "offline":
            return {"metric": "samples/s", "value": self.throughput_per_s, "higher_is_better": True}
        server = self.server or {}
        if "max_qps" in server:
            return {"metric": "max QPS within the latency bound", "value": server["max_qps"], "higher_is_better": True}
        return {"metric": "QPS at target", "value": server.get("achieved_qps", 0.0), "higher_is_better": True}

    @property
    def stream_summary(self) -> str | None:
        """``stream: state carried (state -> stateN), per-chunk latency``, for stateful runs."""
        return stream_summary(self.stream)

    def to_dict(self) -> dict[str, Any]:
        latency = self.latency_ms.to_dict()
        latency["median"] = self.latency_ms.p50
        latency["cv"] = self.latency_ms.cv
        return {
            "schema": SCHEMA,
            "kind": "run",
            "model": self.model,
            "model_sha256": self.model_sha256,
            "backend": self.backend,
            "precision": self.plan["precision"],
            "threads": self.plan["threads"],
            "device": self.device,
            "system": self.system,
            "plan": self.plan,
            "fallbacks": self.plan["fallbacks"],
            "scenario": self.scenario,
            "settings": self.settings,
            "batch": self.batch,
            "inputs": self.inputs,
            "queries": self.queries,
            "samples": self.samples,
            "wall_s": self.wall_s,
            "interrupted": self.interrupted,
            "latency_ms": latency,
            "latency_samples_ms": self.latency_samples_ms,
            "throughput_per_s": self.throughput_per_s,
            "qps": self.qps,
            "score": self.score,
            "deadline_ms": self.deadline_ms,
            "meets_deadline": self.meets_deadline,
            "deadline_rule": self.deadline_rule,
            "server": self.server,
            "stream": self.stream,
            "gpu_phases_ms": self.gpu_phases_ms,
            "warnings": self.warnings,
            "notes": self.notes,
            "versions": self.versions,
            "timestamp": self.timestamp,
        }


def stream_summary(stream: dict[str, Any] | None) -> str | None:
    """One line on a run's streams (from its ``stream`` facts), or None for a model without state."""
    if not stream:
        return None
    pairs = ", ".join(f"{name} -> {output}" for name, output in stream["state"].items())
    per = "per-chunk latency" if stream.get("latency") == "per chunk" else f"latency {stream.get('latency')}"
    return (
        f"stream: state carried ({pairs}), {per}; {stream['streams']} stream(s), "
        f"{stream['rows_per_step']} row(s) per step, {stream['steps']} steps"
    )
