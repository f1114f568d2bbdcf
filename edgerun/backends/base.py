"""The `Backend` protocol and the registry that the planner chooses from.

A backend registers a name, a probe that says whether it can run on this device (and why
not), the options it accepts and an opener. The planner never special-cases a backend: it
walks the device's backend order and asks each probe, so adding TensorRT or another runtime
means registering one more entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

    from ..device import DeviceProfile
    from ..model import ModelFile
    from ..plan import Plan
    from ..specs import TensorSpec


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


@dataclass(frozen=True)
class Availability:
    """A probe's answer: can this backend run here, on which targets, and if not, why."""

    available: bool
    reason: str
    version: str | None = None
    targets: tuple[str, ...] = ()
    """Where it would run, e.g. ONNX Runtime execution providers in priority order."""


@dataclass(frozen=True)
class BackendEntry:
    """A registered backend."""

    name: str
    title: str
    probe: Callable[[DeviceProfile, str], Availability]
    """Called with the device profile and the requested device (``auto``, ``cpu``, ``cuda:0``)."""
    opener: Callable[[ModelFile, Plan], Backend] | None
    """None for a backend that edgerun can detect but does not run yet."""
    options: Mapping[str, str]
    """Backend-specific ``load()`` options and what each does."""
    precisions: Callable[[ModelFile], tuple[str, ...]]
    """Precisions this backend can run the given model at, preferred first."""


_REGISTRY: dict[str, BackendEntry] = {}


def register(entry: BackendEntry) -> BackendEntry:
    """Add a backend to the registry (a later entry of the same name replaces the earlier)."""
    _REGISTRY[entry.name] = entry
    return entry


def registered() -> dict[str, BackendEntry]:
    """All registered backends by name, built-in ones included."""
    from . import builtin  # noqa: F401  (registers the built-in backends on first use)

    return dict(_REGISTRY)
