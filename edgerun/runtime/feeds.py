"""Checking what callers pass to ``Session.run`` against the model's input specs.

Built once per session from the specs, so a call costs a few attribute checks per input.
Mistakes become an `InputError` that names the tensor, what was expected and what was given;
arrays that are merely inconvenient (non-contiguous, read-only, lists) are accepted. Token-id inputs
are also checked against their vocabulary on every call (one min and max each): ONNX Runtime's
Gather rejects ids past the table with a raw error and silently wraps negative ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from edgerun.errors import InputError
from edgerun.roles import format_number
from edgerun.specs import UNNAMED_DIM, TensorSpec

if TYPE_CHECKING:
    from edgerun.roles import ModelRoles

_TokenDomain = tuple[str, float, float, "np.dtype[Any] | None"]


class FeedValidator:
    """Turns user feeds into a ``{name: C-contiguous ndarray}`` dict the backend can bind."""

    def __init__(self, specs: tuple[TensorSpec, ...], source: str, roles: ModelRoles | None = None) -> None:
        self._specs = specs
        self._source = source
        self._names = frozenset(s.name for s in specs)
        self._single = specs[0].name if len(specs) == 1 else None
        self._checks = tuple(
            (
                spec,
                spec.dtype,
                spec.rank,
                tuple((axis, d) for axis, d in enumerate(spec.shape) if isinstance(d, int)),
                tuple((axis, d) for axis, d in enumerate(spec.shape) if isinstance(d, str) and d != UNNAMED_DIM),
            )
            for spec in specs
        )
        self._has_symbols = any(check[4] for check in self._checks)
        self._token_ids = _token_domains(specs, roles)
        """(name, low, high, unsigned view) of each token-id input with a known vocabulary, checked every call."""
        self._accepted: tuple[tuple[str, np.dtype[Any], tuple[int, ...]], ...] = ()
        """Names, dtypes and shapes of the last feeds that passed the full check."""
        self.accepted_array: tuple[tuple[int, ...], np.dtype[Any]] | None = None
        """For a one-input model, the shape and dtype of the last accepted array: a C-contiguous
        array with both needs no further check (`Session.run` uses this for its fastest path)."""

    def __call__(self, feeds: Any) -> dict[str, np.ndarray]:
        if type(feeds) is np.ndarray and self._single is not None:
            feeds = {self._single: feeds}
        if type(feeds) is dict and self._same_as_accepted(feeds):
            if self._token_ids:
                self._check_token_ids(feeds)
            return feeds
        checked = self._check(feeds)
        if self._token_ids:
            self._check_token_ids(checked)
        self._accepted = tuple((name, array.dtype, array.shape) for name, array in checked.items())
        if self._single is not None and not self._token_ids:
            # Session.run's one-array path skips this validator, so only models without token ids get it.
            self.accepted_array = (self._accepted[0][2], self._accepted[0][1])
        return checked

    def _check_token_ids(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Raise InputError for the first id outside [low, high), naming its value and position."""
        for name, low, high, unsigned in self._token_ids:
            array = feeds[name]
            if array.size == 0:
                continue
            if unsigned is not None:
                # One reduction: seen as unsigned, a negative id is larger than any vocabulary.
                if array.view(unsigned).max() < high:
                    continue
            elif array.min() >= low and array.max() < high:
                continue
            outside = (array < low) | (array >= high)
            position = tuple(int(i) for i in np.unravel_index(int(np.argmax(outside)), array.shape))
            value = array[position]
            count = int(np.count_nonzero(outside))
            size = format_number(high - low)
            vocabulary = f"token ids in [{format_number(low)}, {format_number(high)}) (vocabulary of {size})"
            if value >= high:
                why = "past the end of the embedding table"
            elif value < 0:
                why = "ONNX Runtime would silently read a row counted from the end"
            else:
                why = "below the vocabulary"
            raise InputError(
                f"{self._source}: input '{name}' expects {vocabulary}, got {value} at position {list(position)}"
                f" ({count} id{'s' if count > 1 else ''} outside; {why})",
                tensor=name,
                expected=vocabulary,
                got=f"{value} at position {list(position)}",
            )

    def forget(self) -> None:
        """Drop the remembered feeds, so the next call gets the full check."""
        self._accepted = ()
        self.accepted_array = None

    def _same_as_accepted(self, feeds: dict[Any, Any]) -> bool:
        """Fast path for repeat calls: the same names, dtypes and shapes as last time, contiguous.

        Everything the full check looks at (names, dtype, rank, fixed and symbolic dims)
        follows from that, so a camera loop pays a few comparisons per input, not the full check.
        """
        accepted = self._accepted
        if not accepted or len(feeds) != len(accepted):
            return False
        for name, dtype, shape in accepted:
            array = feeds.get(name)
            if type(array) is not np.ndarray or array.shape != shape or array.dtype != dtype:
                return False
            if not array.flags.c_contiguous:
                return False
        return True

    def _check(self, feeds: Any) -> dict[str, np.ndarray]:
        if isinstance(feeds, np.ndarray):
            if self._single is None:
                raise InputError(
                    f"{self._source} has {len(self._specs)} inputs ({self._listing()}): "
                    "pass a dict of name -> array, not a single array",
                    expected="a mapping of input names to arrays",
                    got="a single array",
                )
            feeds = {self._single: feeds}
        elif not isinstance(feeds, Mapping):
            raise InputError(
                f"feeds for {self._source} must be a numpy array or a mapping of input name -> array, "
                f"got {type(feeds).__name__}",
                expected="ndarray or mapping",
                got=type(feeds).__name__,
            )
        elif len(feeds) != len(self._names) or not self._names.issuperset(feeds):
            self._raise_name_mismatch(feeds)
        checked: dict[str, np.ndarray] = {}
        symbols: dict[str, tuple[int, str]] = {}
        for spec, dtype, rank, fixed, named in self._checks:
            array = feeds[spec.name]
            if type(array) is not np.ndarray:
                array = self._as_array(spec, array)
            if array.dtype != dtype:
                raise self._error(
                    spec,
                    f"dtype {dtype.name}",
                    f"dtype {array.dtype}",
                    hint=f"; convert with .astype(numpy.{dtype.name})",
                )
            if array.ndim != rank:
                raise self._error(spec, f"rank {rank} {list(spec.shape)}", f"rank {array.ndim} {list(array.shape)}")
            shape = array.shape
            for axis, size in fixed:
                if shape[axis] != size:
                    raise self._error(
                        spec, f"size {size} at axis {axis} {list(spec.shape)}", f"size {shape[axis]} {list(shape)}"
                    )
            if self._has_symbols:
                for axis, symbol in named:
                    seen = symbols.setdefault(symbol, (shape[axis], spec.name))
                    if seen[0] != shape[axis]:
                        raise self._error(
                            spec,
                            f"dimension '{symbol}' = {seen[0]} as in input '{seen[1]}'",
                            f"{shape[axis]} at axis {axis}",
                        )
            if not array.flags.c_contiguous:
                array = np.ascontiguousarray(array)
            checked[spec.name] = array
        return checked

    def _as_array(self, spec: TensorSpec, value: Any) -> np.ndarray:
        try:
            return np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise self._error(spec, "an array", f"{type(value).__name__} that numpy cannot convert ({exc})") from exc

    def _listing(self) -> str:
        return ", ".join(s.describe() for s in self._specs)

    def _raise_name_mismatch(self, feeds: Mapping[Any, Any]) -> None:
        given = [str(k) for k in feeds]
        unknown = [k for k in given if k not in self._names]
        missing = [s.name for s in self._specs if s.name not in feeds]
        parts = []
        if unknown:
            parts.append(f"unknown input{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}")
        if missing:
            parts.append(f"missing input{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
        raise InputError(
            f"{self._source}: {'; '.join(parts)}; the model's inputs are: {self._listing()}",
            tensor=(unknown or missing)[0],
            expected=", ".join(s.name for s in self._specs),
            got=", ".join(given),
        )

    def _error(self, spec: TensorSpec, expected: str, got: str, hint: str = "") -> InputError:
        return InputError(
            f"{self._source}: input '{spec.name}' expects {expected}, got {got}{hint}",
            tensor=spec.name,
            expected=expected,
            got=got,
        )


def _token_domains(specs: tuple[TensorSpec, ...], roles: ModelRoles | None) -> tuple[_TokenDomain, ...]:
    """(name, low, high, unsigned view) for each token-id input whose vocabulary size is known.

    The unsigned view (signed ints from 0 only) lets one max() catch negative ids as well.
    """
    if roles is None:
        return ()
    dtypes = {s.name: s.dtype for s in specs}
    domains = []
    for role in roles.inputs:
        if role.role != "token_ids" or role.high is None or role.name not in dtypes:
            continue
        low, dtype = role.low or 0, dtypes[role.name]
        unsigned = np.dtype(dtype.str.replace("i", "u")) if low == 0 and dtype.kind == "i" else None
        domains.append((role.name, low, role.high, unsigned))
    return tuple(domains)
