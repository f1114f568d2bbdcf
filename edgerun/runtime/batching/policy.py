"""The batcher's device defaults: how many instances, and the largest batch worth forming.

``instances``: on a CPU, the cores divided by each session's intra-op threads (at least 1), so
concurrent calls use every core; on a GPU 2, so one batch is stacked and split on the host while
the other runs. ``max_batch_size``: measured once per model and device. The session runs batches
of 1, 2, 4, 8 and 16 rows (a few calls each after a warm-up, random role-aware inputs at the
card's shapes); the cap is the largest size reached while each doubling cuts the per-row cost by
at least 10% (`MIN_GAIN`; timing stops at the first doubling that does not). A compute-bound CNN
on a CPU (per-row cost flat or rising) gets 1, its requests running as concurrent single calls
through ``instances``; a weight-bound MLP gets 16. A fixed batch axis gets 1 unmeasured.
On a backend that runs concurrent calls (ONNX Runtime), max batch 1 means direct calls: each
blocking request runs at once in its caller's thread (`DynamicBatcher`'s ``direct_calls``). A
larger cap must also win a short measured tryout against direct calls (`tryout.tryout_modes`):
the per-row costs do not count the batcher's own Python per request, which on a CPU can outweigh
what a batch of a tiny model saves. The per-row costs and the tryout are cached as JSON in
edgerun's cache (a `ManifestStore`, like converted models), keyed by the model's SHA-256, the
device, backend, precision, threads and onnxruntime version; the rule is applied on reading,
and a corrupt or stale entry is measured again.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from edgerun.errors import ConfigError, EdgerunError
from edgerun.runtime.batching.tryout import Tryout
from edgerun.runtime.device import DeviceProfile, current_device
from edgerun.runtime.plan import Plan
from edgerun.runtime.session import Session
from edgerun.storage import ManifestStore, cache_dir, digest, writable

_log = logging.getLogger("edgerun")

SIZES = (1, 2, 4, 8, 16)
"""Batch sizes the policy times (each a doubling of the last)."""
MIN_GAIN = 0.10
"""A doubling of the batch must cut the per-row cost by at least this fraction to be worth its wait."""
UNMEASURED_MAX_BATCH = 8
"""The cap when the session cannot be timed (inputs it cannot make up): the earlier fixed default."""
POLICY_VERSION = 2
"""Bumped when what is measured changes (not the rule, which is applied on reading)."""
DEFAULT_DELAY_MS = 1.0
MIN_DELAY_MS = 0.1
MAX_DELAY_MS = 2.0
"""Bounds of the default queue delay (`BatchPolicy.queue_delay_ms`)."""
WARMUP_CALLS = 1
TIMED_CALLS = 5
TIME_PER_SIZE_S = 0.5
"""At most about this long per size after the warm-up (at least 3 timed calls)."""

Measure = Callable[[Session, Sequence[int]], dict[int, float]]
TryModes = Callable[[Session, int, int, float], Tryout]
"""Runs a batcher (max batch, instances, queue delay) against direct calls: `tryout.tryout_modes`."""


@dataclass(frozen=True)
class BatchPolicy:
    """The batcher options chosen for a session on a device, and why."""

    instances: int
    instances_why: str
    max_batch_size: int
    batch_why: str
    per_row_ms: Mapping[int, float] = field(default_factory=dict)
    """Median milliseconds per row at each batch size timed (empty when not measured)."""
    source: str = "measured"
    """``measured`` (now), ``cache``, ``fixed`` (batch axis fixed: nothing to measure) or ``unmeasured``."""
    direct_calls: bool = False
    """Max batch 1 on a backend that runs concurrent calls: requests run in their callers' threads."""
    tryout: Tryout | None = None
    """The measured batcher-against-direct-calls rates behind the choice (None: not tried)."""

    @property
    def queue_delay_ms(self) -> float:
        """How long a request may wait for company under load: about one batch-1 call, 0.1-2 ms; none at max batch 1.

        Without it a busy batcher with two instances takes whatever is queued at once and batches
        stay small (measured: MLP 4x2048, 16 callers, mean batch 4.3 and 0.64x the rate of one
        instance with 1 ms). It never delays a lone request: the batcher waits only under load.
        """
        return queue_delay_ms(self.max_batch_size, self.per_row_ms)

    def for_queued_requests(self) -> BatchPolicy:
        """This policy for requests that arrive queued (``submit``, bench's server scenario).

        Direct calls serve blocking callers only; a queue-fed batcher hands every request to a
        worker, so batching by the per-row rule pays there even where the tryout chose direct calls.
        """
        if not self.direct_calls:
            return self
        size, why = choose_max_batch(self.per_row_ms) if self.per_row_ms else (self.max_batch_size, self.batch_why)
        if size == self.max_batch_size:
            return replace(self, direct_calls=False)
        why = f"{why}; for queued requests (submit): direct calls serve blocking callers only"
        return replace(self, max_batch_size=size, batch_why=why, direct_calls=False)

    def options(self, *, direct_calls: bool = True) -> dict[str, Any]:
        """The `DynamicBatcher` keywords this policy sets. With direct calls, the batch cap and delay are
        those of queued requests (`for_queued_requests`), as blocking ones never reach the queue;
        ``direct_calls=False`` (blocking callers must queue too: an order to keep, padding) gives this
        policy's own choice instead, which is what the tryout measured for them."""
        direct = self.direct_calls and direct_calls
        source = self.for_queued_requests() if direct else self
        options: dict[str, Any] = {
            "max_batch_size": source.max_batch_size,
            "instances": self.instances,
            "max_queue_delay_ms": round(source.queue_delay_ms, 3),
        }
        if direct:
            options["direct_calls"] = True
        return options

    def chosen(self) -> dict[str, Any]:
        """What ``batcher.chosen`` reports: each value and why."""
        return {
            "instances": self.instances,
            "instances_why": self.instances_why,
            "max_batch_size": self.max_batch_size,
            "batch_why": self.batch_why,
            "max_queue_delay_ms": round(self.queue_delay_ms, 3),
            "delay_why": "none: batches of 1"
            if self.max_batch_size <= 1
            else "about one batch-1 call, within 0.1-2 ms",
            "batch_source": self.source,
            "per_row_ms": {str(k): round(v, 4) for k, v in sorted(self.per_row_ms.items())},
            "direct_calls": self.direct_calls,
            **({"tryout": self.tryout.as_dict()} if self.tryout else {}),
            **({"queued": self._queued_choice()} if self.direct_calls else {}),
        }

    def _queued_choice(self) -> dict[str, Any]:
        """What requests that arrive queued get beside direct calls (``submit``, asyncio), and why."""
        queued = self.for_queued_requests()
        return {
            "max_batch_size": queued.max_batch_size,
            "max_queue_delay_ms": round(queued.queue_delay_ms, 3),
            "why": queued.batch_why,
        }


def queue_delay_ms(max_batch_size: int, per_row_ms: Mapping[int, float]) -> float:
    """`BatchPolicy.queue_delay_ms` for a max batch size and per-row costs."""
    if max_batch_size <= 1:
        return 0.0
    single = per_row_ms.get(1)
    return DEFAULT_DELAY_MS if single is None else min(MAX_DELAY_MS, max(MIN_DELAY_MS, single))


def choose_max_batch(per_row_ms: Mapping[int, float], min_gain: float = MIN_GAIN) -> tuple[int, str]:
    """The largest size reached while each step up cuts the per-row cost by ``min_gain``, and why."""
    sizes = sorted(size for size, cost in per_row_ms.items() if cost > 0)
    if not sizes:
        raise ValueError("no per-row costs to choose a batch size from")
    cap = sizes[0]
    for size in sizes[1:]:
        if per_row_ms[size] > per_row_ms[cap] * (1 - min_gain):
            break
        cap = size
    first, last = sizes[0], sizes[-1]
    costs = f"per-row cost {_ms(per_row_ms[first])} at {first}, {_ms(per_row_ms[last])} at {last}"
    if cap == first:
        return cap, f"{costs}: no gain from batching on this device"
    if cap == last:
        return cap, f"{costs}: each doubling up to {last} cuts it by >= {min_gain:.0%}"
    following = sizes[sizes.index(cap) + 1]
    return cap, (
        f"{costs}: {_ms(per_row_ms[cap])} at {cap} and {_ms(per_row_ms[following])} at {following}, "
        f"a gain < {min_gain:.0%} per doubling past {cap}"
    )


def device_instances(plan: Plan, profile: DeviceProfile) -> tuple[int, str]:
    """Workers for a batcher: cores // intra-op threads on a CPU, 2 on a GPU; and why."""
    if plan.device.startswith("cuda"):
        return 2, f"GPU ({plan.device}): 2 instances, so one batch is stacked and split while the other runs"
    threads = max(1, plan.threads)
    instances = max(1, profile.cores // threads)
    plural = "s" if threads > 1 else ""
    return instances, f"{profile.cores} cores / {threads} thread{plural} per session"


def fixed_batch_reason(session: Session) -> str | None:
    """Why requests to this model cannot share a batch (a fixed or missing batch axis), or None."""
    axes = session.roles.batch_axes
    batched = [(spec, axes.get(spec.name)) for spec in session.inputs]
    batched = [(spec, axis) for spec, axis in batched if axis is not None and axis < spec.rank]
    if not batched:
        return "no input has a batch axis: requests cannot share a batch"
    for spec, axis in batched:
        assert axis is not None
        dim = spec.shape[axis]
        if not isinstance(dim, str):
            return f"input {spec.name} fixes its batch axis at {dim}: requests cannot share a batch"
    return None


def _layout_refusal(session: Session) -> str | None:
    """Why the batcher's layout refuses to batch this model (an output with no batch axis, say), or None."""
    from edgerun.runtime.batching.layout import Layout

    try:
        Layout(session, 2)
    except ConfigError as exc:
        return str(exc)
    return None


def measure_per_row(session: Session, sizes: Sequence[int] = SIZES) -> dict[int, float]:
    """Median ms per row of ``session.run`` at each size, up to the first doubling that does not pay.

    Stops early too at the first size the backend refuses (memory, a capped profile).
    """
    from edgerun.runtime.synthetic import on_batch_axes, random_feeds

    card_shapes = session.card.input_shapes if session.card else None
    per_row: dict[int, float] = {}
    for size in sizes:
        shapes = on_batch_axes(card_shapes, size, session.roles.batch_axes) if card_shapes else None
        feeds = random_feeds(session.inputs, size, shapes, seed=size, roles=session.roles)
        try:
            for _ in range(WARMUP_CALLS):
                session.run(feeds)
            times: list[float] = []
            began = time.perf_counter()
            while len(times) < TIMED_CALLS and (len(times) < 3 or time.perf_counter() - began < TIME_PER_SIZE_S):
                start = time.perf_counter()
                session.run(feeds)
                times.append(time.perf_counter() - start)
        except EdgerunError as exc:
            if not per_row:
                raise
            _log.info("%s: batch %d not timed (%s); the policy uses the smaller sizes", session.label, size, exc)
            break
        per_row[size] = statistics.median(times) * 1e3 / size
        if len(per_row) > 1 and choose_max_batch(per_row)[0] < size:
            break  # this doubling did not pay: the rule stops here, larger sizes cannot change it
    return per_row


def batch_policy(
    session: Session,
    profile: DeviceProfile | None = None,
    *,
    folder: Path | None = None,
    measure: Measure | None = None,
    try_modes: TryModes | None = None,
) -> BatchPolicy:
    """The instances and max batch size for ``session`` on ``profile`` (default: this device), measured once.

    ``measure`` times the session (default `measure_per_row`), ``try_modes`` runs the batcher
    against direct calls (default `tryout.tryout_modes`); ``folder`` is the cache (default edgerun's).
    """
    profile = profile or current_device()
    instances, instances_why = device_instances(session.plan, profile)
    concurrent = session.capabilities.concurrent_runs
    fixed = fixed_batch_reason(session) or _layout_refusal(session)
    if fixed is not None:  # nothing to measure: the batcher could not batch this model anyway
        return BatchPolicy(instances, instances_why, 1, fixed, source="fixed", direct_calls=concurrent)
    store, entry, expected = _spot(session.model.sha256, session.plan, profile, folder)
    with store.lock(entry):  # a second process measuring this model waits, then reads the entry
        cached = _read(store, entry, expected)
        if cached is not None:
            return _decided(instances, instances_why, *cached, concurrent, "cache")
        try:
            per_row = (measure or measure_per_row)(session, SIZES)
        except (EdgerunError, ValueError) as exc:  # inputs random_feeds cannot make (an unsized symbol)
            why = f"not measured ({exc}): max batch {UNMEASURED_MAX_BATCH}"
            return BatchPolicy(instances, instances_why, UNMEASURED_MAX_BATCH, why, source="unmeasured")
        size = choose_max_batch(per_row)[0]
        needs_tryout = concurrent and size > 1  # direct calls are possible and the per-row rule batches
        tryout = None
        if needs_tryout:
            delay = queue_delay_ms(size, per_row)
            tryout = _tried(try_modes or _default_tryout, session, size, instances, delay)
        record: dict[str, Any] = {"per_row_ms": {str(k): v for k, v in per_row.items()}}
        if tryout is not None:
            record["tryout"] = tryout.as_dict()
        if tryout is not None or not needs_tryout:  # a failed tryout is not cached: the next load tries again
            store.store(entry, json.dumps(record, indent=2, sort_keys=True).encode() + b"\n", expected)
    return _decided(instances, instances_why, per_row, tryout, concurrent, "measured")


def _default_tryout(session: Session, size: int, instances: int, delay_ms: float) -> Tryout:
    from edgerun.runtime.batching.tryout import tryout_modes

    return tryout_modes(session, size, instances, delay_ms)


def _tried(try_modes: TryModes, session: Session, size: int, instances: int, delay_ms: float) -> Tryout | None:
    """The tryout's rates, or None (logged) when it failed: the per-row rule then decides alone."""
    try:
        return try_modes(session, size, instances, delay_ms)
    except EdgerunError as exc:
        _log.warning("%s: batching not tried against direct calls (%s); the per-row costs decide", session.label, exc)
        return None


def _decided(
    instances: int,
    instances_why: str,
    per_row: dict[int, float],
    tryout: Tryout | None,
    concurrent: bool,
    source: str,
) -> BatchPolicy:
    """The policy from the per-row rule, overruled by a tryout in which batching did not pay."""
    size, why = choose_max_batch(per_row)
    if tryout is not None and not tryout.batching_pays:
        why = (
            f"{why}; but with {tryout.callers} callers a batcher of max batch {size} ran "
            f"{tryout.batched_per_s:.0f} req/s against {tryout.direct_per_s:.0f} for direct calls: "
            "batching does not pay on this device"
        )
        size = 1
    elif tryout is not None:
        why = (
            f"{why}; with {tryout.callers} callers it ran {tryout.batched_per_s:.0f} req/s against "
            f"{tryout.direct_per_s:.0f} for direct calls"
        )
    direct = concurrent and size == 1
    if direct:
        why = f"{why}; direct calls: each request runs at once in its caller's thread"
    return BatchPolicy(instances, instances_why, size, why, per_row, source, direct, tryout)


def cached_policy(
    model_sha256: str, plan: Plan, profile: DeviceProfile, *, folder: Path | None = None, concurrent_runs: bool = True
) -> BatchPolicy | None:
    """The policy from an earlier measurement of this model, plan and device, or None (nothing measured here).

    ``concurrent_runs``: whether the backend runs concurrent calls (ONNX Runtime), so max batch 1 means direct calls.
    """
    store, entry, expected = _spot(model_sha256, plan, profile, folder)
    cached = _read(store, entry, expected)
    if cached is None:
        return None
    instances, instances_why = device_instances(plan, profile)
    return _decided(instances, instances_why, *cached, concurrent_runs, "cache")


def policy_settings(model_sha256: str, plan: Plan, profile: DeviceProfile) -> dict[str, Any]:
    """Everything that changes the measured per-row costs (the cache key)."""
    return {
        "version": POLICY_VERSION,
        "model_sha256": model_sha256,
        "device": {"kind": profile.kind, "cpu": profile.cpu, "arch": profile.arch, "gpu": profile.gpu_name},
        "plan_device": plan.device,
        "backend": plan.backend,
        "backend_version": plan.backend_version,
        "precision": plan.precision,
        "threads": plan.threads,
        "onnxruntime": _version("onnxruntime"),
        "sizes": list(SIZES),
    }


def _spot(
    model_sha256: str, plan: Plan, profile: DeviceProfile, folder: Path | None
) -> tuple[ManifestStore, Path, dict[str, Any]]:
    settings = policy_settings(model_sha256, plan, profile)
    store = ManifestStore(writable(folder or cache_dir() / "batching"), mismatch="it was measured for other settings")
    entry = store.root / model_sha256[:16] / f"policy-{digest(settings)[:16]}.policy"
    return store, entry, {"settings": settings}


def _read(store: ManifestStore, entry: Path, expected: dict[str, Any]) -> tuple[dict[int, float], Tryout | None] | None:
    """The cached per-row costs and tryout, or None; a corrupt or stale entry is removed (with a warning)."""
    found = store.lookup(
        entry, expected, _check, warning="cached batching measurement %s is unusable: %s; measuring again"
    )
    if found is None:
        return None
    data = json.loads(found.path.read_text())
    return _costs(data), _tryout(data)


def _check(path: Path) -> None:
    data = json.loads(path.read_text())
    _costs(data)
    _tryout(data)


def _tryout(data: Any) -> Tryout | None:
    """The cached tryout, or None when there was none; ValueError when it is malformed."""
    found = data.get("tryout")
    if found is None:
        return None
    try:
        tryout = Tryout(float(found["batched_per_s"]), float(found["direct_per_s"]), int(found["callers"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed tryout {found!r}") from exc
    if not (tryout.batched_per_s >= 0 and tryout.direct_per_s >= 0 and tryout.callers >= 1):
        raise ValueError(f"tryout rates must be >= 0, got {found!r}")
    return tryout


def _costs(data: Any) -> dict[int, float]:
    """The per-row costs in a cache entry; ValueError when it is not a usable table."""
    table = data.get("per_row_ms") if isinstance(data, dict) else None
    if not isinstance(table, dict) or not table:
        raise ValueError("no per_row_ms table")
    costs = {int(k): float(v) for k, v in table.items()}
    if any(size < 1 or not cost > 0 for size, cost in costs.items()):
        raise ValueError("per-row costs must be positive at sizes >= 1")
    return costs


def _ms(value: float) -> str:
    return f"{value:.3g} ms"


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
