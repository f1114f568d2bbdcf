"""The batcher's option checks: each `DynamicBatcher` argument checked for type and range up front.

Every option is checked for type and range up front, so a wrong one is a `ConfigError` naming it,
not a TypeError (or a silent misbehaviour) later on a worker thread. Batch axes, constants and
sequence buckets are checked against the model's roles by `edgerun.runtime.batching.layout`.
"""

from __future__ import annotations

from typing import Any

from edgerun.errors import BatcherClosedError, ConfigError
from edgerun.runtime.session import Session


def is_int(value: Any) -> bool:
    """An int that is not a bool (True is not a batch size)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_args(
    session: Session,
    max_batch_size: Any,
    max_queue_delay_ms: Any,
    preferred_batch_sizes: Any,
    max_queue_size: Any,
    default_timeout_ms: Any,
    instances: Any,
    preserve_order: Any,
    pad_to_preferred: Any,
    session_per_instance: Any,
) -> None:
    """Every option checked for type and range: a wrong one is a ConfigError, not a TypeError later."""
    if not isinstance(session, Session):
        raise ConfigError(f"DynamicBatcher needs an edgerun Session, got {type(session).__name__}")
    if session.closed:
        raise BatcherClosedError(f"session for {session.label} is closed")
    for name, value in (("max_batch_size", max_batch_size), ("instances", instances)):
        if not is_int(value) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    if not is_int(max_queue_size) or max_queue_size < 0:
        raise ConfigError(f"max_queue_size must be an integer >= 0 (0: unbounded), got {max_queue_size!r}")
    for name, value in (("max_queue_delay_ms", max_queue_delay_ms), ("default_timeout_ms", default_timeout_ms)):
        if not is_number(value) or value < 0:
            raise ConfigError(f"{name} must be a number >= 0, got {value!r}")
    sizes = list(preferred_batch_sizes) if isinstance(preferred_batch_sizes, (list, tuple)) else None
    if sizes is None or not all(is_int(s) and 1 <= s <= max_batch_size for s in sizes):
        raise ConfigError(
            f"preferred_batch_sizes must be integers in 1..{max_batch_size}, got {preferred_batch_sizes!r}"
        )
    for name, value in (("preserve_order", preserve_order), ("pad_to_preferred", pad_to_preferred)):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be True or False, got {value!r}")
    if session_per_instance is not None and not isinstance(session_per_instance, bool):
        raise ConfigError(f"session_per_instance must be True, False or None, got {session_per_instance!r}")
    if pad_to_preferred and not sizes:
        raise ConfigError("pad_to_preferred needs preferred_batch_sizes")


def check_direct(session: Session, direct_calls: Any, preserve_order: bool, pad_to_preferred: bool) -> None:
    """``direct_calls`` runs blocking requests one by one in callers' threads: only on a session that runs
    concurrent calls (any ``max_batch_size``: it caps the batches of queued requests, ``submit`` and asyncio)."""
    if not isinstance(direct_calls, bool):
        raise ConfigError(f"direct_calls must be True or False, got {direct_calls!r}")
    if not direct_calls:
        return
    if not session.capabilities.concurrent_runs:
        raise ConfigError(
            f"direct_calls needs a session that runs concurrent calls; {session.label}'s backend serialises them "
            "(use instances with one session each)"
        )
    if preserve_order or pad_to_preferred:
        raise ConfigError("direct_calls cannot preserve_order or pad_to_preferred: each request runs on its own")
