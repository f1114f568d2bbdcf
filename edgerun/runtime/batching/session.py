"""`BatchedSession`, a `Session` whose calls go through a `DynamicBatcher`, and `batching_options`."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

import numpy as np

from edgerun.errors import ConfigError
from edgerun.runtime.batching.batcher import DynamicBatcher
from edgerun.runtime.batching.options import is_int
from edgerun.runtime.device import DeviceProfile
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
        self._batched_run = batcher.blocking_call

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


def batching_options(
    batching: Any, session: Session | None = None, profile: DeviceProfile | None = None
) -> dict[str, Any]:
    """``load(batching=...)``: True (device defaults), a max batch size, or a dict of batcher options.

    With ``session``, what the caller leaves out of ``max_batch_size`` and ``instances`` comes from
    `batch_policy` (measured once per model and device); explicit options win. Without it, True means 8.
    """
    return _resolved(batching, session, profile)[0]


def batched_session(
    session: Session,
    batching: Any,
    *,
    session_factory: Callable[[], Session] | None = None,
    profile: DeviceProfile | None = None,
) -> BatchedSession:
    """``session`` behind a `DynamicBatcher` set from ``batching``; ``batcher.chosen`` says what was chosen and why."""
    options, chosen = _resolved(batching, session, profile)
    batcher = DynamicBatcher(session, session_factory=session_factory, **options)
    vars(batcher).setdefault("chosen", {}).update(chosen)  # DynamicBatcher.chosen, which stats() reports
    return BatchedSession(session, batcher)


def _resolved(
    batching: Any, session: Session | None, profile: DeviceProfile | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The batcher keywords for ``batching`` and what was chosen for the caller (with the reasons)."""
    if batching is True:
        given: dict[str, Any] = {}
    elif is_int(batching):
        given = {"max_batch_size": batching}
    elif isinstance(batching, Mapping):
        known = set(inspect.signature(DynamicBatcher.__init__).parameters) - {"self", "session", "session_factory"}
        unknown = sorted(set(map(str, batching)) - known)
        if unknown:
            raise ConfigError(f"unknown batching option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        given = dict(batching)
    else:
        raise ConfigError(
            f"batching must be True, a max batch size or a dict of DynamicBatcher options, got {batching!r}"
        )
    if "max_batch_size" in given:  # the caller chose the batch: nothing measured, the batcher's defaults
        reasons = {"batch_why": "given", **({"instances_why": "given"} if "instances" in given else {})}
        return given, {"max_batch_size": given["max_batch_size"], **reasons, **_instances(given)}
    if session is None:
        return {"max_batch_size": 8, **given}, {"max_batch_size": 8, "batch_why": "default (no session to measure)"}
    from edgerun.runtime.batching.policy import batch_policy

    policy = batch_policy(session, profile)
    chosen = policy.chosen()
    if "instances" in given:
        chosen.update(instances=given["instances"], instances_why="given")
    needs_queue = bool(given.get("preserve_order") or given.get("pad_to_preferred"))  # for blocking callers too
    direct = given.get("direct_calls", True) is not False and not needs_queue
    options = {**policy.options(direct_calls=direct), **given}
    if needs_queue and (policy.direct_calls or options.get("direct_calls")):
        options["direct_calls"] = False  # what the caller asked for needs the queue
    if policy.direct_calls and not direct:
        chosen["direct_calls"] = False
        chosen.pop("queued", None)
    return options, chosen


def _instances(given: Mapping[str, Any]) -> dict[str, Any]:
    return {"instances": given["instances"]} if "instances" in given else {}
