"""The planner: from a model, a device profile and the user's wishes to one `Plan`.

The plan is where every choice is made and explained (backend, execution targets,
precision, threads) and where fallbacks are recorded, so that ``Session.plan``,
``edgerun info`` and bench reports all show the same story. Unknown strings are rejected
here with the list of valid ones; a backend asked for by name that cannot run raises
`BackendUnavailableError` with the probe's reason instead of silently falling back.
"""

from __future__ import annotations

import logging
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from edgerun.errors import BackendUnavailableError, ConfigError, UnsupportedPrecisionError
from edgerun.logs import log_once
from edgerun.runtime.backends.base import Availability, BackendEntry
from edgerun.runtime.defaults import DeviceDefaults
from edgerun.runtime.device import DeviceProfile
from edgerun.runtime.modelfile import ModelFile

Precision = Literal["auto", "fp32", "fp16", "bf16", "int8"]
"""What ``load(precision=...)`` accepts; ``auto`` is the model's stored precision (FP16 on a GPU backend)."""
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
COMMON_OPTIONS = {"threads": "CPU intra-op threads (int >= 1); default from the device profile"}
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(?::(\d+))?)$")

_log = logging.getLogger("edgerun")


@dataclass(frozen=True)
class Plan:
    """What `load()` chose for a model on this device, and why."""

    backend: str
    backend_version: str | None
    device: str
    """``cpu`` or ``cuda:N``: where the model's arithmetic runs."""
    device_kind: str
    targets: tuple[str, ...]
    """Backend-specific targets in priority order (ONNX Runtime execution providers)."""
    precision: str
    threads: int
    options: Mapping[str, Any] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    fallbacks: tuple[str, ...] = ()
    """Each preferred choice that was not possible, with the reason: never silent."""
    artifact: str | None = None
    """The converted model that runs when ``precision`` differs from the stored one."""
    quality: Mapping[str, Any] | None = None
    """The precision guard's check of that conversion against FP32 (figures, nodes kept in FP32, verdict)."""

    def describe(self) -> str:
        """A few lines for terminals and logs."""
        lines = [
            f"backend {self.backend} {self.backend_version or ''}".rstrip()
            + f" on {self.device} ({', '.join(self.targets)}), precision {self.precision}, "
            f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        ]
        lines += [f"fallback: {f}" for f in self.fallbacks]
        lines += [f"why: {r}" for r in self.reasons]
        if self.quality is not None:
            lines.append(f"quality: {self.quality.get('summary', '')}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "backend_version": self.backend_version,
            "device": self.device,
            "device_kind": self.device_kind,
            "targets": list(self.targets),
            "precision": self.precision,
            "threads": self.threads,
            "options": dict(self.options),
            "reasons": list(self.reasons),
            "fallbacks": list(self.fallbacks),
            "artifact": self.artifact,
            "quality": None if self.quality is None else dict(self.quality),
        }


@dataclass(frozen=True)
class PlanRequest:
    """What the caller of ``load()`` asked for: each ``auto`` is left to the device's defaults."""

    device: str = "auto"
    backend: str = "auto"
    precision: Precision = "auto"
    options: Mapping[str, Any] = field(default_factory=dict)


def choose_plan(
    entries: Mapping[str, BackendEntry], model: ModelFile, profile: DeviceProfile, request: PlanRequest
) -> Plan:
    """Choose backend, targets, precision and threads for ``model`` on ``profile`` among ``entries``."""
    options = dict(request.options)
    backend, precision = request.backend, request.precision
    _check_choice("backend", backend, ("auto", *entries))
    _check_choice("precision", precision, PRECISIONS)
    device = _check_device(request.device, profile)
    defaults = DeviceDefaults.for_profile(profile)
    names = (backend,) if backend != "auto" else defaults.backend_order
    asked = replace(request, device=device, options=options)

    skipped: list[tuple[BackendEntry, str]] = []
    for name in names:
        entry = entries[name]
        availability = entry.probe(profile, device)
        problem = _problem(entry, availability, model, precision)
        if problem is None:
            return _plan_for(entry, availability, model, profile, names, asked, skipped, defaults)
        if backend != "auto":
            error = UnsupportedPrecisionError if problem.startswith("precision") else BackendUnavailableError
            raise error(f"backend {name} cannot run {model.path} here: {problem}")
        skipped.append((entry, problem))
    details = "; ".join(f"{entry.name}: {why}" for entry, why in skipped)
    if precision != "auto":
        raise UnsupportedPrecisionError(f"no backend can run {model.path} at precision {precision} here ({details})")
    raise BackendUnavailableError(f"no backend can run {model.path} on this device ({details})")


def as_precision(value: str) -> Precision:
    """``value`` checked as a precision name (for strings from a command line or a file)."""
    for name in PRECISIONS:
        if value == name:
            return name
    raise ConfigError(f"unknown precision {value!r}; choose one of: {', '.join(PRECISIONS)}")


def _check_choice(what: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"unknown {what} {value!r}; choose one of: {', '.join(valid)}")


def _check_device(device: str, profile: DeviceProfile) -> str:
    match = _DEVICE_RE.match(device) if isinstance(device, str) else None
    if match is None:
        raise ConfigError(f"unknown device {device!r}; choose one of: auto, cpu, cuda, cuda:N")
    if device.startswith("cuda") and not profile.has_nvidia_gpu:
        raise BackendUnavailableError(
            f"device {device!r} requested, but this {profile.kind} device ({profile.model}) has no NVIDIA GPU"
        )
    return "cuda:0" if device == "cuda" else device


def _problem(entry: BackendEntry, availability: Availability, model: ModelFile, precision: str) -> str | None:
    if not availability.available:
        return availability.reason
    supported = entry.precisions(model)
    if precision != "auto" and precision not in supported:
        return (
            f"precision {precision} is not possible for this {model.precision} model (possible: {', '.join(supported)})"
        )
    return None


def _plan_for(
    entry: BackendEntry,
    availability: Availability,
    model: ModelFile,
    profile: DeviceProfile,
    tried: tuple[str, ...],
    request: PlanRequest,
    skipped: list[tuple[BackendEntry, str]],
    defaults: DeviceDefaults,
) -> Plan:
    device, precision, options = request.device, request.precision, dict(request.options)
    known = {**COMMON_OPTIONS, **entry.options}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} for backend {entry.name}; "
            f"known: {', '.join(sorted(known))}"
        )
    requested = options.pop("threads", None)
    if requested is None:
        threads = defaults.threads
        thread_reason = defaults.threads_reason
    else:
        threads = _positive_int("threads", requested)
        thread_reason = f"{threads} thread{'s' if threads != 1 else ''} as requested"
    chosen_precision = entry.precisions(model)[0] if precision == "auto" else precision
    runs_on = device if device.startswith("cuda:") else availability.runs_on
    fallbacks = tuple(_fallback_message(e, why, entry, runs_on) for e, why in skipped)
    # Missing TensorRT is news on a GPU device; on a CPU board, or when the CPU was asked for, it is expected.
    level = logging.WARNING if profile.has_nvidia_gpu and device != "cpu" else logging.INFO
    for message in fallbacks:
        log_once(_log, level, message)
    reasons = (
        f"device {profile.kind} ({profile.model}): backends tried in order {', '.join(tried)}",
        f"{entry.name}: {availability.reason}",
        f"precision {chosen_precision}: "
        + (
            "stored in the model"
            if precision == "auto"
            else "as requested (stored in the model)"
            if chosen_precision == model.precision
            else f"as requested, from the {model.precision} model by conversion"
        ),
        f"threads: {thread_reason}",
    )
    return Plan(
        backend=entry.name,
        backend_version=availability.version,
        device=runs_on,
        device_kind=profile.kind,
        targets=availability.targets,
        precision=chosen_precision,
        threads=threads,
        options=options,
        reasons=reasons,
        fallbacks=fallbacks,
    )


def _positive_int(name: str, value: Any) -> int:
    """An int >= 1 (numpy integers welcome); bools, floats and strings are refused."""
    if isinstance(value, bool):
        raise ConfigError(f"option {name} must be an integer >= 1, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise ConfigError(f"option {name} must be an integer >= 1, got {value!r}") from None
    if number < 1:
        raise ConfigError(f"option {name} must be an integer >= 1, got {value!r}")
    return number


def _fallback_message(skipped: BackendEntry, why: str, chosen: BackendEntry, runs_on: str) -> str:
    where = "CPU" if runs_on == "cpu" else runs_on
    return f"{skipped.title} not available: using {chosen.name} {where} ({why})"
