"""`Stream`: one caller's sequence of steps through a stateful model, its state carried between calls.

A voice-activity detector or a streaming recogniser returns its next state beside its output
(``state`` -> ``stateN``); every caller (one audio stream) keeps its own. A stream fills state
inputs with its carried values (zeros at the start or after `reset`), constants with their
values, and returns the other outputs. It runs through any ``run`` callable: a `Session`
(``session.stream()``) or a `DynamicBatcher` (``batcher.stream()``), which merges several
streams' steps into one batch along each input's own batch axis.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from edgerun.errors import InputError
from edgerun.roles import ModelRoles
from edgerun.specs import TensorSpec

Run = Callable[[Mapping[str, Any]], dict[str, np.ndarray]]


class Stream:
    """Steps of one stream: ``stream.step(feeds)`` runs the model with this stream's state.

    ``feeds`` holds the data inputs (one array is accepted for a model with one data input);
    state inputs come from the previous step, constants from the model's roles (a feed may still
    set either, e.g. to restore a saved state). ``batch`` is the rows this stream sends per step.
    """

    def __init__(
        self,
        run: Run,
        roles: ModelRoles,
        inputs: Sequence[TensorSpec],
        label: str,
        *,
        batch: int = 1,
    ) -> None:
        if not roles.stateful:
            raise InputError(
                f"{label} has no state input paired with an output: declare it with "
                f"inputs={{'NAME': 'state,output=NEXT'}} (CLI: --role NAME=state,output=NEXT)"
            )
        self._run = run
        self._roles = roles
        self._label = label
        self._batch = batch
        self._specs = {spec.name: spec for spec in inputs}
        self._pairs = roles.state_pairs
        self._constants = {spec.name: value for spec in inputs if (value := roles.constant_value(spec)) is not None}
        self._data = [spec.name for spec in inputs if spec.name not in self._pairs and spec.name not in self._constants]
        self.state: dict[str, np.ndarray] = {}
        """The state each state input gets next, by input name."""
        self.steps = 0
        self.reset()

    @property
    def data_inputs(self) -> list[str]:
        """The inputs a step's feeds must give (everything but state and known constants)."""
        return list(self._data)

    def reset(self) -> None:
        """Start over: every state back to zeros (a new utterance, a new stream)."""
        self.state = {name: np.zeros(self._state_shape(name), self._specs[name].dtype) for name in self._pairs}
        self.steps = 0

    def step(self, feeds: np.ndarray | Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run one step; returns every output (state outputs too) and keeps the next state."""
        given = self._as_mapping(feeds)
        full: dict[str, Any] = {**self._constants, **self.state, **given}
        outputs = self._run(full)
        for name, output in self._pairs.items():
            if output not in outputs:
                raise InputError(f"{self._label}: state output '{output}' for input '{name}' was not returned")
            self.state[name] = outputs[output]
        self.steps += 1
        return outputs

    __call__ = step

    def _as_mapping(self, feeds: np.ndarray | Mapping[str, Any]) -> Mapping[str, Any]:
        if isinstance(feeds, Mapping):
            return feeds
        if len(self._data) != 1:
            raise InputError(
                f"{self._label}: a stream step needs a dict of its data inputs ({', '.join(self._data)}), "
                f"got one array",
                expected=", ".join(self._data),
                got="an array",
            )
        return {self._data[0]: feeds}

    def _state_shape(self, name: str) -> tuple[int, ...]:
        spec = self._specs[name]
        return spec.concrete_shape(self._batch, None, self._roles[name].batch_axis)
