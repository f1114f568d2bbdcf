"""What each model input means beyond its shape: batch axis, role and value domain.

A runtime that feeds a model random or real data must know more than dtypes: where the batch lies
(``state [2, batch, 128]`` keeps it on axis 1), which integers are token ids (``[0, vocab)``),
which are masks (0/1, ones first), which input carries a recurrent state (paired with the output
that returns the next one), and which is a constant (a sample rate) that is never batched.
`ModelRoles` holds those facts; `edgerun.runtime.graphroles` infers them from the graph, and model
cards, ``load(..., inputs=...)`` and ``--role NAME=ROLE,key=value`` override them.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

import numpy as np

from edgerun.errors import ConfigError
from edgerun.specs import UNNAMED_DIM, TensorSpec

Role = Literal["data", "token_ids", "mask", "state", "constant"]
ROLES: tuple[Role, ...] = get_args(Role)

Origin = Literal["shape", "graph", "name", "card", "given"]
"""Where a role came from: the shapes, the graph (an embedding table, a comparison), the input's
name, the model card, or the caller (``load(inputs=...)``, ``--role``)."""

_BATCH_NAMES = ("batch", "batch_size", "batchsize", "n", "bs", "b", "unk__0", "n_batch")
_OVERRIDE_KEYS = ("role", "batch_axis", "vocab", "low", "high", "value", "output")


@dataclass(frozen=True)
class InputRole:
    """One input's meaning: role, batch axis (None: a constant given once) and value domain."""

    name: str
    role: Role = "data"
    batch_axis: int | None = 0
    low: float | None = None
    """Smallest value (token ids: 0; masks: 0)."""
    high: float | None = None
    """Token ids: the vocabulary size (exclusive); masks: 1 (inclusive)."""
    value: float | None = None
    """A constant's value (a sample rate), when known."""
    state_output: str | None = None
    """A state input's partner: the output that returns the next state."""
    origin: Origin = "shape"
    evidence: str = ""
    """Why, in a few words: ``embedding 'emb' [30522, 32]``, ``compared with 16000``."""

    def describe(self) -> str:
        """``token ids in [0, 30522), batch axis 0 (graph: embedding 'emb' [30522, 32])``."""
        if self.role == "token_ids":
            low, high = format_number(self.low or 0), format_number(self.high)
            what = f"token ids in [{low}, {high})" if self.high is not None else "token ids"
        elif self.role == "mask":
            what = "mask of 0/1 (padding 0)"
        elif self.role == "state":
            what = f"recurrent state, next from '{self.state_output}'"
        elif self.role == "constant":
            what = f"constant {format_number(self.value)}" if self.value is not None else "constant (value unknown)"
        else:
            what = "data"
        axis = "" if self.role == "constant" else (f", batch axis {self.batch_axis}" if self.batch_axis is not None
                                                     else ", no batch axis")  # fmt: skip
        why = f" ({self.origin}: {self.evidence})" if self.evidence else f" ({self.origin})"
        return what + axis + why


def format_number(value: float | None) -> str:
    """``16000`` for whole numbers, ``0.5`` otherwise, ``?`` for unknown: values in role and feed messages."""
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class ModelRoles:
    """Every input's `InputRole` and every output's batch axis."""

    inputs: tuple[InputRole, ...]
    output_axes: Mapping[str, int | None]

    def __getitem__(self, name: str) -> InputRole:
        for role in self.inputs:
            if role.name == name:
                return role
        raise KeyError(name)

    @property
    def batch_axes(self) -> dict[str, int | None]:
        """Each input's batch axis (None for constants), by name."""
        return {role.name: role.batch_axis for role in self.inputs}

    @property
    def state_pairs(self) -> dict[str, str]:
        """State input -> the output holding its next value."""
        return {r.name: r.state_output for r in self.inputs if r.role == "state" and r.state_output}

    @property
    def stateful(self) -> bool:
        return bool(self.state_pairs)

    def constant_value(self, spec: TensorSpec) -> np.ndarray | None:
        """A constant input's value as an array of its dtype and (fixed) shape, or None if unknown."""
        role = self[spec.name]
        if role.role != "constant" or role.value is None or not all(isinstance(d, int) for d in spec.shape):
            return None
        return np.full(tuple(int(d) for d in spec.shape), role.value, dtype=spec.dtype)

    def overridden(
        self, overrides: Mapping[str, Mapping[str, Any] | str] | None, origin: Origin, where: str,
        outputs: Sequence[TensorSpec] = (),
    ) -> ModelRoles:  # fmt: skip
        """These roles with ``overrides`` (input name -> settings or ``"ROLE,key=value"``) applied.

        Raises ConfigError naming the input or key that does not exist (with the nearest names)
        and the value that does not fit.
        """
        if not overrides:
            return self
        names = [r.name for r in self.inputs]
        output_names = [o.name for o in outputs] or list(self.output_axes)
        changed = {r.name: r for r in self.inputs}
        for name, settings in overrides.items():
            if name not in changed:
                raise ConfigError(f"{where}: no input named '{name}'{_hint(name, names)}; inputs: {', '.join(names)}")
            label = f"{where}: input '{name}'"
            parsed = parse_role_settings(settings, label) if isinstance(settings, str) else settings
            changed[name] = _apply(changed[name], parsed, origin, label, output_names)
        return replace(self, inputs=tuple(changed[n] for n in names))


def _hint(name: str, names: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def parse_role_settings(text: str, where: str) -> dict[str, Any]:
    """``constant,value=16000`` / ``token_ids,vocab=30522`` / ``state,output=stateN`` as settings."""
    settings: dict[str, Any] = {}
    for i, part in enumerate(p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep and i == 0:
            settings["role"] = key
        elif not sep:
            raise ConfigError(f"{where}: '{part}' is not KEY=VALUE (e.g. {text.split(',')[0]},value=16000)")
        else:
            settings[key.strip()] = value.strip()
    return settings


def parse_input_option(text: str) -> tuple[str, dict[str, Any]]:
    """``--role NAME=ROLE,key=value,...`` into the input's name and its settings."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise ConfigError(
            f"--role {text!r} is not NAME=ROLE[,key=value...], e.g. --role sr=constant,value=16000 or "
            f"--role input_ids=token_ids,vocab=30522 (roles: {', '.join(ROLES)})"
        )
    return name.strip(), parse_role_settings(rest, f"--role {name.strip()}")


def _apply(
    role: InputRole, settings: Mapping[str, Any], origin: Origin, where: str, outputs: Sequence[str]
) -> InputRole:
    unknown = [k for k in settings if k not in _OVERRIDE_KEYS]
    if unknown:
        raise ConfigError(f"{where}: unknown setting '{unknown[0]}'{_hint(unknown[0], _OVERRIDE_KEYS)}; "
                          f"settings: {', '.join(_OVERRIDE_KEYS)}")  # fmt: skip
    new = replace(role, origin=origin, evidence="")
    if "role" in settings:
        value = str(settings["role"]).replace("-", "_")
        if value == "ids":
            value = "token_ids"
        if value not in ROLES:
            raise ConfigError(f"{where}: role '{value}' is not one of {', '.join(ROLES)}{_hint(value, ROLES)}")
        new = replace(new, role=value)
        if value == "constant":
            new = replace(new, batch_axis=None)
        elif value == "mask":
            new = replace(new, low=0, high=1)
    if "batch_axis" in settings:
        text = str(settings["batch_axis"]).lower()
        new = replace(new, batch_axis=None if text in ("none", "-") else _number(text, "batch_axis", where, int))
    for key in ("low", "high", "value"):
        if key in settings:
            new = replace(new, **{key: _number(settings[key], key, where, float)})
    if "vocab" in settings:
        new = replace(new, low=0, high=_number(settings["vocab"], "vocab", where, int))
        if new.role == "data":
            new = replace(new, role="token_ids")
    if "output" in settings:
        output = str(settings["output"])
        if outputs and output not in outputs:
            known = ", ".join(outputs)
            raise ConfigError(f"{where}: no output named '{output}'{_hint(output, outputs)}; outputs: {known}")
        new = replace(new, state_output=output, role="state" if new.role == "data" else new.role)
    if new.role == "state" and not new.state_output:
        raise ConfigError(f"{where}: a state input needs the output that returns its next value: state,output=NAME")
    if new.role == "token_ids" and (new.high is None or new.high < 1):
        raise ConfigError(f"{where}: token ids need their vocabulary size: token_ids,vocab=N (N >= 1)")
    return new


def _number(value: Any, key: str, where: str, kind: type[int] | type[float]) -> Any:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {key}={value!r} is not a number") from None
    if kind is int:
        if not number.is_integer() or number < 0:
            raise ConfigError(f"{where}: {key}={value!r} must be a whole number >= 0")
        return int(number)
    return number


# --- batch axes from shared symbols --------------------------------------------------------------


def batch_symbol(tensors: Sequence[TensorSpec]) -> str | None:
    """The symbol that names the batch: the one shared by the most inputs and outputs.

    Ties go to a batch-like name (``batch``, ``N``), then to the symbol found at axis 0 most often;
    time-major ``x [sequence, batch, 6]`` with ``pooled [batch, 5]`` picks ``batch``.
    """
    counts: Counter[str] = Counter()
    heads: Counter[str] = Counter()
    for spec in tensors:
        symbols = {d for d in spec.shape if isinstance(d, str) and d != UNNAMED_DIM}
        counts.update(symbols)
        if spec.shape and isinstance(spec.shape[0], str) and spec.shape[0] != UNNAMED_DIM:
            heads[spec.shape[0]] += 1
    candidates = [s for s in counts if heads[s] or counts[s] > 1]
    if not candidates:
        return None
    return max(candidates, key=lambda s: (counts[s], s.lower() in _BATCH_NAMES, heads[s]))


def batch_axis_in(spec: TensorSpec, symbol: str | None) -> int | None:
    """Axis of ``spec`` holding the batch ``symbol``; else 0 for a symbolic or size-1 axis 0; else None."""
    if not spec.shape:
        return None
    if symbol is not None and symbol in spec.shape:
        return spec.shape.index(symbol)
    first = spec.shape[0]
    return 0 if isinstance(first, str) or first == 1 else None


def shape_roles(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec] = ()) -> ModelRoles:
    """Roles from shapes alone: batch axes through the shared batch symbol; rank 0 or no batch = constant."""
    symbol = batch_symbol([*inputs, *outputs])
    axes = {spec.name: batch_axis_in(spec, symbol) for spec in [*inputs, *outputs]}
    if all(axes[spec.name] is None for spec in [*inputs, *outputs] if spec.shape):
        # Nothing has a batch (every shape fixed, axis 0 not 1): axis 0 is the model's fixed batch.
        axes = {spec.name: 0 if spec.shape else None for spec in [*inputs, *outputs]}
    roles = [
        InputRole(spec.name, "constant" if axes[spec.name] is None else "data", axes[spec.name]) for spec in inputs
    ]
    return ModelRoles(tuple(roles), {spec.name: axes[spec.name] for spec in outputs})
