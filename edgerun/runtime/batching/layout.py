"""`Layout`: where each input and output of a batched model keeps its batch, from ``session.roles``.

``state [2, batch, 128]`` is stacked along axis 1 and ``stateN`` split along it; a constant such
as Silero's rank-0 ``sr`` is never stacked: requests share a batch only when their constants are
equal (its bytes are part of the group key), and one the roles know may be omitted. With
``pad_sequences``, requests of different lengths share a batch padded to a length bucket through
the mask input, and outputs that carry the sequence are cut back to each request's own length.
Models whose every axis is 0 with nothing shared keep the batcher's plain path (``plain``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgerun.errors import BackendError, ConfigError, InputError
from edgerun.roles import ModelRoles, shape_roles
from edgerun.runtime.session import Session
from edgerun.specs import UNNAMED_DIM, TensorSpec

DEFAULT_BUCKETS = (8, 16, 32, 64, 128, 256, 512)
"""``pad_sequences=True``: powers of two up to 512 (a request longer than that runs at its own length)."""

_NO_BATCHING = (
    "or run it without batching: several sessions behind `instances` with max_batch_size=1 (Triton: max_batch_size 0)"
)


def model_roles(session: Session) -> ModelRoles:
    """The session's roles, or roles from shapes alone when they do not cover every input and output."""
    roles = session.roles
    names = {role.name for role in roles.inputs}
    if all(s.name in names for s in session.inputs) and all(s.name in roles.output_axes for s in session.outputs):
        return roles
    return shape_roles(session.inputs, session.outputs)


class Layout:
    """Each input's and output's batch axis, the inputs shared by value, and the sequence buckets."""

    def __init__(self, session: Session, max_batch_size: int, pad_sequences: Any = False) -> None:
        roles = model_roles(session)
        self.label = session.label
        self.input_axes: dict[str, int | None] = {}
        """Input -> batch axis; None: shared by every request of a batch (a constant), grouped by value."""
        self.output_axes: dict[str, int] = {}
        self.known: dict[str, np.ndarray] = {}
        """Shared inputs whose value the roles know: a request may omit them."""
        for spec in session.inputs:
            axis = roles[spec.name].batch_axis
            self.input_axes[spec.name] = axis
            if axis is None:
                value = roles.constant_value(spec)
                if value is not None:
                    self.known[spec.name] = value
            else:
                _check_axis(spec, axis, "input", self.label, max_batch_size)
        if all(axis is None for axis in self.input_axes.values()):
            raise ConfigError(
                f"{self.label}: batching needs a dynamic batch axis on at least one input, but every input is a "
                f"constant ({', '.join(s.describe() for s in session.inputs)}): declare the batched one with "
                f"inputs={{'NAME': 'data,batch_axis=0'}}, {_NO_BATCHING}"
            )
        for spec in session.outputs:
            out_axis = roles.output_axes.get(spec.name)
            if out_axis is None or out_axis >= spec.rank:
                raise ConfigError(
                    f"{self.label}: batching needs a dynamic batch axis on every output, but output '{spec.name}' "
                    f"({spec.describe()}) has none: the batcher could not hand each request its own part of it. "
                    f"Re-export the model so the output keeps one entry per batch row, {_NO_BATCHING}"
                )
            _check_axis(spec, out_axis, "output", self.label, max_batch_size)
            self.output_axes[spec.name] = out_axis
        self.shared = tuple(name for name, axis in self.input_axes.items() if axis is None)
        self.buckets, self.sequence = _buckets(session, roles, pad_sequences)
        self.padded_axes = _symbol_axes(session.inputs, self.sequence)
        """Input -> the axes padded to the bucket length (those carrying the sequence symbol)."""
        self.cut_axes = _symbol_axes(session.outputs, self.sequence)
        """Output -> the axes cut back to each request's own length."""
        self._length_at = next(iter(self.padded_axes.items()), None)
        self.plain = (
            not self.shared
            and not self.buckets
            and all(axis == 0 for axis in self.input_axes.values())
            and all(axis == 0 for axis in self.output_axes.values())
        )
        """Every batch axis 0 and nothing shared or padded: the batcher's fast path applies."""

    # --- per request ------------------------------------------------------------------------------

    def fill(self, feeds: Any) -> Any:
        """``feeds`` with the known constants it omits added (one array: the one other input)."""
        if isinstance(feeds, Mapping):
            missing = [name for name in self.known if name not in feeds]
            return {**{name: self.known[name] for name in missing}, **feeds} if missing else feeds
        rest = [name for name in self.input_axes if name not in self.known]
        if isinstance(feeds, np.ndarray) and self.known and len(rest) == 1:
            return {**self.known, rest[0]: feeds}
        return feeds

    def length(self, feeds: Mapping[str, np.ndarray]) -> int:
        """The request's sequence length (0 without ``pad_sequences``)."""
        if self._length_at is None:
            return 0
        name, axes = self._length_at
        return int(feeds[name].shape[axes[0]])

    def bucket(self, length: int) -> int:
        """The smallest bucket holding ``length``; a longer request keeps its own length."""
        for size in self.buckets:
            if size >= length:
                return size
        return length

    def rows_and_group(self, feeds: Mapping[str, np.ndarray]) -> tuple[int, tuple[Any, ...]]:
        """The request's rows along each input's batch axis, and the key of the requests it may share a batch with.

        The key holds every input's dtype and shape without its batch axis (sequence axes as their
        bucket), and the bytes of each shared input: different constants never share a batch.
        """
        counts: dict[int, str] = {}
        bucket = self.bucket(self.length(feeds)) if self.buckets else 0
        key: list[Any] = []
        for name, array in sorted(feeds.items()):
            axis = self.input_axes[name]
            if axis is None:
                key.append((name, array.dtype.str, array.shape, array.tobytes()))
                continue
            counts.setdefault(array.shape[axis], name)
            shape = list(array.shape)
            for padded in self.padded_axes.get(name, ()):
                shape[padded] = bucket
            del shape[axis]
            key.append((name, array.dtype.str, tuple(shape)))
        if len(counts) != 1 or 0 in counts:
            given = ", ".join(f"'{n}' {rows} (axis {self.input_axes[n]})" for rows, n in counts.items())
            raise InputError(
                f"{self.label}: every batched input of a request needs the same batch size >= 1 along its batch "
                f"axis, got {given}",
                expected="one batch size >= 1",
                got=given,
            )
        return next(iter(counts)), tuple(key)

    # --- per batch --------------------------------------------------------------------------------

    def stack(self, parts: Sequence[Mapping[str, np.ndarray]], rows: Sequence[int], padding: int) -> dict[str, Any]:
        """The requests' feeds as one batch along each input's axis, ``padding`` zero rows and sequences padded."""
        total = sum(rows) + padding
        bucket = self.bucket(max(self.length(p) for p in parts)) if self.buckets else 0
        feeds: dict[str, Any] = {}
        for name, axis in self.input_axes.items():
            arrays = [p[name] for p in parts]
            if axis is None:
                feeds[name] = arrays[0]  # equal in every request of the group
                continue
            padded = self.padded_axes.get(name, ())
            if not padded or all(a.shape[padded[0]] == bucket for a in arrays):
                if padding:
                    shape = list(arrays[0].shape)
                    shape[axis] = padding
                    arrays.append(np.zeros(shape, arrays[0].dtype))
                feeds[name] = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=axis)
                continue
            shape = list(arrays[0].shape)
            shape[axis] = total
            for padded_axis in padded:
                shape[padded_axis] = bucket
            batch = np.zeros(shape, arrays[0].dtype)  # padding: token id 0, mask 0
            start = 0
            for array, count in zip(arrays, rows, strict=True):
                index = [slice(0, size) for size in array.shape]
                index[axis] = slice(start, start + count)
                batch[tuple(index)] = array
                start += count
            feeds[name] = batch
        return feeds

    def split(
        self,
        outputs: Mapping[str, np.ndarray],
        parts: Sequence[Mapping[str, np.ndarray]],
        rows: Sequence[int],
        total: int,
    ) -> list[dict[str, np.ndarray]]:
        """Each request's rows of every output along its axis, sequence axes cut to its own length (copies)."""
        for name, array in outputs.items():
            axis = self.output_axes.get(name, 0)
            if array.ndim <= axis or array.shape[axis] != total:
                raise BackendError(
                    f"{self.label}: output '{name}' has no batch axis of {total} rows at axis {axis} "
                    f"(shape {array.shape})"
                )
        lengths = [self.length(p) for p in parts] if self.cut_axes else [0] * len(parts)
        results: list[dict[str, np.ndarray]] = []
        start = 0
        for count, length in zip(rows, lengths, strict=True):
            result: dict[str, np.ndarray] = {}
            for name, array in outputs.items():
                index: list[slice] = [slice(None)] * array.ndim
                index[self.output_axes.get(name, 0)] = slice(start, start + count)
                for cut in self.cut_axes.get(name, ()):
                    index[cut] = slice(0, length)
                whole = count == total and all(array.shape[c] == length for c in self.cut_axes.get(name, ()))
                result[name] = array if whole else array[tuple(index)].copy()
            results.append(result)
            start += count
        return results


def _check_axis(spec: TensorSpec, axis: int, kind: str, label: str, max_batch_size: int) -> None:
    """Refuse a batch axis past the tensor's rank, or a fixed one (a model exported with batch 1)."""
    if axis >= spec.rank:
        raise ConfigError(
            f"{label}: {kind} '{spec.name}' ({spec.describe()}) has batch axis {axis} but rank {spec.rank}: "
            f"fix the role with inputs={{'{spec.name}': 'data,batch_axis=N'}} (N < {spec.rank})"
        )
    size = spec.shape[axis]
    if isinstance(size, int) and not (size == 1 and max_batch_size == 1):
        raise ConfigError(
            f"{label}: batching needs a dynamic batch axis on every {kind}, but {kind} '{spec.name}' "
            f"({spec.describe()}) has a fixed batch of {size} at axis {axis} (it was exported with batch {size}): "
            f"re-export it with a dynamic batch (torch.onnx.export(..., dynamic_axes={{'{spec.name}': "
            f"{{{axis}: 'batch'}}}})), {_NO_BATCHING}"
        )


def _buckets(session: Session, roles: ModelRoles, pad_sequences: Any) -> tuple[tuple[int, ...], str | None]:
    """The bucket lengths and the sequence symbol they pad, checked: only a mask makes padding harmless."""
    if pad_sequences is False or pad_sequences is None:
        return (), None
    if pad_sequences is True:
        buckets = DEFAULT_BUCKETS
    elif isinstance(pad_sequences, (list, tuple)) and pad_sequences and all(
        isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in pad_sequences
    ):  # fmt: skip
        buckets = tuple(sorted(set(pad_sequences)))
    else:
        raise ConfigError(
            f"pad_sequences must be True, False or a list of bucket lengths >= 1 (e.g. [16, 32, 64, 128]), "
            f"got {pad_sequences!r}"
        )
    masks = [s for s in session.inputs if roles[s.name].role == "mask"]
    why = "padding a sequence changes a model's results unless a mask tells it which positions are padding"
    if not masks:
        raise ConfigError(
            f"{session.label}: pad_sequences needs a mask input (role 'mask', e.g. attention_mask) and the model "
            f"has none ({', '.join(s.describe() for s in session.inputs)}): {why}; declare one with "
            f"inputs={{'NAME': 'mask'}} if the model has it under another name, or drop pad_sequences"
        )
    mask = masks[0]
    axis = roles[mask.name].batch_axis
    symbols = [d for i, d in enumerate(mask.shape) if isinstance(d, str) and d != UNNAMED_DIM and i != axis]
    for symbol in symbols:
        if any(symbol in s.shape for s in session.inputs if s.name != mask.name):
            return buckets, symbol
    raise ConfigError(
        f"{session.label}: pad_sequences needs the mask '{mask.name}' ({mask.describe()}) to share a named "
        f"sequence axis with the other inputs ({', '.join(s.describe() for s in session.inputs)}), and it does "
        f"not: {why}, and here the batcher cannot tell which axes the mask covers"
    )


def _symbol_axes(specs: Sequence[TensorSpec], symbol: str | None) -> dict[str, tuple[int, ...]]:
    """Tensor -> the axes that carry ``symbol`` (none: an empty mapping)."""
    if symbol is None:
        return {}
    found = {s.name: tuple(i for i, d in enumerate(s.shape) if d == symbol) for s in specs}
    return {name: axes for name, axes in found.items() if axes}
