"""What `edgerun bench` feeds the model: seeded random tensors, or real samples from a folder.

Data-dependent models (detectors with post-processing, early-exit networks) must be timed on
real inputs to be measured honestly; ``include_preprocess`` puts image decoding and
preprocessing inside the timed query, as a camera app pays for them. Random inputs follow the
model's input roles (`edgerun.roles`): ids over the vocabulary, valid masks, constants at their
value, each batch on its input's own axis; ``--shape SYMBOL=N`` sizes every input sharing it.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgerun.data.preprocess import PreprocessSpec, is_image_path
from edgerun.data.samples import image_files, load_samples, take
from edgerun.errors import CalibrationError, ConfigError, InputError
from edgerun.roles import ModelRoles
from edgerun.runtime.synthetic import on_batch_axes, random_feeds
from edgerun.specs import TensorSpec, shape_symbols

if TYPE_CHECKING:
    from edgerun.bench.config import BenchConfig
    from edgerun.runtime.session import Session

DATA_SAMPLES = 512
"""Samples read from a --data source into memory (cycled through by the queries)."""


@dataclass(frozen=True)
class InputSource:
    """Feeds for query i; ``timed`` means building them is part of the query."""

    description: str
    feeds: Callable[[int], dict[str, np.ndarray]]
    timed: bool
    shapes: dict[str, list[int]]


STREAM_CHUNKS = 16
"""Random chunks made before a stateful model's run and cycled through its steps (made untimed)."""


def random_source(
    specs: Sequence[TensorSpec],
    rows: int | None,
    shapes: Mapping[str, Sequence[int]] | None,
    seed: int,
    roles: ModelRoles | None = None,
    *,
    pool: int = 1,
) -> InputSource:
    """Seeded random feeds shaped and valued by the specs and ``roles``: the same feeds for every
    query (so runs compare across devices), or ``pool`` of them cycled (a stream's chunks)."""
    made = [random_feeds(specs, rows, shapes, seed + k, roles=roles) for k in range(max(1, pool))]
    first = made[0]
    if len(made) == 1:
        return InputSource(f"random (seed {seed})", lambda _: first, False, _shapes(first))
    return InputSource(
        f"random (seeds {seed}..{seed + len(made) - 1}, {len(made)} chunks cycled)",
        lambda i: made[i % len(made)],
        False,
        _shapes(first),
    )


def _shapes(feeds: Mapping[str, np.ndarray]) -> dict[str, list[int]]:
    return {name: list(a.shape) for name, a in feeds.items()}


def bench_shapes(
    session: Session, shapes: Mapping[str, Sequence[int]] | None, rows: int
) -> dict[str, list[int]] | None:
    """The shapes bench feeds: the card's, then ``--shape`` (inputs by name, symbols by one size), batch
    placed on each input's axis.

    Raises ConfigError for a name that is neither an input nor a symbol (with the nearest names), a
    symbol given several sizes, or the batch symbol (the batch comes from ``--batch``).
    """
    specs, roles = session.inputs, session.roles
    given = dict(shapes or {})
    check_shape_names(given, specs, roles)
    names = {spec.name for spec in specs}
    merged: dict[str, list[int]] = {}
    if session.card is not None:
        card = {k: v for k, v in session.card.input_shapes.items() if k in names}
        merged.update(on_batch_axes(card, rows, roles.batch_axes))
    by_name = {k: v for k, v in given.items() if k in names}
    merged.update(on_batch_axes(by_name, rows, roles.batch_axes))
    merged.update({k: list(v) for k, v in given.items() if k not in names})
    return merged or None


def check_shape_names(shapes: Mapping[str, Sequence[int]], specs: Sequence[TensorSpec], roles: ModelRoles) -> None:
    """Every ``--shape`` name is an input or a dimension symbol; a symbol gets one size and is not the batch."""
    names = [spec.name for spec in specs]
    symbols = sorted(shape_symbols(specs))
    batch_only = _batch_symbols(specs, roles)
    for key, dims in shapes.items():
        if key in names:
            continue
        if key not in symbols:
            close = difflib.get_close_matches(key, [*names, *symbols], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(
                f"--shape {key}: no input or dimension symbol named '{key}'{hint}; inputs: {', '.join(names)}; "
                f"symbols: {', '.join(symbols) or 'none'}"
            )
        if len(dims) != 1:
            raise ConfigError(
                f"--shape {key}: '{key}' is a dimension symbol and takes one size (e.g. --shape {key}=128), "
                f"got {'x'.join(map(str, dims))}"
            )
        if key in batch_only:
            raise ConfigError(f"--shape {key}: '{key}' is the batch; set it with --batch {dims[0]}")


def _batch_symbols(specs: Sequence[TensorSpec], roles: ModelRoles) -> set[str]:
    """Symbols found only on batch axes (what ``--batch`` sets)."""
    on_batch: set[str] = set()
    elsewhere: set[str] = set()
    for spec in specs:
        axis = roles.batch_axes.get(spec.name, 0)
        for i, dim in enumerate(spec.shape):
            if isinstance(dim, str):
                (on_batch if i == axis else elsewhere).add(dim)
    return on_batch - elsewhere


def input_source(session: Session, config: BenchConfig, rows: int, *, pool: int = 1) -> InputSource:
    """What a bench run of ``config`` feeds ``session`` at ``rows`` per call: random (role-aware) or ``--data``."""
    if config.data is None:
        shapes = bench_shapes(session, config.shapes, rows)
        return random_source(session.inputs, rows, shapes, config.seed, session.roles, pool=pool)
    spec = config.preprocess
    if spec is None and session.card is not None and session.card.preprocessing:
        spec = PreprocessSpec.from_dict(session.card.preprocessing)
    return data_source(
        Path(config.data),
        session.inputs,
        rows,
        spec,
        include_preprocess=config.include_preprocess,
        seed=config.seed,
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
