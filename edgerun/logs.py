"""Log a message once per process: fallbacks must be visible but must not flood a loop."""

from __future__ import annotations

import logging
import threading

_seen: set[tuple[str, str]] = set()
_lock = threading.Lock()


def log_once(logger: logging.Logger, level: int, message: str) -> bool:
    """Log ``message`` unless this logger already logged it; returns whether it was logged."""
    key = (logger.name, message)
    with _lock:
        if key in _seen:
            return False
        _seen.add(key)
    logger.log(level, message)
    return True
