"""The `Backend` protocol and the `BackendEntry` that describes one to the planner.

A backend is described by an entry: a name, a probe that says whether it can run on this
device (and why not), the options it accepts, an opener and its capabilities. The planner and
everything above it read capabilities from the entry and never compare backend names, so
adding another runtime means one more entry in `edgerun.registry`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from edgerun.runtime.device import DeviceProfile
    from edgerun.runtime.modelfile import ModelFile
    from edgerun.runtime.plan import Plan
    from edgerun.specs import TensorSpec

QdqLayout = Literal["tensorrt", "cpu"]
"""How an INT8 Q/DQ model is laid out: signed with zero points 0 (TensorRT, GPU providers), or
unsigned activations (what ONNX Runtime's x86/Arm CPU kernels fuse)."""


class Backend(Protocol):
    """A model opened by one runtime: run feeds that the session has already validated."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; the returned arrays are new and owned by the caller."""
        ...

    def run_single(self, array: np.ndarray) -> dict[str, np.ndarray]:
        """`run` for a one-input model given its validated array: the per-call hot path."""
        ...

    def close(self) -> None:
        """Release the runtime's resources; idempotent."""
        ...


@runtime_checkable
class PhaseTimedBackend(Protocol):
    """A backend that can time each call's phases (host enqueue, H2D copy, compute, D2H copy)."""

    def measure_phases(self, enabled: bool) -> None:
        """Start (or stop) timing every call's phases; off by default, as it costs a little per call."""
        ...

    def phase_times_ms(self) -> dict[str, float] | None:
        """Median milliseconds per phase over the timed calls, or None before any."""
        ...


@runtime_checkable
class CachedEngineBackend(Protocol):
    """A backend whose model is a built engine that may come from a cache."""

    cache_hit: bool
    """True when this load found its engine in the cache instead of building it."""
    engine_path: Path
    """Where the engine lives in the cache."""


@dataclass(frozen=True)
class Availability:
    """A probe's answer: can this backend run here, on which targets, and if not, why."""

    available: bool
    reason: str
    version: str | None = None
    targets: tuple[str, ...] = ()
    """Where it would run, e.g. ONNX Runtime execution providers in priority order."""
    runs_on: str = "cpu"
    """Where the model's arithmetic would run: ``cpu``, or ``cuda:0`` for the first GPU target."""


@dataclass(frozen=True)
class Capabilities:
    """What callers may rely on, so that no code outside the backends compares backend names."""

    concurrent_runs: bool
    """One opened model may run calls from several threads at once (ONNX Runtime sessions);
    otherwise each concurrent worker needs its own session (a TensorRT context)."""
    qdq_layout: Callable[[str], QdqLayout]
    """The INT8 Q/DQ layout this backend wants, given the plan's device (``cpu`` or ``cuda:N``)."""
    phase_timing: bool = False
    """Opened models implement `PhaseTimedBackend`."""
    precision_from_fp32: Callable[[Plan], str | None] = lambda plan: None
    """Why this backend makes the plan's precision from the FP32 model itself (a reason), or None: then
    `load()` converts first (TensorRT 10.x DLA builds are weakly typed and take FP16 by builder flag)."""


@dataclass(frozen=True)
class ModelSource:
    """Where the model that is opened came from: the user's file before any precision conversion."""

    sha256: str
    """SHA-256 of the user's original model (an engine cache groups entries by it)."""
    typical_shapes: Mapping[str, Sequence[int]] | None = None
    """Shapes the model card gives for free dimensions, e.g. ``{"x": [1, 3, 48, 192]}``."""


@dataclass(frozen=True)
class BackendEntry:
    """A backend the planner can choose."""

    name: str
    title: str
    probe: Callable[[DeviceProfile, str], Availability]
    """Called with the device profile and the requested device (``auto``, ``cpu``, ``cuda:0``)."""
    opener: Callable[[ModelFile, Plan, ModelSource], Backend] | None
    """None for a backend that edgerun can detect but does not run yet."""
    options: Mapping[str, str]
    """Backend-specific ``load()`` options and what each does."""
    precisions: Callable[[ModelFile], tuple[str, ...]]
    """Precisions this backend can run the given model at, preferred first."""
    capabilities: Capabilities
