"""What `edgerun bench` feeds the model: seeded random tensors, or real samples from a folder.

Data-dependent models (detectors with post-processing, early-exit networks) must be timed on
real inputs to be measured honestly; ``include_preprocess`` puts image decoding and
preprocessing inside the timed query, as a camera app pays for them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgerun.data.preprocess import PreprocessSpec, is_image_path
from edgerun.data.samples import image_files, load_samples, take
from edgerun.data.synthetic import random_feeds
from edgerun.errors import CalibrationError, ConfigError, InputError
from edgerun.specs import TensorSpec

DATA_SAMPLES = 512
"""Samples read from a --data source into memory (cycled through by the queries)."""


@dataclass(frozen=True)
class InputSource:
    """Feeds for query i; ``timed`` means building them is part of the query."""

    description: str
    feeds: Callable[[int], dict[str, np.ndarray]]
    timed: bool
    shapes: dict[str, list[int]]


def random_source(
    specs: Sequence[TensorSpec], rows: int | None, shapes: Mapping[str, Sequence[int]] | None, seed: int
) -> InputSource:
    """The same seeded random feeds for every query (so runs compare across devices)."""
    feeds = random_feeds(specs, rows, shapes, seed)
    return InputSource(
        description=f"random (seed {seed})",
        feeds=lambda _: feeds,
        timed=False,
        shapes={name: list(a.shape) for name, a in feeds.items()},
    )


def data_source(
    path: str | os.PathLike[str],
    specs: Sequence[TensorSpec],
    rows: int,
    preprocess: PreprocessSpec | None,
    *,
    include_preprocess: bool = False,
    seed: int = 0,
) -> InputSource:
    """Queries of ``rows`` consecutive samples from ``path`` (cycled), checked against the model."""
    source = Path(path)
    if not source.exists():
        raise InputError(f"bench --data {source}: not found")
    images = source.is_dir() or is_image_path(source)
    if include_preprocess and not images:
        raise ConfigError(f"--include-preprocess needs images (a folder or an image file); {source} holds arrays")
    if images:
        if preprocess is None:
            raise ConfigError(
                f"bench --data {source}: images need a preprocessing spec (the model has no card: pass --preprocess)"
            )
        _check_fits(preprocess, specs, source)
    if include_preprocess and preprocess is not None:
        return _image_source(source, specs, rows, preprocess)
    try:
        samples = load_samples(source, specs, preprocess=preprocess, samples=DATA_SAMPLES, seed=seed)
    except CalibrationError as exc:
        raise InputError(f"bench --data: {exc}") from exc
    axes = samples.batch_axes
    for spec in specs:
        array = samples.inputs.get(spec.name)
        if array is None:
            raise InputError(f"bench --data {source}: no data for input '{spec.name}'", tensor=spec.name)
        axis = axes.get(spec.name, 0)
        if axis is None:  # a constant (a sample rate): load_samples checked it, and it is never batched
            continue
        sample_shape = array.shape[:axis] + array.shape[axis + 1 :]
        # the same test as for batch-first inputs, with this input's batch axis moved to the front
        wanted = TensorSpec(spec.name, (spec.shape[axis], *spec.shape[:axis], *spec.shape[axis + 1 :]), spec.dtype)
        if not wanted.takes_samples(sample_shape, array.dtype):
            raise InputError(
                f"bench --data {source}: samples of '{spec.name}' are {array.dtype} {list(sample_shape)} "
                f"(samples along axis {axis}), the model expects {spec.describe()}",
                tensor=spec.name,
                expected=spec.describe(),
                got=f"{array.dtype} {list(array.shape)}",
            )
    count = samples.count
    arrays = samples.inputs

    def feeds(query: int) -> dict[str, np.ndarray]:
        start = query * rows % count
        if start + rows <= count:  # the usual query: a view, nothing copied in the timed loop
            return take(arrays, axes, slice(start, start + rows))
        return take(arrays, axes, (np.arange(rows) + start) % count)  # wraps past the last sample

    first = feeds(0)
    return InputSource(
        description=f"{source} ({count} samples)",
        feeds=feeds,
        timed=False,
        shapes={name: list(a.shape) for name, a in first.items()},
    )


def _image_source(source: Path, specs: Sequence[TensorSpec], rows: int, spec: PreprocessSpec) -> InputSource:
    try:
        files = image_files(source)
    except CalibrationError as exc:
        raise InputError(f"bench --data: {exc}") from exc
    name = specs[0].name
    spec.load(files[0])  # an unreadable first image fails here, not mid-run

    def feeds(query: int) -> dict[str, np.ndarray]:
        return {name: spec.load_batch(files[(query * rows + j) % len(files)] for j in range(rows))}

    return InputSource(
        description=f"{source} ({len(files)} images, decoded and preprocessed in each query)",
        feeds=feeds,
        timed=True,
        shapes={name: [rows, *spec.sample_shape]},
    )


def _check_fits(spec: PreprocessSpec, specs: Sequence[TensorSpec], source: Path) -> None:
    try:
        spec.check_fits(specs)
    except ConfigError as exc:
        raise InputError(f"bench --data {source}: {exc}") from exc
