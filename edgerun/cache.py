"""edgerun's user cache: where converted models and calibration ranges live, written atomically.

``$EDGERUN_CACHE_DIR``, else ``$XDG_CACHE_HOME/edgerun``, else ``~/.cache/edgerun``. Every file
is written to a temporary name in the same folder and renamed into place, so an interrupted
build never leaves a half-written (or zero-byte) entry behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    """The root of edgerun's cache (not created here)."""
    explicit = os.environ.get("EDGERUN_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "edgerun"


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; it replaces ``target`` only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    temp = Path(temp_name)
    try:
        yield temp
        os.replace(temp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def write_json(target: Path, data: Any) -> None:
    with atomic_path(target) as temp:
        temp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any | None:
    """The JSON at ``path``, or None if it is missing or unreadable (a corrupt entry is a miss)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None


def digest(*parts: Any) -> str:
    """A stable SHA-256 of JSON-serialisable parts: the key of a cache entry."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
