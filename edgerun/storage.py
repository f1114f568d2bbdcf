"""edgerun's user cache: where converted models and calibration ranges live, written atomically.

``$EDGERUN_CACHE_DIR``, else ``$XDG_CACHE_HOME/edgerun``, else ``~/.cache/edgerun``. Every file
is written to a temporary name in the same folder and renamed into place, so an interrupted
build never leaves a half-written (or zero-byte) entry behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
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


def writable(folder: Path) -> Path:
    """``folder`` if edgerun can write there, else a private temporary one (with a warning)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
        return folder
    except OSError as exc:
        fallback = _private_temp() / folder.name
        fallback.mkdir(parents=True, exist_ok=True)
        logging.getLogger("edgerun").warning(
            "cache folder %s is not writable (%s): using %s", folder, exc.strerror or exc, fallback
        )
        return fallback


def _private_temp() -> Path:
    """A temp folder only this user can write: another user cannot plant engines or models in it."""
    base = Path(tempfile.gettempdir()) / f"edgerun-{os.getuid()}"
    try:
        base.mkdir(mode=0o700, exist_ok=True)
        info = base.lstat()
        if base.is_symlink() or info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise PermissionError("not private")
        return base
    except OSError:
        return Path(tempfile.mkdtemp(prefix="edgerun-"))
