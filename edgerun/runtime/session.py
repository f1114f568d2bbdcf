"""`Session`: one loaded model on one backend; it validates feeds and delegates to the backend.

`edgerun.loading.load` makes sessions; a session knows nothing of how it was made.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from edgerun.errors import SessionClosedError
from edgerun.logs import log_once
from edgerun.runtime.backends.base import Capabilities, QdqLayout
from edgerun.runtime.feeds import FeedValidator

if TYPE_CHECKING:
    from edgerun.models import ModelCard
    from edgerun.roles import ModelRoles
    from edgerun.runtime.backends.base import Backend
    from edgerun.runtime.modelfile import ModelFile
    from edgerun.runtime.outputshapes import OutputMismatch
    from edgerun.runtime.plan import Plan
    from edgerun.runtime.streaming import Stream
    from edgerun.specs import TensorSpec


def _serial_layout(device: str) -> QdqLayout:
    return "tensorrt"


_log = logging.getLogger("edgerun")

SERIAL = Capabilities(concurrent_runs=False, qdq_layout=_serial_layout)
"""What a session assumes of a backend that did not say: one call at a time."""


class Session:
    """A model ready to run: ``session.run(feeds)`` or ``session(feeds)``.

    ``run`` may be called from several threads at once, and the arrays it returns are new
    on every call: a later call never overwrites them.
    """

    def __init__(
        self,
        model: ModelFile,
        plan: Plan,
        backend: Backend,
        card: ModelCard | None = None,
        *,
        capabilities: Capabilities = SERIAL,
        reopen: Callable[[], Session] | None = None,
        roles: ModelRoles | None = None,
    ) -> None:
        self.model = model
        self.roles = roles or model.roles
        """What each input means: batch axis, token ids, mask, state (paired with its output), constant."""
        self.plan = plan
        self.card = card
        self.capabilities = capabilities
        """What the backend allows (concurrent calls, phase timing), from its registry entry."""
        self._backend: Backend | None = backend
        self.run_validated: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]] = self._first_run_validated
        """Run feeds that `validate` already accepted (the batcher checks each request at submit); the first
        call also checks the outputs against their declared shapes, later ones are the backend's own."""
        self._run_single: Callable[[np.ndarray], dict[str, np.ndarray]] = self._first_run_single
        self._reopen = reopen
        self.label = card.name if card else model.path.name
        """How messages name this model: the bundled name, else the file name."""
        self.validate = FeedValidator(model.inputs, self.label, self.roles)
        """Checks feeds against the model's inputs (also what the batcher checks each request with)."""
        self.output_mismatches: tuple[OutputMismatch, ...] = ()
        self._outputs_checked = False
        """Outputs the first run returned in a shape their declaration does not allow (logged once)."""

    @property
    def opened_backend(self) -> Backend:
        """The backend object running the model (for its optional protocols, e.g. phase timing)."""
        if self._backend is None:
            raise SessionClosedError(f"session for {self.label} is closed")
        return self._backend

    def reopen(self) -> Session:
        """A second, independent session of the same model and settings (a worker's own session)."""
        if self._reopen is None:
            raise SessionClosedError(f"session for {self.label} was not made by edgerun.load and cannot be reopened")
        return self._reopen()

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.model.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.model.outputs

    @property
    def backend(self) -> str:
        """Name of the backend running the model, e.g. ``onnxruntime``."""
        return self.plan.backend

    @property
    def closed(self) -> bool:
        return self._backend is None

    def run(self, feeds: np.ndarray | Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run the model on ``feeds`` (a dict name -> array, or one array for a one-input model)."""
        if type(feeds) is np.ndarray:
            # A camera loop's call: one array shaped like the last accepted one goes straight to
            # the backend (about 1 us less per call than the general path, measured).
            accepted = self.validate.accepted_array
            if (
                accepted is not None
                and feeds.shape == accepted[0]
                and feeds.dtype == accepted[1]
                and feeds.flags.c_contiguous
            ):
                return self._run_single(feeds)
        return self.run_validated(self.validate(feeds))

    __call__ = run

    def stream(self, batch: int = 1) -> Stream:
        """A stream of steps through this stateful model, its state carried call after call (`Stream`)."""
        from edgerun.runtime.streaming import Stream

        return Stream(self.run, self.roles, self.inputs, self.label, batch=batch)

    def close(self) -> None:
        """Release the backend; further calls raise `SessionClosedError`. Idempotent."""
        backend, self._backend = self._backend, None
        self.run_validated = self._closed_run
        self._run_single = self._closed_run_single  # the bound method held the backend alive
        self.validate.forget()
        if backend is not None:
            backend.close()

    def _first_run_validated(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        backend = self.opened_backend
        return self._checked_first(backend.run(feeds), backend)

    def _first_run_single(self, array: np.ndarray) -> dict[str, np.ndarray]:
        backend = self.opened_backend
        return self._checked_first(backend.run_single(array), backend)

    def _checked_first(self, outputs: dict[str, np.ndarray], backend: Backend) -> dict[str, np.ndarray]:
        """Compare the first outputs with their declared shapes (warn once), then stop checking."""
        if self._outputs_checked:  # a caller holding the first-run method from before the swap
            return outputs
        self._outputs_checked = True
        if self.run_validated == self._first_run_validated:  # not closed meanwhile
            self.run_validated = backend.run
            self._run_single = backend.run_single
        from edgerun.runtime.outputshapes import check_outputs

        mismatches = check_outputs(self.outputs, outputs)
        if mismatches:
            self.output_mismatches = mismatches
            for mismatch in mismatches:
                log_once(_log, logging.WARNING, f"{self.label}: {mismatch.describe()}; edgerun returns what the "
                         "model returns (exports use the observed shape: edgerun info shows it)")  # fmt: skip
        return outputs

    def _closed_run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise SessionClosedError(f"session for {self.label} is closed")

    def _closed_run_single(self, array: np.ndarray) -> dict[str, np.ndarray]:
        raise SessionClosedError(f"session for {self.label} is closed")

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.plan.backend} on {self.plan.device}"
        return f"<edgerun.Session {self.label} ({state})>"
