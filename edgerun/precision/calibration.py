"""Calibration data: the samples INT8 quantization measures activation ranges on.

`CalibrationData` has the shape of ONNX Runtime's ``CalibrationDataReader`` (``get_next()``
returns a feed dict or None, ``rewind()`` starts over), so it plugs straight into
``onnxruntime.quantization``. It is built from an image folder (through the model's
`PreprocessSpec`), a ``.npy`` / ``.npz`` array set, or a Python iterable; sampling is
deterministic (``samples`` and ``seed``), and ``sha256`` identifies the exact data so that
calibration results can be cached.

Samples lie along each input's own batch axis (`edgerun.data.samples.batch_axis`: axis 1 of a
recurrent ``state [2, batch, 128]``); constant inputs (a rank-0 sample rate) are given once and
served as-is with every batch. Token sequences of different lengths (a list of feed dicts, or a
dict of lists) are padded to the longest with 0, the mask's padding value, when the model has a
mask input sharing the sequence axis; otherwise they are grouped by length
(`GroupedCalibrationData`: every batch has one length); an axis the model fixes raises a
`CalibrationError` naming the input and the lengths found.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from edgerun.data.preprocess import PreprocessSpec
from edgerun.data.samples import (
    Progress,
    axis_of,
    batch_axes,
    default_batch_axis,
    fit_inputs,
    load_samples,
    only_input,
    pick,
    sample_count,
    take,
)
from edgerun.errors import CalibrationError
from edgerun.roles import ModelRoles
from edgerun.specs import TensorSpec


class CalibrationData:
    """Samples per model input, along each input's batch axis, served in batches of ``batch_size``.

    ``batch_axes`` maps an input to the axis its samples lie along, or None for a constant
    (served as-is with every batch); inputs it does not name take axis 0, scalars are constants
    (`edgerun.data.samples.default_batch_axis`). Build it from model specs with
    ``batch_axes=edgerun.data.samples.batch_axes(specs)``.
    """

    def __init__(
        self,
        samples: Mapping[str, np.ndarray],
        *,
        batch_size: int = 1,
        source: str = "<arrays>",
        batch_axes: Mapping[str, int | None] | None = None,
    ) -> None:
        if not samples:
            raise CalibrationError(f"{source}: no calibration inputs")
        given = dict(batch_axes or {})
        axes = {name: axis_of(name, np.asarray(array), given) for name, array in samples.items()}
        count = sample_count({k: np.asarray(v) for k, v in samples.items()}, axes, source)
        if count == 0:
            raise CalibrationError(f"{source}: no calibration samples")
        if batch_size < 1:
            raise CalibrationError(f"{source}: batch size must be >= 1, got {batch_size}")
        # np.asarray, not np.ascontiguousarray: that turns a rank-0 constant into shape [1].
        self.samples = {name: np.asarray(array, order="C") for name, array in samples.items()}
        self.batch_axes: dict[str, int | None] = axes
        self.batch_size = batch_size
        self.source = source
        self._count = count
        self._position = 0

    def __len__(self) -> int:
        """Number of batches."""
        return -(-self.count // self.batch_size)

    @property
    def count(self) -> int:
        """Number of samples (along each input's batch axis; 1 when every input is a constant)."""
        return self._count

    @property
    def constants(self) -> dict[str, np.ndarray]:
        """Inputs served as-is with every batch (no batch axis)."""
        return {name: self.samples[name] for name, axis in self.batch_axes.items() if axis is None}

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch, or None when all were served (ONNX Runtime's reader protocol)."""
        if self._position >= self.count:
            return None
        start, self._position = self._position, self._position + self.batch_size
        batch = take(self.samples, self.batch_axes, slice(start, self._position))
        return {name: np.asarray(array, order="C") for name, array in batch.items()}

    def subset(self, index: np.ndarray, source: str | None = None) -> CalibrationData:
        """The samples at ``index`` (indices or a boolean mask along the batch axes), constants kept."""
        chosen = np.arange(self.count)[index]
        return CalibrationData(
            take(self.samples, self.batch_axes, chosen),
            batch_size=self.batch_size,
            source=source or self.source,
            batch_axes=self.batch_axes,
        )

    def rewind(self) -> None:
        self._position = 0

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        self.rewind()
        while (batch := self.get_next()) is not None:
            yield batch
        self.rewind()

    @property
    def sha256(self) -> str:
        """Identity of the data (names, shapes, dtypes, bytes): part of calibration cache keys."""
        digest = hashlib.sha256()
        for name in sorted(self.samples):
            array = self.samples[name]
            digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
            axis = self.batch_axes[name]
            if axis != default_batch_axis(array):  # the usual layout keeps the keys of earlier versions
                digest.update(f"axis {axis}|".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()

    def check_fits(self, specs: Sequence[TensorSpec], model_name: str) -> None:
        """Every model input has samples of the right dtype and fixed dims; raise CalibrationError if not."""
        missing = [s.name for s in specs if s.name not in self.samples]
        if missing:
            raise CalibrationError(
                f"{self.source}: no calibration samples for input(s) {', '.join(missing)} of {model_name} "
                f"(the data has {', '.join(self.samples)})"
            )
        for spec in specs:
            array = self.samples[spec.name]
            axis = self.batch_axes[spec.name]
            if array.dtype != spec.dtype:
                raise CalibrationError(
                    f"{self.source}: samples for input '{spec.name}' are {array.dtype}, {model_name} expects "
                    f"{spec.dtype.name}",
                    tensor=spec.name,
                    expected=spec.dtype.name,
                    got=str(array.dtype),
                )
            layout = "a constant, given once" if axis is None else f"samples along axis {axis}"
            if array.ndim != spec.rank:
                raise CalibrationError(
                    f"{self.source}: samples for input '{spec.name}' have shape {list(array.shape)} ({layout}), "
                    f"{model_name} expects {list(spec.shape)}",
                    tensor=spec.name,
                    expected=f"{list(spec.shape)}",
                    got=f"shape {list(array.shape)}",
                )
            for dim, want in enumerate(spec.shape):
                if dim != axis and isinstance(want, int) and array.shape[dim] != want:
                    raise CalibrationError(
                        f"{self.source}: samples for input '{spec.name}' have size {array.shape[dim]} at axis "
                        f"{dim}, {model_name} expects {want} ({list(spec.shape)}, {layout}); wrong image size or "
                        "preprocessing?",
                        tensor=spec.name,
                        expected=f"{list(spec.shape)}",
                        got=f"shape {list(array.shape)}",
                    )


def open_calibration(
    source: str | os.PathLike[str] | np.ndarray | Mapping[str, Any] | Iterable[Any],
    inputs: Sequence[TensorSpec],
    *,
    preprocess: PreprocessSpec | None = None,
    samples: int | None = None,
    seed: int = 0,
    batch_size: int = 1,
    progress: Progress | None = None,
    roles: ModelRoles | None = None,
) -> CalibrationData:
    """Calibration data for a model with ``inputs`` from an image folder, array file, arrays or iterable.

    A mapping of lists (one entry per sample) is read like a list of feed dicts; ``roles`` (default: from the
    specs and input names) say which input is a mask, so that sequences of different lengths can be padded.
    """
    if isinstance(source, (str, os.PathLike)):
        loaded = load_samples(source, inputs, preprocess=preprocess, samples=samples, seed=seed, progress=progress)
        return CalibrationData(loaded.inputs, batch_size=batch_size, source=loaded.source, batch_axes=loaded.batch_axes)
    if isinstance(source, Mapping) and any(isinstance(v, (list, tuple)) for v in source.values()):
        source = _feeds_of(source)
    if isinstance(source, np.ndarray):
        groups = [{only_input(inputs, "<array>"): source}]
        label = "<array>"
    elif isinstance(source, Mapping):
        groups = [{str(k): np.asarray(v) for k, v in source.items()}]
        label = "<arrays>"
    else:
        groups, label = _from_iterable(source, inputs, roles or _name_roles(inputs))
    if not groups or not groups[0]:
        raise CalibrationError(f"{label}: no calibration arrays")
    fitted = [fit_inputs(group, inputs, label) for group in groups]
    counts = [sample_count(arrays, axes, label) for arrays, axes in fitted]
    index = pick(sum(counts), samples, seed)
    parts: list[CalibrationData] = []
    start = 0
    for (arrays, axes), count in zip(fitted, counts, strict=True):
        chosen = index[(index >= start) & (index < start + count)] - start
        start += count
        if len(chosen):
            parts.append(
                CalibrationData(take(arrays, axes, chosen), batch_size=batch_size, source=label, batch_axes=axes)
            )
    if len(parts) == 1:
        return parts[0]
    return GroupedCalibrationData(parts, source=label)


class GroupedCalibrationData(CalibrationData):
    """Calibration data in groups of one shape each (token sequences of one length): no batch mixes two groups.

    ``samples`` (and ``batch_axes``) are the largest group's, for uses that need one array per input.
    """

    def __init__(self, parts: Sequence[CalibrationData], *, source: str) -> None:
        if not parts:
            raise CalibrationError(f"{source}: no calibration samples")
        largest = max(parts, key=lambda part: part.count)
        super().__init__(largest.samples, batch_size=largest.batch_size, source=source, batch_axes=largest.batch_axes)
        self.parts = list(parts)
        self._count = sum(part.count for part in parts)
        self._part = 0

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    def get_next(self) -> dict[str, np.ndarray] | None:
        while self._part < len(self.parts):
            batch = self.parts[self._part].get_next()
            if batch is not None:
                return batch
            self._part += 1
        return None

    def rewind(self) -> None:
        self._part = 0
        for part in getattr(self, "parts", ()):
            part.rewind()

    def subset(self, index: np.ndarray, source: str | None = None) -> CalibrationData:
        chosen = np.arange(self.count)[index]
        parts, start = [], 0
        for part in self.parts:
            mine = chosen[(chosen >= start) & (chosen < start + part.count)] - start
            start += part.count
            if len(mine):
                parts.append(part.subset(mine))
        if len(parts) == 1:
            return parts[0]
        return GroupedCalibrationData(parts, source=source or self.source)

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256(b"groups|")
        for part in self.parts:
            digest.update(part.sha256.encode())
        return digest.hexdigest()

    def check_fits(self, specs: Sequence[TensorSpec], model_name: str) -> None:
        for part in self.parts:
            part.check_fits(specs, model_name)


def _name_roles(inputs: Sequence[TensorSpec]) -> ModelRoles:
    """Roles from the specs and the input names alone (an ``attention_mask`` is a mask)."""
    from onnx import GraphProto

    from edgerun.runtime.graphroles import infer_roles

    return infer_roles(GraphProto(), inputs, ())


def _feeds_of(source: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A dict of lists (one entry per sample; other values given once, constants) as a list of feed dicts."""
    lists = {k: v for k, v in source.items() if isinstance(v, (list, tuple))}
    sizes = {k: len(v) for k, v in lists.items()}
    if len(set(sizes.values())) != 1:
        found = ", ".join(f"'{k}' {n}" for k, n in sizes.items())
        raise CalibrationError(
            f"<dict of lists>: the lists have different lengths ({found}); give one entry per sample"
        )
    count = next(iter(sizes.values()))
    return [{k: (v[i] if k in lists else v) for k, v in source.items()} for i in range(count)]


def _from_iterable(
    source: Iterable[Any], inputs: Sequence[TensorSpec], roles: ModelRoles
) -> tuple[list[dict[str, np.ndarray]], str]:
    """Items are arrays (one sample, or a batch along the batch axis) or dicts of them; returns the joined
    arrays (one group, or one per sequence length) and a label saying what was done.

    Samples are joined along each input's batch axis; a constant input (no batch axis) must
    have the same value in every item and is kept once. Samples whose sizes differ along a
    symbolic axis (token sequences of different lengths) are padded with 0 to the longest when a
    mask input shares that axis, else grouped by length.
    """
    try:
        items = list(source)
    except TypeError as exc:
        raise CalibrationError(f"calibration source of type {type(source).__name__} is not iterable") from exc
    if not items:
        raise CalibrationError("calibration iterable yielded nothing")
    specs = {s.name: s for s in inputs}
    axes = batch_axes(inputs)
    feeds: list[dict[str, np.ndarray]] = []
    for item in items:
        feed = dict(item) if isinstance(item, Mapping) else {only_input(inputs, "<iterable>"): item}
        fed: dict[str, np.ndarray] = {}
        for name, value in feed.items():
            array = np.asarray(value)
            axis = axes.get(str(name), default_batch_axis(array))
            if axis is not None and str(name) in specs and array.ndim == specs[str(name)].rank - 1:
                array = np.expand_dims(array, axis)  # one sample: give it its batch axis
            fed[str(name)] = array
        feeds.append(fed)
    label = "<iterable>"
    symbols = _varying_symbols(feeds, specs, axes)
    if symbols:
        masks = [r.name for r in roles.inputs if r.role == "mask" and r.name in specs]
        sharing = [m for m in masks if all(sym in specs[m].shape for sym in symbols)]
        if sharing:
            longest = {sym: _longest(feeds, specs, sym) for sym in symbols}
            feeds = [_padded(feed, specs, longest) for feed in feeds]
            sizes = ", ".join(f"{sym} {n}" for sym, n in longest.items())
            label = f"<iterable> (padded to the longest, {sizes}, with 0; '{sharing[0]}' 0 on the padding)"
        else:
            groups: dict[tuple[int, ...], list[dict[str, np.ndarray]]] = {}
            for feed in feeds:
                groups.setdefault(_lengths(feed, specs, symbols), []).append(feed)
            label = f"<iterable> ({len(groups)} groups of one {'/'.join(symbols)} length each: no mask input to pad)"
            return [_joined(group, axes) for _, group in sorted(groups.items())], label
    return [_joined(feeds, axes)], label


def _joined(feeds: list[dict[str, np.ndarray]], axes: Mapping[str, int | None]) -> dict[str, np.ndarray]:
    names = list(dict.fromkeys(name for feed in feeds for name in feed))
    collected = {name: [feed[name] for feed in feeds if name in feed] for name in names}
    return {name: _join(name, parts, axes.get(name, default_batch_axis(parts[0]))) for name, parts in collected.items()}


def _varying_symbols(
    feeds: list[dict[str, np.ndarray]], specs: Mapping[str, TensorSpec], axes: Mapping[str, int | None]
) -> list[str]:
    """The symbolic axes (``sequence``) whose size differs between items; CalibrationError for a fixed axis."""
    symbols: list[str] = []
    for name, spec in specs.items():
        shapes = [feed[name].shape for feed in feeds if name in feed and feed[name].ndim == spec.rank]
        if len(shapes) < 2:
            continue
        for dim, want in enumerate(spec.shape):
            found = sorted({shape[dim] for shape in shapes})
            if dim == axes.get(name) or len(found) == 1:
                continue
            if not isinstance(want, str):
                raise CalibrationError(
                    f"<iterable>: samples for input '{name}' have lengths {', '.join(map(str, found[:8]))} at axis "
                    f"{dim}, where the model fixes {want} ({list(spec.shape)}); give every sample that size",
                    tensor=name,
                    expected=f"size {want} at axis {dim}",
                    got=f"sizes {', '.join(map(str, found[:8]))}",
                )
            if want not in symbols:
                symbols.append(want)
    return symbols


def _longest(feeds: list[dict[str, np.ndarray]], specs: Mapping[str, TensorSpec], symbol: str) -> int:
    return max(
        int(feed[name].shape[dim])
        for feed in feeds
        for name, spec in specs.items()
        if name in feed and feed[name].ndim == spec.rank
        for dim, want in enumerate(spec.shape)
        if want == symbol
    )


def _padded(
    feed: dict[str, np.ndarray], specs: Mapping[str, TensorSpec], longest: Mapping[str, int]
) -> dict[str, np.ndarray]:
    """``feed`` with every axis named in ``longest`` padded at its end with 0 (token id 0, mask 0)."""
    padded = dict(feed)
    for name, array in feed.items():
        spec = specs.get(name)
        if spec is None or array.ndim != spec.rank:
            continue
        widths = [(0, longest[str(want)] - array.shape[dim]) if want in longest else (0, 0)
                  for dim, want in enumerate(spec.shape)]  # fmt: skip
        if any(after for _, after in widths):
            padded[name] = np.pad(array, widths, constant_values=0)
    return padded


def _lengths(feed: dict[str, np.ndarray], specs: Mapping[str, TensorSpec], symbols: Sequence[str]) -> tuple[int, ...]:
    """The size of each of ``symbols`` in ``feed`` (the first input that has it)."""
    sizes: list[int] = []
    for symbol in symbols:
        sizes.append(next(
            (feed[n].shape[d] for n, s in specs.items() if n in feed and feed[n].ndim == s.rank
             for d, want in enumerate(s.shape) if want == symbol), 0,
        ))  # fmt: skip
    return tuple(sizes)


def _join(name: str, parts: list[np.ndarray], axis: int | None) -> np.ndarray:
    """One input's samples from every item, joined along ``axis`` (a constant: its one value)."""
    if axis is None:
        first = parts[0]
        for other in parts[1:]:
            if other.shape != first.shape or not np.array_equal(other, first):
                raise CalibrationError(
                    f"<iterable>: input '{name}' is a constant (no batch axis) but its value differs between "
                    f"samples ({_show(first)} and {_show(other)}); give it the same value in every sample",
                    tensor=name,
                    expected=f"one value, {_show(first)}",
                    got=_show(other),
                )
        return first
    ranks = {part.ndim for part in parts}
    if len(ranks) != 1 or any(axis >= r for r in ranks):
        shapes = sorted({str(list(p.shape)) for p in parts})
        raise CalibrationError(
            f"<iterable>: samples for input '{name}' have different ranks ({', '.join(shapes)}); "
            f"samples need one rank, with the batch at axis {axis}",
            tensor=name,
            expected=f"one rank, batch at axis {axis}",
            got=", ".join(shapes),
        )
    rest = {tuple(d for i, d in enumerate(p.shape) if i != axis) for p in parts}
    if len(rest) != 1:
        seen = sorted({str(list(p.shape)) for p in parts})
        raise CalibrationError(
            f"<iterable>: samples for input '{name}' have inconsistent shapes ({', '.join(seen[:4])}"
            f"{', ...' if len(seen) > 4 else ''}) besides the batch axis {axis}; calibration stacks samples "
            "into one array per input, so give them one shape: pad token sequences to one length (with the "
            "attention mask 0 on the padding) or calibrate on sequences of one length",
            tensor=name,
            expected="one shape besides the batch axis",
            got=", ".join(seen[:4]),
        )
    return np.concatenate(parts, axis=axis)


def _show(array: np.ndarray) -> str:
    return str(array.tolist()) if array.size <= 4 else f"shape {list(array.shape)}"
