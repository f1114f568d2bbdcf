"""Tensor descriptions shared by models, backends, feeds validation and benchmarks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

from edgerun.errors import InputError

Dim = int | str
"""A dimension: a fixed size, or a symbol (``"batch"``; ``"?"`` when the model names none)."""

UNNAMED_DIM = "?"


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one model input or output."""

    name: str
    shape: tuple[Dim, ...]
    dtype: np.dtype[np.generic]

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_dynamic(self) -> bool:
        return any(isinstance(d, str) for d in self.shape)

    @property
    def has_dynamic_batch(self) -> bool:
        """True when axis 0 is symbolic: the model accepts any batch size."""
        return bool(self.shape) and isinstance(self.shape[0], str)

    def takes_samples(self, sample_shape: Sequence[int], dtype: npt.DTypeLike) -> bool:
        """Whether samples of ``sample_shape`` and ``dtype`` can be batched into this input (axis 0 = batch)."""
        want = self.shape[1:]
        if len(want) != len(sample_shape) or np.dtype(dtype) != self.dtype:
            return False
        return all(not isinstance(w, int) or w == g for w, g in zip(want, sample_shape, strict=True))

    def describe(self) -> str:
        """``x float32 [batch, 3, 224, 224]``: the form used in messages and tables."""
        dims = ", ".join(str(d) for d in self.shape)
        return f"{self.name} {self.dtype.name} [{dims}]"

    def concrete_shape(
        self,
        batch: int | None = None,
        overrides: Mapping[str, Sequence[int]] | None = None,
        batch_axis: int | None = 0,
    ) -> tuple[int, ...]:
        """Shape with symbols filled: ``overrides[name]`` wins; else each symbol set by name
        (``sequence=128`` sizes every input that shares ``sequence``); else the symbolic batch axis
        (``batch_axis``, axis 0 unless the model keeps it elsewhere) becomes ``batch`` (1).

        A ``batch`` that contradicts a fixed batch axis is an error, not silently ignored.

        Raises InputError naming the axes that stay unknown (a model with free image sizes,
        say) so the caller can ask the user for ``--shape``.
        """
        if overrides and self.name in overrides:
            return self._checked_override(tuple(int(d) for d in overrides[self.name]))
        if batch is not None and batch_axis is not None and batch_axis < self.rank:
            fixed = self.shape[batch_axis]
            if isinstance(fixed, int) and fixed != batch:
                raise InputError(
                    f"input '{self.name}' ({self.describe()}) has a fixed batch of {fixed}, cannot run batch "
                    f"{batch}" + (f" (its batch axis is {batch_axis})" if batch_axis else ""),
                    tensor=self.name,
                    expected=f"batch {fixed}",
                    got=f"batch {batch}",
                )
        dims: list[int] = []
        unknown: list[int] = []
        for axis, d in enumerate(self.shape):
            if isinstance(d, int):
                dims.append(d)
            elif overrides and d != UNNAMED_DIM and d in overrides and len(overrides[d]) == 1:
                dims.append(int(overrides[d][0]))
            elif axis == batch_axis:
                dims.append(1 if batch is None else batch)
            else:
                unknown.append(axis)
                dims.append(-1)
        if unknown:
            named = [str(self.shape[a]) for a in unknown if self.shape[a] != UNNAMED_DIM]
            symbol_hint = f" or size a symbol for every input, e.g. --shape {named[0]}=N" if named else ""
            raise InputError(
                f"input '{self.name}' ({self.describe()}) has free dimensions at axes "
                f"{', '.join(map(str, unknown))}: give its full shape, e.g. "
                f"--shape {self.name}={'x'.join('N' if d == -1 else str(d) for d in dims)}{symbol_hint}",
                tensor=self.name,
                expected="a concrete shape",
                got=str(self.shape),
            )
        return tuple(dims)

    def _checked_override(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) != self.rank:
            raise InputError(
                f"shape override for input '{self.name}' has rank {len(shape)}, "
                f"the model expects rank {self.rank} ({self.describe()})",
                tensor=self.name,
                expected=f"rank {self.rank}",
                got=f"rank {len(shape)}",
            )
        for axis, (want, have) in enumerate(zip(self.shape, shape, strict=True)):
            if isinstance(want, int) and want != have:
                raise InputError(
                    f"shape override for input '{self.name}' sets axis {axis} to {have}, "
                    f"the model fixes it at {want} ({self.describe()})",
                    tensor=self.name,
                    expected=str(want),
                    got=str(have),
                )
        return shape


def shape_symbols(specs: Sequence[TensorSpec]) -> set[str]:
    """The named symbols of ``specs`` (``batch``, ``sequence``): what ``--shape SYMBOL=N`` may set."""
    return {d for spec in specs for d in spec.shape if isinstance(d, str) and d != UNNAMED_DIM}


def parse_shape_override(text: str) -> tuple[str, tuple[int, ...]]:
    """Parse ``name=1x3x224x224`` (``,`` also separates dims) into a name and a shape."""
    name, sep, dims_text = text.partition("=")
    if not sep or not name or not dims_text:
        raise InputError(f"shape override {text!r} is not of the form NAME=1x3x224x224")
    try:
        dims = tuple(int(d) for d in dims_text.replace(",", "x").split("x"))
    except ValueError:
        raise InputError(f"shape override {text!r}: dimensions must be integers") from None
    if any(d < 1 for d in dims):
        raise InputError(f"shape override {text!r}: dimensions must be >= 1")
    return name, dims
