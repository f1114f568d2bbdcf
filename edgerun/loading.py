"""`load()`: the whole pipeline an embedded app calls, and `current_device()` (from `edgerun.runtime.device`).

Resolve the model (a path or a bundled name), validate and describe it (`ModelFile`), detect
the device, plan among the registered backends, make the precision artifact the plan needs
(`edgerun.precision`), open the backend and, when asked, put a `DynamicBatcher` in front.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgerun.errors import BackendUnavailableError
from edgerun.logs import log_once
from edgerun.runtime.device import current_device
from edgerun.runtime.session import Session

_log = logging.getLogger("edgerun")

if TYPE_CHECKING:
    from edgerun.models import ModelCard
    from edgerun.precision.quantize import QuantizeOptions
    from edgerun.roles import ModelRoles
    from edgerun.runtime.backends.base import BackendEntry
    from edgerun.runtime.device import DeviceProfile
    from edgerun.runtime.modelfile import ModelFile
    from edgerun.runtime.plan import Plan, Precision


def load(
    model: str | os.PathLike[str],
    *,
    device: str | DeviceProfile = "auto",
    backend: str = "auto",
    precision: Precision = "auto",
    **options: Any,
) -> Session:
    """Load an ONNX model (a path or a bundled model name) on the best backend for this device.

    ``device`` is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, or a `DeviceProfile` to plan for
    (tests, or overriding detection). ``backend`` is ``auto`` or a registered backend name.
    ``precision`` is ``auto`` (the model's stored precision) or ``fp32``/``fp16``/``bf16``/``int8``.
    ``options`` are backend options such as ``threads``; unknown ones are rejected.
    A precision other than the stored one runs a converted model (`edgerun.precision.artifacts`),
    built once and cached: ``calibration=`` gives INT8 its calibration data (bundled models carry
    theirs) and ``quantization=`` a `QuantizeOptions`. Every conversion is checked against FP32
    (`edgerun.precision.guard`) on ``check_data=`` (default: the card's check set, data held apart from
    calibration, or random inputs) and held to ``max_quality_loss=`` (a `QualityBudget`, or a mapping
    overriding its per-metric defaults); nodes are kept in FP32 until it passes, and a model no mix
    can make pass runs in its stored precision, with the reason in ``plan.fallbacks``.
    ``inputs=`` says what inputs mean where the graph and card do not (`edgerun.roles`): a mapping of input
    name to settings or ``"ROLE,key=value"``, e.g. ``{"sr": "constant,value=16000"}``; see ``session.roles``.
    ``batching=`` (True, a max batch size, or `DynamicBatcher` options) returns a session whose calls
    are merged into batches.
    """
    from edgerun import models
    from edgerun.registry import make_plan, registered
    from edgerun.runtime.backends.base import ModelSource
    from edgerun.runtime.device import DeviceProfile
    from edgerun.runtime.modelfile import ModelFile

    batching = options.pop("batching", None)
    settings: dict[str, Any] = {"device": device, "backend": backend, "precision": precision, **options}

    def reopen() -> Session:
        """The same model and settings, opened again without a batcher (a batcher worker's own session)."""
        return load(model, **settings)

    calibration = options.pop("calibration", None)
    quantization = options.pop("quantization", None)
    conversion = {"budget": options.pop("max_quality_loss", None), "check_data": options.pop("check_data", None)}
    given_roles = options.pop("inputs", None)
    path, card = models.resolve(model)
    model_file = ModelFile.open(Path(path))
    roles = model_roles(model_file, card, given_roles)
    source = ModelSource(model_file.sha256, card.input_shapes if card else None)
    if isinstance(device, DeviceProfile):
        profile, device_request = device, "auto"
    else:
        profile, device_request = current_device(), device
    plan = make_plan(model_file, profile, device=device_request, backend=backend, precision=precision, options=options)
    entry = registered()[plan.backend]
    if entry.opener is None:  # the planner only picks available backends; a probe that lies ends here
        raise BackendUnavailableError(f"backend {plan.backend} cannot open models in this edgerun release")
    own_conversion = entry.capabilities.precision_from_fp32(plan)
    if own_conversion is not None:
        plan = replace(plan, reasons=(*plan.reasons, f"model: {own_conversion}; not checked by the precision guard"))
    elif plan.precision != model_file.precision:
        model_file, plan = _converted(model_file, plan, entry, card, calibration, quantization, conversion, roles)
    opened = entry.opener(model_file, plan, source)
    session = Session(model_file, plan, opened, card, capabilities=entry.capabilities, reopen=reopen, roles=roles)
    if batching is None or batching is False:
        return session
    from edgerun.runtime.batching import batched_session

    try:  # True: instances and max batch from the device and the model's measured per-row cost
        return batched_session(session, batching, session_factory=reopen, profile=profile)
    except BaseException:
        session.close()
        raise


def model_roles(model_file: ModelFile, card: ModelCard | None, given: Mapping[str, Any] | None) -> ModelRoles:
    """The graph's input roles, then the card's declarations, then the caller's (``inputs=``), each overriding."""
    roles = model_file.roles
    if card is not None and card.inputs:
        roles = roles.overridden(card.inputs, "card", f"{card.name}'s card", model_file.outputs)
    if given:
        roles = roles.overridden(given, "given", f"load({model_file.path.name!r}, inputs=...)", model_file.outputs)
    return roles


def auto_quantization(model_file: ModelFile, plan: Plan, entry: BackendEntry) -> QuantizeOptions:
    """The quantization ``load`` uses when none is given: the backend's Q/DQ layout, in the mode that pays there.

    `edgerun info` uses it too, to look up the same cached version.
    """
    from edgerun.precision.quantize import QuantizeOptions, auto_mode

    target = entry.capabilities.qdq_layout(plan.device)
    mode, why = auto_mode(model_file, target) if plan.precision == "int8" else ("static", "")
    return QuantizeOptions(target=target, mode=mode, why=why if mode == "dynamic" else "")


def _converted(
    model_file: ModelFile,
    plan: Plan,
    entry: BackendEntry,
    card: ModelCard | None,
    calibration: Any,
    quantization: Any,
    conversion: dict[str, Any],
    roles: ModelRoles | None = None,
) -> tuple[ModelFile, Plan]:
    """The plan's precision as a cached, checked artifact (Q/DQ laid out for the chosen backend), and the plan
    naming it; when no version meets the quality budget or the conversion cannot be made (`ConversionError`:
    an invalid quantized graph, say), the stored model and a plan saying why (logged once). ``roles`` shape
    the random check inputs when there is no check data."""
    from edgerun.errors import ConversionError
    from edgerun.precision.artifacts import precision_artifact
    from edgerun.precision.guard import QualityCheckError
    from edgerun.runtime.modelfile import ModelFile

    if quantization is None:  # shape the Q/DQ model for what will run it, in the mode that pays there
        quantization = auto_quantization(model_file, plan, entry)
    try:
        artifact = precision_artifact(
            model_file,
            plan.precision,
            card=card,
            calibration=calibration,
            quantization=quantization,
            roles=roles,
            **conversion,
        )
    except QualityCheckError as exc:
        message = f"{plan.precision} failed its quality check against fp32, running {model_file.precision}: {exc}"
        log_once(_log, logging.WARNING, message)
        fallen = replace(plan, precision=model_file.precision, fallbacks=(*plan.fallbacks, message), quality=exc.report)
        return model_file, fallen
    except ConversionError as exc:
        stored = model_file.precision
        message = f"{plan.precision} could not be made from {stored}, running {stored}: {exc}"
        log_once(_log, logging.WARNING, message)
        return model_file, replace(plan, precision=model_file.precision, fallbacks=(*plan.fallbacks, message))
    converted = ModelFile.open(artifact.path)
    return converted, replace(
        plan,
        artifact=str(artifact.path),
        reasons=(*plan.reasons, f"model: {artifact.detail}"),
        quality=artifact.check,
    )
