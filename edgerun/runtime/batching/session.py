"""`BatchedSession`, a `Session` whose calls go through a `DynamicBatcher`, and `batching_options`."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import numpy as np

from edgerun.errors import ConfigError
from edgerun.runtime.batching.batcher import DynamicBatcher
from edgerun.runtime.batching.options import is_int
from edgerun.runtime.session import Session
from edgerun.runtime.streaming import Stream


class BatchedSession(Session):
    """A session whose ``run`` goes through a `DynamicBatcher`: what ``load(..., batching=...)`` returns.

    Same API as `Session`; ``submit`` and ``run_async`` add the batcher's asynchronous forms.
    """

    def __init__(self, session: Session, batcher: DynamicBatcher) -> None:
        super().__init__(
            session.model,
            session.plan,
            session.opened_backend,
            session.card,
            capabilities=session.capabilities,
            reopen=session.reopen,
            roles=session.roles,
        )
        self.inner = session
        self.batcher = batcher
        self._batched_run = batcher.infer

    def run(self, feeds: np.ndarray | Mapping[str, Any]) -> dict[str, np.ndarray]:
        return self._batched_run(feeds)

    __call__ = run

    def submit(self, feeds: np.ndarray | Mapping[str, Any]) -> Future[dict[str, np.ndarray]]:
        return self.batcher.submit(feeds)

    async def run_async(self, feeds: np.ndarray | Mapping[str, Any]) -> dict[str, np.ndarray]:
        return await self.batcher.infer_async(feeds)

    def stream(self, batch: int = 1) -> Stream:
        """A stream of steps through the batcher: concurrent streams' steps share batches."""
        return Stream(self._batched_run, self.roles, self.inputs, self.label, batch=batch)

    def close(self) -> None:
        self.batcher.close()
        self.inner.close()
        self._backend = None


def batching_options(batching: Any) -> dict[str, Any]:
    """``load(batching=...)``: True (defaults), a max batch size, or a dict of batcher options."""
    if batching is True:
        return {"max_batch_size": 8}
    if is_int(batching):
        return {"max_batch_size": batching}
    if isinstance(batching, Mapping):
        known = set(inspect.signature(DynamicBatcher.__init__).parameters) - {"self", "session", "session_factory"}
        unknown = sorted(set(map(str, batching)) - known)
        if unknown:
            raise ConfigError(f"unknown batching option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return {"max_batch_size": 8, **batching}
    raise ConfigError(f"batching must be True, a max batch size or a dict of DynamicBatcher options, got {batching!r}")
