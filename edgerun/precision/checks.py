"""The samples a converted model is checked on, and where they came from.

In order of preference: data the caller gives (``--data``, ``load(..., calibration=...)`` for
FP16), the model card's held-out check set for bundled models, a share of the calibration
data held apart from INT8 calibration, and only as a last resort seeded random inputs, with a
visible note that random inputs prove little about real data.

Stateful models (`ModelRoles.stateful`) may also be checked on streams, because single steps from
a real state never show errors that compound through the recurrent state. Layout, in an ``.npz``
(the check data itself, or the file a card's ``check`` entry names under ``"streams"``):

- ``stream_<input>`` for every data input: [steps, *the input's shape], the streams along the
  input's own batch axis (silero-vad: ``stream_input`` [steps, streams, 576]); step t of every
  stream runs in one call;
- ``stream_<state>`` (optional) per state input: the initial state, streams along its batch axis
  (default zeros: each stream starts fresh);
- constants come from the roles, else from ``stream_<constant>``, else from the single-step samples.

`run_streams` runs a model over them, each model carrying its OWN state from step to step, and
returns the data outputs of all steps stacked along the batch axis (steps x streams samples).
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
    import onnxruntime

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


STREAM_PREFIX = "stream_"
"""Prefix of the arrays that hold check streams of a stateful model (see the module doc)."""


@dataclass(frozen=True)
class StreamSamples:
    """Check streams of a stateful model: per-step data inputs, initial states, constants, and the roles' pairs."""

    steps: dict[str, np.ndarray]
    """Data input -> [steps, *input shape], the streams along the input's batch axis."""
    initial: dict[str, np.ndarray]
    """State input -> initial state (streams along its batch axis); zeros for a state not named."""
    constants: dict[str, np.ndarray]
    state_pairs: dict[str, str]
    """State input -> the output holding its next value."""
    batch_axes: dict[str, int | None]
    output_axes: dict[str, int | None]
    source: str

    @property
    def length(self) -> int:
        """Steps per stream."""
        return int(next(iter(self.steps.values())).shape[0])

    @property
    def count(self) -> int:
        """Streams (batched along each input's batch axis)."""
        name, array = next(iter(self.steps.items()))
        return int(array.shape[1 + (self.batch_axes.get(name) or 0)])

    def describe(self) -> str:
        return f"{self.count} streams x {self.length} steps of {self.source}"

    def fingerprint(self) -> str:
        """Identity of the streams (part of cache keys)."""
        from edgerun.storage import digest

        arrays = {**self.steps, **{f"initial:{k}": v for k, v in self.initial.items()}, **self.constants}
        return digest(*[(name, a.dtype.str, a.shape, a.tobytes()) for name, a in sorted(arrays.items())])


@dataclass(frozen=True)
class CheckSamples:
    """Inputs by name (batch axis first) and a description of their origin."""

    inputs: dict[str, np.ndarray]
    source: str
    random: bool = False
    batch_axes: dict[str, int | None] = field(default_factory=dict)
    """Each input's batch axis (None: a constant such as a sample rate); missing: axis 0."""
    streams: StreamSamples | None = None
    """Streams a stateful model is also checked on (each model carrying its own state); None: single steps only."""

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

    def with_streams(self, streams: StreamSamples | None) -> CheckSamples:
        """These samples with ``streams`` attached."""
        return CheckSamples(self.inputs, self.source, self.random, self.batch_axes, streams)

    def check_fits(self, specs: Sequence[TensorSpec], label: str) -> None:
        """Samples for every input in ``specs``, of their dtypes and fixed sizes; `CalibrationError` if not."""
        from edgerun.precision.calibration import CalibrationData

        data = CalibrationData(self.inputs, source=f"check samples ({self.source})", batch_axes=self.batch_axes or None)
        data.check_fits(specs, Path(label).name)

    def fingerprint(self) -> str:
        """Identity of the samples (part of cache keys: other check data, other verdict)."""
        from edgerun.storage import digest

        parts = [(name, array.dtype.str, array.shape, array.tobytes()) for name, array in self.inputs.items()]
        return digest(*parts, *([("streams", self.streams.fingerprint())] if self.streams is not None else []))


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
    roles = roles or model.roles
    if data is not None:
        found = _from_data(model, card, data, samples, seed)
        if found.streams is None and isinstance(data, (str, os.PathLike)):
            found = found.with_streams(read_streams(data, model, roles, found, required=False))
        return found
    if card is not None and card.check:
        source = (card.folder / card.check["source"]).resolve()
        found = _from_data(model, card, source, samples or card.check.get("samples"), seed)
        found = CheckSamples(found.inputs, f"{card.name}'s check set ({card.check['source']})", False, found.batch_axes)
        named = card.check.get("streams")
        where = (card.folder / named).resolve() if named else source
        return found.with_streams(read_streams(where, model, roles, found, required=bool(named)))
    return random_samples(model, card, seed=seed, roles=roles)


def read_streams(
    source: str | os.PathLike[str],
    model: ModelFile,
    roles: ModelRoles,
    single: CheckSamples | None = None,
    *,
    required: bool = True,
) -> StreamSamples | None:
    """The ``stream_*`` arrays of the ``.npz`` at ``source`` (module doc), checked against ``model``'s inputs.

    None when the file has none and they are not ``required``; a stateless model with streams, a missing
    data input, or steps and streams that disagree raise `CalibrationError`.
    """
    path = Path(source)
    if path.suffix != ".npz" or not path.is_file():
        if required:
            raise CalibrationError(f"{path}: check streams must be an .npz with {STREAM_PREFIX}<input> arrays")
        return None
    try:
        with np.load(path, allow_pickle=False) as loaded:
            arrays = {k[len(STREAM_PREFIX) :]: loaded[k] for k in loaded.files if k.startswith(STREAM_PREFIX)}
    except (ValueError, OSError, EOFError) as exc:
        raise CalibrationError(f"{path}: not a readable .npz file ({exc})") from exc
    if not arrays:
        if required:
            raise CalibrationError(f"{path}: no {STREAM_PREFIX}<input> arrays (check streams) in it")
        return None
    return stream_samples(arrays, model, roles, str(path), single)


def stream_samples(
    arrays: Mapping[str, np.ndarray],
    model: ModelFile,
    roles: ModelRoles,
    source: str,
    single: CheckSamples | None = None,
) -> StreamSamples:
    """`StreamSamples` from arrays named by input (without the ``stream_`` prefix), laid out as the module doc says."""
    if not roles.stateful:
        raise CalibrationError(f"{source}: check streams given, but {model.path.name} has no state input paired "
                               "with an output (declare it: inputs={'NAME': 'state,output=NEXT'})")  # fmt: skip
    axes, pairs = roles.batch_axes, roles.state_pairs
    specs = {spec.name: spec for spec in model.inputs}
    unknown = sorted(set(arrays) - set(specs))
    if unknown:
        raise CalibrationError(f"{source}: {STREAM_PREFIX}{unknown[0]} names no input of {model.path.name}; "
                               f"inputs: {', '.join(specs)}")  # fmt: skip
    constants: dict[str, np.ndarray] = {}
    steps: dict[str, np.ndarray] = {}
    for name, spec in specs.items():
        if name in pairs:
            continue
        value = roles.constant_value(spec) if axes.get(name) is None else None
        if axes.get(name) is None:
            given = arrays.get(name)
            if value is None and given is None and single is not None and name in single.inputs:
                given = single.inputs[name]
            if value is None and given is None:
                raise CalibrationError(f"{source}: no value for constant input '{name}' of the check streams")
            constants[name] = value if value is not None else np.asarray(given, dtype=spec.dtype)
            continue
        if name not in arrays:
            raise CalibrationError(f"{source}: no {STREAM_PREFIX}{name} [steps, {', '.join(map(str, spec.shape))}] "
                                   f"for data input '{name}'", tensor=name)  # fmt: skip
        array = np.asarray(arrays[name])
        if array.ndim != spec.rank + 1 or array.dtype != spec.dtype:
            raise CalibrationError(
                f"{source}: {STREAM_PREFIX}{name} has shape {list(array.shape)} ({array.dtype}); it needs "
                f"[steps, {', '.join(map(str, spec.shape))}] of {spec.dtype}",
                tensor=name,
            )
        steps[name] = array
    if not steps:
        raise CalibrationError(f"{source}: check streams need at least one data input")
    initial = {name: np.asarray(arrays[name], dtype=specs[name].dtype) for name in pairs if name in arrays}
    lengths = {a.shape[0] for a in steps.values()}
    counts = {a.shape[1 + (axes.get(n) or 0)] for n, a in steps.items()}
    counts |= {a.shape[axes.get(n) or 0] for n, a in initial.items()}
    if len(lengths) != 1 or len(counts) != 1 or 0 in lengths:
        shapes = ", ".join(f"{n} {list(a.shape)}" for n, a in {**steps, **initial}.items())
        raise CalibrationError(f"{source}: check streams disagree in steps or streams: {shapes}")
    for name in pairs:  # each stream starts fresh unless its initial state is given
        if name not in initial:
            spec, axis = specs[name], axes.get(name)
            dims = [next(iter(counts)) if i == axis else d for i, d in enumerate(spec.shape)]
            if not all(isinstance(d, int) for d in dims):
                raise CalibrationError(f"{source}: state input '{name}' has free dimensions {list(spec.shape)}: give "
                                       f"its initial state as {STREAM_PREFIX}{name}", tensor=name)  # fmt: skip
            initial[name] = np.zeros([int(d) for d in dims], spec.dtype)
    return StreamSamples(steps, initial, constants, dict(pairs), dict(axes), dict(roles.output_axes), source)


def run_streams(session: onnxruntime.InferenceSession, streams: StreamSamples, label: str) -> dict[str, np.ndarray]:
    """Every data output (not the state outputs) of ``session`` over ``streams``: all streams batched in one
    run per step, each step's state the model's own previous next-state; steps x streams samples, batch axis first.

    A model with a fixed batch runs the streams one at a time. Errors raise `ConversionError`.
    """
    from edgerun.errors import ConversionError

    axes, pairs = streams.batch_axes, streams.state_pairs
    specs = {i.name: i for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]
    count = streams.count
    missing = [output for output in pairs.values() if output not in names]
    if missing:
        raise ConversionError(f"{label}: no state output {', '.join(missing)} to carry the check streams' state")
    fixed = any(isinstance(specs[n].shape[a], int) for n, a in axes.items()
                if a is not None and n in specs and a < len(specs[n].shape))  # fmt: skip
    state = dict(streams.initial)
    collected: dict[str, list[np.ndarray]] = {}
    for t in range(streams.length):
        feeds = {**streams.constants, **state, **{name: array[t] for name, array in streams.steps.items()}}
        try:
            if fixed and count > 1:
                parts = [_run_one(session, names, _take_stream(feeds, axes, s)) for s in range(count)]
                outputs = {n: np.concatenate([p[n] for p in parts], axis=_out_axis(streams, n)) for n in names}
            else:
                outputs = _run_one(session, names, feeds)
        except Exception as exc:
            raise ConversionError(f"{label}: running the check streams failed at step {t}: {exc}") from exc
        for name, output in pairs.items():
            state[name] = outputs[output]
        for name in names:
            if name not in pairs.values():
                collected.setdefault(name, []).append(np.moveaxis(outputs[name], _out_axis(streams, name), 0))
    return {name: np.concatenate(values) for name, values in collected.items()}


def _run_one(session: onnxruntime.InferenceSession, names: list[str], feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    return {n: np.asarray(v) for n, v in zip(names, session.run(names, feeds), strict=True)}


def _take_stream(feeds: Mapping[str, np.ndarray], axes: Mapping[str, int | None], index: int) -> dict[str, np.ndarray]:
    """Stream ``index`` of a step's feeds (batch 1 along each input's batch axis)."""
    from edgerun.data.samples import take

    return take(feeds, axes, slice(index, index + 1))


def _out_axis(streams: StreamSamples, name: str) -> int:
    """Batch axis of output ``name`` (0 when the roles do not say)."""
    axis = streams.output_axes.get(name, 0)
    return 0 if axis is None else axis


def random_samples(
    model: ModelFile, card: ModelCard | None, *, seed: int = 0, roles: ModelRoles | None = None
) -> CheckSamples:
    """Seeded random inputs at the card's shapes (or the model's), per ``roles`` (default the model's), noted once."""
    from edgerun.runtime.synthetic import on_batch_axes, random_feeds

    roles = roles or model.roles
    axes = roles.batch_axes
    shapes = on_batch_axes(card.input_shapes, RANDOM_COUNT, axes) if card is not None else None
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
