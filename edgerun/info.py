"""What ``edgerun info`` reports, as plain data: device, backends, and a model's plan.

The plan shown for a model is the one `load()` would choose, made by the same planner,
without opening a backend.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from edgerun import __version__
from edgerun.errors import EdgerunError
from edgerun.registry import registered
from edgerun.runtime.defaults import DeviceDefaults
from edgerun.runtime.device import DeviceProfile

if TYPE_CHECKING:
    from edgerun.models import ModelCard
    from edgerun.roles import ModelRoles
    from edgerun.runtime.modelfile import ModelFile
    from edgerun.runtime.plan import Plan


def device_report(profile: DeviceProfile) -> dict[str, Any]:
    """The device profile, its defaults and every registered backend's availability here."""
    defaults = DeviceDefaults.for_profile(profile)
    backends = []
    for entry in registered().values():
        availability = entry.probe(profile, "auto")
        backends.append(
            {
                "name": entry.name,
                "available": availability.available,
                "version": availability.version,
                "targets": list(availability.targets),
                "detail": availability.reason,
            }
        )
    return {
        "edgerun": __version__,
        "device": profile.to_dict(),
        "defaults": {
            "backend_order": list(defaults.backend_order),
            "threads": defaults.threads,
            "threads_reason": defaults.threads_reason,
            "deadline_ms": defaults.deadline_ms,
        },
        "backends": backends,
    }


def model_report(
    model: str | os.PathLike[str],
    profile: DeviceProfile,
    *,
    device: str = "auto",
    backend: str = "auto",
    precision: str = "auto",
    options: dict[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    observe: bool = True,
) -> dict[str, Any]:
    """A model's file facts, I/O specs, input roles, card (if bundled) and the plan ``load()`` would make.

    ``inputs``: role overrides as ``load(inputs=...)``; ``shapes``: sizes of free symbols or inputs for the
    run that observes output shapes (``observe=False`` skips it).
    """
    from edgerun import models
    from edgerun.loading import model_roles
    from edgerun.registry import make_plan
    from edgerun.runtime.modelfile import ModelFile
    from edgerun.runtime.outputshapes import Observation, observe_model
    from edgerun.runtime.plan import as_precision

    path, card = models.resolve(model)
    model_file = ModelFile.open(path)
    roles = model_roles(model_file, card, inputs)
    sizes = {**(card.input_shapes or {} if card else {}), **(shapes or {})}
    observation = observe_model(model_file, roles, sizes) if observe else Observation(None, "not run (--no-run)")
    report: dict[str, Any] = {
        "path": str(model_file.path),
        "size_bytes": model_file.size_bytes,
        "sha256": model_file.sha256,
        "ir_version": model_file.ir_version,
        "opset": model_file.opset,
        "opsets": model_file.opsets,
        "producer": model_file.producer,
        "precision": model_file.precision,
        "inputs": [_spec_dict(s) for s in model_file.inputs],
        "outputs": [_spec_dict(s) for s in model_file.outputs],
        "card": card.to_dict() if card else None,
        "roles": roles_dict(roles),
        "observed_outputs": [_spec_dict(s) for s in observation.specs] if observation.specs is not None else None,
        "observed_note": observation.note,
        "output_mismatches": [m.to_dict() for m in observation.mismatches(model_file.outputs)],
    }
    try:
        plan = make_plan(
            model_file, profile, device=device, backend=backend, precision=as_precision(precision), options=options
        )
        report["plan"] = plan.to_dict()
        report["plan"]["quality"] = _recorded_check(model_file, plan, card, roles)
        report["plan"]["converted"] = plan.precision != model_file.precision
        report["plan"]["batching"] = _cached_batching(model_file, plan, profile)
        report["plan_error"] = None
    except EdgerunError as exc:  # the model is fine; say why it cannot run here
        report["plan"] = None
        report["plan_error"] = str(exc)
    return report


def _cached_batching(model_file: ModelFile, plan: Plan, profile: DeviceProfile) -> dict[str, Any] | None:
    """The batcher defaults a load with ``batching=True`` measured for this plan, if one has (nothing is run)."""
    if plan.precision != model_file.precision:
        return None  # the converted model's measurement is keyed by its own hash
    from edgerun.runtime.batching.policy import cached_policy

    concurrent = registered()[plan.backend].capabilities.concurrent_runs
    policy = cached_policy(model_file.sha256, plan, profile, concurrent_runs=concurrent)
    return None if policy is None else policy.chosen()


def _recorded_check(
    model_file: ModelFile, plan: Plan, card: ModelCard | None, roles: ModelRoles
) -> dict[str, Any] | None:
    """The precision guard's check of the converted model this plan runs, if a load already made it."""
    if plan.precision == model_file.precision:
        return None
    from edgerun.loading import auto_quantization
    from edgerun.precision.artifacts import cached_check

    quantization = auto_quantization(model_file, plan, registered()[plan.backend])  # load's mode: dynamic or static
    return cached_check(model_file, plan.precision, card=card, quantization=quantization, roles=roles)


def roles_dict(roles: ModelRoles) -> dict[str, Any]:
    """Input roles, output batch axes and state pairs as plain data (``describe`` is the one-line form)."""
    return {
        "inputs": [
            {
                "name": r.name,
                "role": r.role,
                "batch_axis": r.batch_axis,
                "low": r.low,
                "high": r.high,
                "value": r.value,
                "state_output": r.state_output,
                "origin": r.origin,
                "evidence": r.evidence,
                "describe": r.describe(),
            }
            for r in roles.inputs
        ],
        "output_axes": dict(roles.output_axes),
        "stateful": roles.stateful,
        "state_pairs": roles.state_pairs,
    }


def _spec_dict(spec: Any) -> dict[str, Any]:
    return {"name": spec.name, "shape": list(spec.shape), "dtype": spec.dtype.name}
