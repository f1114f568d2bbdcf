"""`Session`: one loaded model on one backend, and `load()`, which makes it.

``load`` is the whole pipeline an embedded app calls: resolve the model (a path or a bundled
name), validate and describe it (`ModelFile`), detect the device, plan (`make_plan`) and
open the chosen backend. The session validates feeds and delegates to the backend.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import BackendUnavailableError, SessionClosedError
from .feeds import FeedValidator

if TYPE_CHECKING:
    from .backends.base import Backend
    from .device import DeviceProfile
    from .model import ModelFile
    from .models import ModelCard
    from .plan import Plan
    from .specs import TensorSpec


class Session:
    """A model ready to run: ``session.run(feeds)`` or ``session(feeds)``.

    ``run`` may be called from several threads at once, and the arrays it returns are new
    on every call: a later call never overwrites them.
    """

    def __init__(self, model: ModelFile, plan: Plan, backend: Backend, card: ModelCard | None = None) -> None:
        self.model = model
        self.plan = plan
        self.card = card
        self._backend: Backend | None = backend
        self._backend_run = backend.run
        self._run_single = backend.run_single
        self._load_args: tuple[Any, dict[str, Any]] | None = None
        """How `load` made this session, so `reopen` can make another (batcher instances)."""
        self.label = card.name if card else model.path.name
        """How messages name this model: the bundled name, else the file name."""
        self._validate = FeedValidator(model.inputs, self.label)

    def _backend_for_batching(self) -> Backend:
        if self._backend is None:
            raise SessionClosedError(f"session for {self.label} is closed")
        return self._backend

    def reopen(self) -> Session:
        """A second, independent session of the same model and settings (a worker's own session)."""
        if self._load_args is None:
            raise SessionClosedError(f"session for {self.label} was not made by edgerun.load and cannot be reopened")
        model, kwargs = self._load_args
        return load(model, **kwargs)

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.model.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.model.outputs

    @property
    def backend(self) -> str:
        """Name of the backend running the model, e.g. ``onnxruntime``."""
        return self.plan.backend

    @property
    def closed(self) -> bool:
        return self._backend is None

    def run(self, feeds: np.ndarray | Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run the model on ``feeds`` (a dict name -> array, or one array for a one-input model)."""
        if type(feeds) is np.ndarray:
            # A camera loop's call: one array shaped like the last accepted one goes straight to
            # the backend (about 1 us less per call than the general path, measured).
            accepted = self._validate.accepted_array
            if (
                accepted is not None
                and feeds.shape == accepted[0]
                and feeds.dtype == accepted[1]
                and feeds.flags.c_contiguous
            ):
                return self._run_single(feeds)
        return self._backend_run(self._validate(feeds))

    __call__ = run

    def close(self) -> None:
        """Release the backend; further calls raise `SessionClosedError`. Idempotent."""
        backend, self._backend = self._backend, None
        self._backend_run = self._closed_run
        self._validate.forget()
        if backend is not None:
            backend.close()

    def _closed_run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise SessionClosedError(f"session for {self.label} is closed")

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.plan.backend} on {self.plan.device}"
        return f"<edgerun.Session {self.label} ({state})>"


@cache
def _live_profile() -> DeviceProfile:
    from .device import DeviceProfile

    return DeviceProfile.detect()


def current_device() -> DeviceProfile:
    """The profile of the device this process runs on (detected once, then cached)."""
    return _live_profile()


def load(
    model: str | os.PathLike[str],
    *,
    device: str | DeviceProfile = "auto",
    backend: str = "auto",
    precision: str = "auto",
    **options: Any,
) -> Session:
    """Load an ONNX model (a path or a bundled model name) on the best backend for this device.

    ``device`` is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, or a `DeviceProfile` to plan for
    (tests, or overriding detection). ``backend`` is ``auto`` or a registered backend name.
    ``precision`` is ``auto`` (the model's stored precision) or ``fp32``/``fp16``/``bf16``/``int8``.
    ``options`` are backend options such as ``threads``; unknown ones are rejected.
    A precision other than the stored one runs a converted model (`edgerun.artifacts`), built
    once and cached: ``calibration=`` gives INT8 its calibration data (bundled models carry
    theirs) and ``quantization=`` a `QuantizeOptions`. ``batching=`` (True, a max batch size, or
    `DynamicBatcher` options) returns a session whose calls are merged into batches.
    """
    from dataclasses import replace

    from . import models
    from .backends.base import registered
    from .device import DeviceProfile
    from .model import ModelFile
    from .plan import make_plan

    batching = options.pop("batching", None)
    load_args = (model, {"device": device, "backend": backend, "precision": precision, **options})
    calibration = options.pop("calibration", None)
    quantization = options.pop("quantization", None)
    path, card = models.resolve(model)
    model_file = ModelFile.open(Path(path))
    source_sha256 = model_file.sha256
    if isinstance(device, DeviceProfile):
        profile, device_request = device, "auto"
    else:
        profile, device_request = current_device(), device
    plan = make_plan(model_file, profile, device=device_request, backend=backend, precision=precision, options=options)
    opener = registered()[plan.backend].opener
    if opener is None:  # the planner only picks available backends; a probe that lies ends here
        raise BackendUnavailableError(f"backend {plan.backend} cannot open models in this edgerun release")
    if plan.precision != model_file.precision:
        from .artifacts import precision_artifact
        from .quantize import QuantizeOptions

        if quantization is None:  # shape the Q/DQ model for what will run it
            on_cpu = plan.backend == "onnxruntime" and plan.device == "cpu"
            quantization = QuantizeOptions(target="cpu" if on_cpu else "tensorrt")

        artifact = precision_artifact(
            model_file, plan.precision, card=card, calibration=calibration, quantization=quantization
        )
        model_file = ModelFile.open(artifact.path)
        plan = replace(plan, artifact=str(artifact.path), reasons=(*plan.reasons, f"model: {artifact.detail}"))
    if plan.backend == "tensorrt":  # what the engine cache groups by, and shapes for free dimensions
        internal = {"_source_sha256": source_sha256, "_typical_shapes": card.input_shapes if card else None}
        plan = replace(plan, options={**plan.options, **internal})
    session = Session(model_file, plan, opener(model_file, plan), card)
    session._load_args = load_args
    if batching is None or batching is False:
        return session
    from .batching import BatchedSession, DynamicBatcher, batching_options

    try:
        batched = BatchedSession(session, DynamicBatcher(session, **batching_options(batching)))
    except BaseException:
        session.close()
        raise
    batched._load_args = (load_args[0], {**load_args[1], "batching": batching})
    return batched
