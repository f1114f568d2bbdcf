"""Seeded random feeds shaped by a model's input specs: when no real data is given, runs stay comparable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edgerun.specs import TensorSpec


def random_feeds(
    specs: Sequence[TensorSpec],
    batch: int | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Seeded random inputs shaped by the specs (symbols from ``shapes``, axis 0 = ``batch``)."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = spec.concrete_shape(batch, shapes)
        if spec.dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.dtype.kind == "b":
            feeds[spec.name] = rng.integers(0, 2, shape).astype(bool)
        elif spec.dtype.kind in "iu":
            feeds[spec.name] = rng.integers(0, 10, shape).astype(spec.dtype)
        else:
            feeds[spec.name] = np.zeros(shape, dtype=spec.dtype)
    return feeds
