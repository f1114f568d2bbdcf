"""Temperature schedules: constant, or from T_start to T_end along training (progressive distillation).

A schedule maps training progress in [0, 1] to a temperature; `TemperatureSchedule.at_step`
converts a step count. Progressive distillation starts hot (T=5: the teacher's dark knowledge,
the relative scores of the wrong classes, is visible) and cools towards T=1 (the teacher's
actual predictions). ``linear`` moves at a constant rate; ``cosine`` stays near each end longer
(half a cosine period, as in cosine learning-rate decay). Plain Python: usable in any loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgerun.distill.checks import check_temperature
from edgerun.errors import ConfigError

KINDS = ("constant", "linear", "cosine")


@dataclass(frozen=True)
class TemperatureSchedule:
    """``kind`` in `KINDS`; ``end`` defaults to ``start`` (and must equal it for ``constant``)."""

    kind: str
    start: float
    end: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown temperature schedule {self.kind!r}; choose one of: {', '.join(KINDS)}")
        object.__setattr__(self, "start", check_temperature(self.start, "start temperature"))
        end = self.start if self.end is None else check_temperature(self.end, "end temperature")
        if self.kind == "constant" and end != self.start:
            raise ConfigError(f"a constant schedule has one temperature, got start {self.start} and end {end}")
        object.__setattr__(self, "end", end)

    @classmethod
    def constant(cls, temperature: float) -> TemperatureSchedule:
        return cls("constant", temperature)

    @classmethod
    def linear(cls, start: float, end: float) -> TemperatureSchedule:
        return cls("linear", start, end)

    @classmethod
    def cosine(cls, start: float, end: float) -> TemperatureSchedule:
        return cls("cosine", start, end)

    @property
    def final(self) -> float:
        """The temperature at the end of training."""
        assert self.end is not None  # set in __post_init__
        return self.end

    def at(self, progress: float) -> float:
        """The temperature at ``progress`` (0: first step, 1: last; clamped to [0, 1])."""
        if math.isnan(progress):
            raise ConfigError("training progress is NaN")
        p = min(1.0, max(0.0, float(progress)))
        if self.kind == "linear":
            return self.start + (self.final - self.start) * p
        if self.kind == "cosine":
            return self.final + (self.start - self.final) * (1.0 + math.cos(math.pi * p)) / 2.0
        return self.start

    def at_step(self, step: int, total_steps: int) -> float:
        """The temperature at 0-based ``step`` of ``total_steps``: ``start`` at step 0, ``end`` at the last."""
        if total_steps < 1:
            raise ConfigError(f"total_steps must be >= 1, got {total_steps}")
        return self.at(step / (total_steps - 1) if total_steps > 1 else 1.0)

    def describe(self) -> str:
        """``T=4`` or ``T 5->1 (linear)``: for tables and model cards."""
        if self.kind == "constant":
            return f"T={self.start:g}"
        return f"T {self.start:g}->{self.final:g} ({self.kind})"
