"""Seeded random feeds shaped by a model's input specs: when no real data is given, runs stay comparable.

With the model's `ModelRoles` the values are ones the model can meet: token ids spread over the
vocabulary, masks of ones followed by padding zeros, constants at their value, recurrent state at
zero (a stream's start), and each batch placed on the input's own batch axis.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from edgerun.logs import log_once
from edgerun.roles import InputRole, ModelRoles
from edgerun.specs import TensorSpec

_log = logging.getLogger("edgerun")


def random_feeds(
    specs: Sequence[TensorSpec],
    batch: int | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
    roles: ModelRoles | None = None,
) -> dict[str, np.ndarray]:
    """Seeded random inputs shaped by the specs (symbols from ``shapes``, ``batch`` on each batch axis)."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        role = _role(roles, spec)
        shape = spec.concrete_shape(batch, shapes, role.batch_axis)
        feeds[spec.name] = random_values(spec, role, shape, rng)
    return feeds


def _role(roles: ModelRoles | None, spec: TensorSpec) -> InputRole:
    if roles is not None:
        try:
            return roles[spec.name]
        except KeyError:
            pass
    return InputRole(spec.name, "constant" if not spec.shape else "data", None if not spec.shape else 0)


def random_values(spec: TensorSpec, role: InputRole, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Values of ``shape`` for one input as its role allows."""
    if role.role == "constant" and role.value is not None:
        return np.full(shape, role.value, dtype=spec.dtype)
    if role.role == "constant" and spec.dtype.kind in "iu":
        log_once(_log, logging.WARNING, f"input '{spec.name}' is a constant of unknown value: random integers "
                 f"0..9 may take a branch the model never meant; set it with --role {spec.name}=constant,value=N "
                 f"or load(..., inputs={{'{spec.name}': 'constant,value=N'}})")  # fmt: skip
    if role.role == "state":
        return np.zeros(shape, dtype=spec.dtype)
    if role.role == "token_ids" and role.high is not None:
        low = int(role.low or 0)
        return rng.integers(low, max(int(role.high), low + 1), shape).astype(spec.dtype)
    if role.role == "mask":
        return padding_mask(shape, role.batch_axis, rng).astype(spec.dtype)
    if spec.dtype.kind == "f":
        return rng.standard_normal(shape).astype(spec.dtype)
    if spec.dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    if spec.dtype.kind in "iu":
        return rng.integers(0, 10, shape).astype(spec.dtype)
    return np.zeros(shape, dtype=spec.dtype)


def padding_mask(shape: tuple[int, ...], batch_axis: int | None, rng: np.random.Generator) -> np.ndarray:
    """Ones then zeros along the last axis: each row keeps a random length in [half, all] of its tokens."""
    mask = np.ones(shape, dtype=np.int64)
    if len(shape) < 2 or shape[-1] < 2:
        return mask
    length = shape[-1]
    rows = mask.reshape(-1, length)
    keep = rng.integers(max(1, length // 2), length + 1, rows.shape[0])
    rows[np.arange(length)[None, :] >= keep[:, None]] = 0
    if batch_axis is not None and rows.shape[0] > 1:
        rows[0] = 1  # one full-length row per batch, as a real batch padded to its longest has
    return rows.reshape(shape)


def on_batch_axes(
    shapes: Mapping[str, Sequence[int]], batch: int, axes: Mapping[str, int | None]
) -> dict[str, list[int]]:
    """Full shapes (a card's, or ``--shape NAME=...``, given at batch 1) with ``batch`` on each input's batch axis
    (``axes``: ``state [2, batch, 128]`` on axis 1); constants and names ``axes`` does not list (dimension
    symbols such as ``sequence``) keep their sizes."""
    placed: dict[str, list[int]] = {}
    for name, dims in shapes.items():
        sized = [int(d) for d in dims]
        axis = axes.get(name)
        if axis is not None and axis < len(sized):
            sized[axis] = batch
        placed[name] = sized
    return placed
