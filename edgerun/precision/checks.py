"""The samples a converted model is checked on, and where they came from.

In order of preference: data the caller gives (``--data``, ``load(..., calibration=...)`` for
FP16), the model card's held-out check set for bundled models, a share of the calibration
data held apart from INT8 calibration, and only as a last resort seeded random inputs, with a
visible note that random inputs prove little about real data.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgerun.errors import CalibrationError
from edgerun.logs import log_once
from edgerun.specs import TensorSpec, shape_symbols

if TYPE_CHECKING:
    from edgerun.models import ModelCard
    from edgerun.precision.calibration import CalibrationData
    from edgerun.roles import ModelRoles
    from edgerun.runtime.modelfile import ModelFile

_log = logging.getLogger("edgerun")

RANDOM_COUNT = 8
"""Seeded random samples when there is no data at all."""
RANDOM_SYMBOL_SIZE = 32
"""Size of a free non-batch symbol (a sequence length) in random check inputs when nothing names it."""
HELD_OUT_SHARE = 4
"""One calibration sample in this many is held apart for the check when nothing else exists."""
RANDOM_NOTE = (
    "checked on seeded random inputs, which prove little about real data: give check data "
    "(load(..., calibration=...), --data or --calib)"
)


@dataclass(frozen=True)
class CheckSamples:
    """Inputs by name (batch axis first) and a description of their origin."""

    inputs: dict[str, np.ndarray]
    source: str
    random: bool = False
    batch_axes: dict[str, int | None] = field(default_factory=dict)
    """Each input's batch axis (None: a constant such as a sample rate); missing: axis 0."""

    @property
    def count(self) -> int:
        from edgerun.data.samples import sample_count

        return sample_count(self.inputs, self.batch_axes, self.source)

    @property
    def note(self) -> str | None:
        """What a reader of the check's figures must know about the samples (random inputs), or None."""
        return RANDOM_NOTE if self.random else None

    def describe(self) -> str:
        if self.random:
            return f"{self.count} seeded random samples ({self.source})"
        return f"{self.count} samples of {self.source}"

    def check_fits(self, specs: Sequence[TensorSpec], label: str) -> None:
        """Samples for every input in ``specs``, of their dtypes and fixed sizes; `CalibrationError` if not."""
        from edgerun.precision.calibration import CalibrationData

        data = CalibrationData(self.inputs, source=f"check samples ({self.source})", batch_axes=self.batch_axes or None)
        data.check_fits(specs, Path(label).name)

    def fingerprint(self) -> str:
        """Identity of the samples (part of cache keys: other check data, other verdict)."""
        from edgerun.storage import digest

        return digest(*[(name, array.dtype.str, array.shape, array.tobytes()) for name, array in self.inputs.items()])


def check_samples(
    model: ModelFile,
    card: ModelCard | None,
    data: Any = None,
    *,
    samples: int | None = None,
    seed: int = 0,
    roles: ModelRoles | None = None,
) -> CheckSamples:
    """Check samples for ``model``: ``data`` if given (path, arrays, `CalibrationData`), the card's, or random
    (shaped by ``roles``, default the model's: token ids within the vocabulary, constants at their value)."""
    if data is not None:
        return _from_data(model, card, data, samples, seed)
    if card is not None and card.check:
        source = (card.folder / card.check["source"]).resolve()
        found = _from_data(model, card, source, samples or card.check.get("samples"), seed)
        return CheckSamples(found.inputs, f"{card.name}'s check set ({card.check['source']})", False, found.batch_axes)
    return random_samples(model, card, seed=seed, roles=roles)


def random_samples(
    model: ModelFile, card: ModelCard | None, *, seed: int = 0, roles: ModelRoles | None = None
) -> CheckSamples:
    """Seeded random inputs at the card's shapes (or the model's), per ``roles`` (default the model's), noted once."""
    from edgerun.runtime.synthetic import random_feeds

    roles = roles or model.roles
    axes = roles.batch_axes
    shapes: dict[str, list[int]] | None = None
    if card is not None:
        shapes = {}
        for name, dims in card.input_shapes.items():
            sized = [int(d) for d in dims]
            axis = axes.get(name, 0 if sized else None)
            if axis is not None and axis < len(sized):
                sized[axis] = RANDOM_COUNT
            shapes[name] = sized
    covered = shapes is not None and all(spec.name in shapes for spec in model.inputs)
    free = [] if covered else _free_symbols(model, axes)
    if free:  # a sequence length nobody named: the check runs at a middling one and says so
        shapes = {**(shapes or {}), **{symbol: [RANDOM_SYMBOL_SIZE] for symbol in free}}
    note = "".join(f", {symbol}={RANDOM_SYMBOL_SIZE}" for symbol in free)
    try:
        feeds = random_feeds(model.inputs, RANDOM_COUNT, shapes, seed=seed, roles=roles)
    except Exception as exc:  # free dimensions nobody named: nothing to run the check on
        raise CalibrationError(
            f"{model.path}: no check data, and random inputs need concrete input shapes ({exc}); "
            "give check data: load(..., check_data=...) or --data"
        ) from exc
    log_once(_log, logging.WARNING, f"{model.path.name}: {RANDOM_NOTE}")
    return CheckSamples(feeds, f"seed {seed}{note}", random=True, batch_axes={n: axes.get(n, 0) for n in feeds})


def _free_symbols(model: ModelFile, axes: Mapping[str, int | None]) -> list[str]:
    """Named symbols of the inputs that are not on a batch axis (``sequence``), sorted."""
    batch = {spec.shape[axis] for spec in model.inputs if (axis := axes.get(spec.name)) is not None
             and axis < spec.rank}  # fmt: skip
    return sorted(shape_symbols(model.inputs) - {d for d in batch if isinstance(d, str)})


def hold_out(calibration: CalibrationData) -> tuple[CalibrationData, CheckSamples | None]:
    """Split one sample in `HELD_OUT_SHARE` off ``calibration`` for the check (None: too few to split)."""

    count = calibration.count
    if count < HELD_OUT_SHARE * 2:
        return calibration, None
    held = np.arange(count) % HELD_OUT_SHARE == HELD_OUT_SHARE - 1
    kept = calibration.subset(~held, f"{calibration.source} (without the held-out check samples)")
    check = calibration.subset(held)
    source = f"{calibration.source}, held apart from calibration"
    return kept, CheckSamples(check.samples, source, False, check.batch_axes)


def _from_data(model: ModelFile, card: ModelCard | None, data: Any, samples: int | None, seed: int) -> CheckSamples:
    from edgerun.precision.calibration import CalibrationData, open_calibration

    if isinstance(data, CheckSamples):
        return data
    if isinstance(data, CalibrationData):
        return CheckSamples(dict(data.samples), data.source, False, dict(data.batch_axes))
    if isinstance(data, (str, os.PathLike)):
        from edgerun.data.files import parse_preprocess
        from edgerun.data.samples import load_samples

        spec = parse_preprocess(None, card.preprocessing if card is not None else None)  # {}: not an image model
        loaded = load_samples(data, model.inputs, preprocess=spec, samples=samples, seed=seed)
        return CheckSamples(loaded.inputs, loaded.source, False, dict(loaded.batch_axes))
    opened = open_calibration(data if not isinstance(data, Mapping) else dict(data), model.inputs, samples=samples)
    return CheckSamples(dict(opened.samples), opened.source, False, dict(opened.batch_axes))
