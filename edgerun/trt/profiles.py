"""Optimization profiles: the shape ranges a TensorRT engine is built for, and shape buckets.

An engine accepts any input shape inside its profile (min <= shape <= max, element-wise) and
is tuned for ``opt``. Users give a batch range (``--batch 1:4:8``) or full shape ranges
(``--shapes x=1x3x224x224:4x3x224x224:8x3x224x224``); the rest comes from the model's specs and
the bundled card. CUDA graphs fix shapes, so each distinct set of input shapes is a bucket.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgerun.errors import ConfigError, InputError
from edgerun.specs import TensorSpec, parse_shape_override

DEFAULT_MAX_BATCH = 8
"""Dynamic-batch models get batch 1..8 (tuned for 1) unless told otherwise."""


@dataclass(frozen=True)
class ShapeRange:
    """min <= opt <= max shapes of one input."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def __post_init__(self) -> None:
        if not (len(self.min) == len(self.opt) == len(self.max)):
            raise ConfigError(f"shape range {self.describe()} mixes ranks")
        if any(d < 1 for d in self.min):
            raise ConfigError(f"shape range {self.describe()} has a dimension below 1")
        if not all(a <= b <= c for a, b, c in zip(self.min, self.opt, self.max, strict=True)):
            raise ConfigError(f"shape range {self.describe()} is not ordered min <= opt <= max")

    def contains(self, shape: Sequence[int]) -> bool:
        return len(shape) == len(self.min) and all(
            a <= s <= b for a, s, b in zip(self.min, shape, self.max, strict=True)
        )

    def describe(self) -> str:
        return ":".join("x".join(map(str, s)) for s in (self.min, self.opt, self.max))


@dataclass(frozen=True)
class Profile:
    """Shape ranges for every input of a model: one TensorRT optimization profile."""

    ranges: tuple[tuple[str, ShapeRange], ...]

    def __getitem__(self, name: str) -> ShapeRange:
        return dict(self.ranges)[name]

    def key(self) -> dict[str, str]:
        """A stable, readable form for cache keys and manifests."""
        return {name: r.describe() for name, r in self.ranges}

    def check(self, shapes: Mapping[str, Sequence[int]], model: str) -> None:
        """Raise InputError when a shape lies outside what the engine was built for."""
        for name, r in self.ranges:
            shape = tuple(shapes[name])
            if not r.contains(shape):
                raise InputError(
                    f"{model}: input '{name}' has shape {list(shape)}, outside the engine's profile "
                    f"min {list(r.min)} .. max {list(r.max)}; rebuild with --batch or --shapes covering it",
                    tensor=name,
                    expected=f"{list(r.min)} .. {list(r.max)}",
                    got=str(list(shape)),
                )


def parse_batch_range(text: str) -> tuple[int, int, int]:
    """``8`` (fixed), ``1:8`` (opt = min) or ``1:4:8`` into (min, opt, max)."""
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        raise ConfigError(f"batch range {text!r} is not N, MIN:MAX or MIN:OPT:MAX") from None
    if len(parts) == 1:
        low = opt = high = parts[0]
    elif len(parts) == 2:
        low, high = parts
        opt = low
    elif len(parts) == 3:
        low, opt, high = parts
    else:
        raise ConfigError(f"batch range {text!r} is not N, MIN:MAX or MIN:OPT:MAX")
    if not 1 <= low <= opt <= high:
        raise ConfigError(f"batch range {text!r} must satisfy 1 <= min <= opt <= max")
    return low, opt, high


def parse_shape_range(text: str) -> tuple[str, ShapeRange]:
    """``x=1x3x224x224`` (fixed) or ``x=MIN:OPT:MAX`` with each part like ``1x3x224x224``."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise ConfigError(f"shape range {text!r} is not NAME=SHAPE or NAME=MIN:OPT:MAX")
    parts = rest.split(":")
    if len(parts) not in (1, 3):
        raise ConfigError(f"shape range {text!r} needs one shape or three (min:opt:max)")
    try:
        shapes = [parse_shape_override(f"{name}={p}")[1] for p in parts]
    except InputError as exc:
        raise ConfigError(f"shape range {text!r}: {exc}") from exc
    if len(shapes) == 1:
        shapes *= 3
    return name, ShapeRange(*shapes)


def plan_profile(
    inputs: Sequence[TensorSpec],
    *,
    batch: tuple[int, int, int] | None = None,
    shapes: Mapping[str, ShapeRange] | None = None,
    typical: Mapping[str, Sequence[int]] | None = None,
) -> Profile:
    """The profile for a model: explicit ranges win, else ``typical`` shapes with a batch range.

    ``typical`` is a concrete shape per input (a bundled card's, at batch 1) for free
    non-batch dimensions; without it such a model needs ``shapes``.
    """
    shapes = dict(shapes or {})
    unknown = sorted(set(shapes) - {s.name for s in inputs})
    if unknown:
        raise ConfigError(f"shape ranges given for unknown input(s) {', '.join(unknown)}")
    ranges: list[tuple[str, ShapeRange]] = []
    for spec in inputs:
        if spec.name in shapes:
            r = shapes[spec.name]
            _check_against_spec(spec, r)
        else:
            hint = {spec.name: list(typical[spec.name])} if typical and spec.name in typical else None
            try:
                base = spec.concrete_shape(None, hint)
            except InputError:
                free = [str(axis) for axis, d in enumerate(spec.shape) if isinstance(d, str) and axis > 0]
                raise ConfigError(
                    f"input '{spec.name}' ({spec.describe()}) has free dimensions at axes {', '.join(free)}: give "
                    f"its shape range, --shapes {spec.name}=MIN:OPT:MAX (load option "
                    f"shapes={{'{spec.name}': 'MIN:OPT:MAX'}})"
                ) from None
            if not base:  # a scalar input has one shape, the empty one
                ranges.append((spec.name, ShapeRange((), (), ())))
                continue
            low, opt, high = _batch_for(spec, batch)
            r = ShapeRange((low, *base[1:]), (opt, *base[1:]), (high, *base[1:]))
        ranges.append((spec.name, r))
    return Profile(tuple(sorted(ranges)))


def _batch_for(spec: TensorSpec, batch: tuple[int, int, int] | None) -> tuple[int, int, int]:
    if spec.has_dynamic_batch:
        return batch or (1, 1, DEFAULT_MAX_BATCH)
    fixed = int(spec.shape[0]) if spec.shape else 1
    if batch is not None and batch != (fixed, fixed, fixed):
        raise ConfigError(f"input '{spec.name}' has a fixed batch of {fixed}; cannot build for batch {batch}")
    return fixed, fixed, fixed


def _check_against_spec(spec: TensorSpec, r: ShapeRange) -> None:
    if len(r.min) != spec.rank:
        raise ConfigError(f"shape range for '{spec.name}' has rank {len(r.min)}, the model expects {spec.rank}")
    for axis, dim in enumerate(spec.shape):
        if isinstance(dim, int) and not (r.min[axis] == r.max[axis] == dim):
            raise ConfigError(
                f"shape range for '{spec.name}' varies axis {axis}, which the model fixes at {dim} ({spec.describe()})"
            )


def bucket(shapes: Mapping[str, Sequence[int]]) -> tuple[Any, ...]:
    """The CUDA graph bucket of a call: its exact input shapes (graphs fix shapes and addresses)."""
    return tuple(sorted((name, tuple(int(d) for d in shape)) for name, shape in shapes.items()))
