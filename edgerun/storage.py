"""edgerun's storage: the user cache folder, atomic writes, file hashes and manifest-checked, locked entries.

The cache is ``$EDGERUN_CACHE_DIR``, else ``$XDG_CACHE_HOME/edgerun``, else ``~/.cache/edgerun``.
Every file is written to a temporary name in its folder, flushed, fsync-ed and renamed into place
(then the folder is fsync-ed), so a crash never leaves a half-written or zero-byte file under the
real name. A full or read-only disk raises `StorageWriteError` (`CacheWriteError` in a cache), never
a bare ``OSError``: falling back to a temporary folder would only move gigabytes onto another
(often smaller) disk behind the user's back. `ManifestStore` is the one cache of checked entries.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgerun.errors import CacheWriteError, StorageWriteError

_log = logging.getLogger("edgerun")

HASH_CHUNK = 1 << 20
STALE_TEMP_S = 30 * 60
"""Temporary files older than this (and not locked by a live writer) are leftovers of a killed build."""
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # what mkstemp(prefix=".NAME.", suffix=".tmp") makes
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})
_held = threading.local()


def cache_dir() -> Path:
    """The root of edgerun's cache (not created here)."""
    explicit = os.environ.get("EDGERUN_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "edgerun"


@contextlib.contextmanager
def atomic_path(target: Path, *, cache_root: Path | None = None, size: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; it durably replaces ``target`` only if the block succeeds.

    For libraries that write by path (``onnx.save``). The temporary file is flock-ed while the block
    runs, so `sweep_temps` never takes a live writer's file. A full or read-only disk raises
    `CacheWriteError` naming ``cache_root`` when given, else `StorageWriteError`; ``size`` is the
    expected file size, for the message.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        sweep_temps(target.parent)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise _typed(exc, target, cache_root, size) or exc from exc
    temp = Path(name)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a fresh private file: never blocks
        yield temp
        _commit(temp, target)
    except OSError as exc:
        typed = _typed(exc, target, cache_root, max(size or 0, _size_of(temp)) or None)
        if typed is None:
            raise
        raise typed from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        os.close(fd)  # releases the flock only after the file is gone


def write_bytes_atomic(target: Path, data: bytes, *, cache_root: Path | None = None) -> None:
    """Write ``data`` to ``target`` all or nothing (see `atomic_path`)."""
    with atomic_path(target, cache_root=cache_root, size=len(data)) as temp, temp.open("wb") as handle:
        handle.write(data)


def write_json(target: Path, data: Any, *, cache_root: Path | None = None) -> None:
    """Write ``data`` as indented, sorted JSON to ``target`` all or nothing."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    write_bytes_atomic(target, text.encode(), cache_root=cache_root)


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


def file_sha256(*paths: Path) -> str:
    """The SHA-256 of the files' bytes in order (a model and its external data), read in 1 MiB chunks."""
    hasher = hashlib.sha256()
    for path in paths:
        with Path(path).open("rb") as handle:
            while chunk := handle.read(HASH_CHUNK):
                hasher.update(chunk)
    return hasher.hexdigest()


def sweep_temps(folder: Path, older_than: float = STALE_TEMP_S) -> list[Path]:
    """Remove the temporary files that writes killed mid-way (SIGKILL, power loss) left in ``folder``.

    A file is removed only if it has the shape `atomic_path` gives (``.NAME.XXXXXXXX.tmp``), was
    last modified over ``older_than`` seconds ago, and its flock is free: every live `atomic_path`
    holds its file's flock, and the kernel drops it when the writer dies, so a slow build's file
    stays; the age spares writers that do not lock (another program). Returns the removed paths.
    """
    cutoff = time.time() - older_than
    removed: list[Path] = []
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            path = Path(folder) / name
            with contextlib.suppress(OSError):
                info = path.lstat()
                old = _TEMP_NAME.match(name) and stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff
                if old and _remove_unlocked(path):
                    _log.info("removed %s, left by an interrupted write", path)
                    removed.append(path)
    return removed


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
        _log.warning("cache folder %s is not writable (%s): using %s", folder, exc.strerror or exc, fallback)
        return fallback


@dataclass(frozen=True)
class StoredEntry:
    """A trusted entry of a `ManifestStore`: its file, its manifest and the file's size."""

    path: Path
    manifest: dict[str, Any]
    size_bytes: int


class ManifestStore:
    """Files under ``root``, each beside a ``.json`` manifest holding its SHA-256; only whole entries are trusted.

    ``mismatch`` says, in warnings, what a manifest with other expected fields means for this cache.
    """

    def __init__(self, root: Path, *, mismatch: str = "it was made for other settings") -> None:
        self.root = root
        self.mismatch = mismatch

    @staticmethod
    def manifest_path(path: Path) -> Path:
        return path.with_suffix(".json")

    def problem(
        self, path: Path, expected: dict[str, Any] | None = None, check: Callable[[Path], None] | None = None
    ) -> str | None:
        """Why the entry at ``path`` cannot be trusted, or None; ``check`` raises with a message to reject it."""
        if not path.is_file():
            return "the file is missing"
        if path.stat().st_size == 0:
            return "the file is empty (an interrupted build?)"
        manifest = read_json(self.manifest_path(path))
        if not isinstance(manifest, dict) or "sha256" not in manifest:
            return "its manifest is missing or unreadable"
        differ = sorted(name for name, value in (expected or {}).items() if manifest.get(name) != _plain(value))
        if differ:
            return f"{self.mismatch} (its manifest differs in {', '.join(differ)})"
        if file_sha256(path) != manifest["sha256"]:
            return "its bytes do not match the manifest (truncated or overwritten)"
        if check is not None:
            try:
                check(path)
            except Exception as exc:  # the caller's reason to reject it (cannot deserialize, not a model)
                return str(exc) or type(exc).__name__
        return None

    def lookup(
        self,
        path: Path,
        expected: dict[str, Any] | None = None,
        check: Callable[[Path], None] | None = None,
        *,
        warning: str = "cache entry %s is unusable: %s; rebuilding it",
    ) -> StoredEntry | None:
        """The entry at ``path`` if sound; a bad one is re-checked and removed under its lock, with ``warning``.

        ``warning`` is a logging format taking the path and the problem. Nothing there is a silent miss.
        """
        if self._absent(path):
            return None
        if self.problem(path, expected, check) is None:
            return self._entry(path)
        with self.lock(path):  # a builder holding the lock may be writing it right now: wait, look again
            if self._absent(path):
                return None
            problem = self.problem(path, expected, check)
            if problem is None:
                return self._entry(path)
            _log.warning(warning, path, problem)
            self.remove(path)
            return None

    def store(self, path: Path, data: bytes, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write ``data`` and its manifest (``manifest`` plus sha256, size, time) atomically; returns the manifest."""
        if not data:
            raise ValueError(f"refusing to store an empty file at {path}")
        with self.lock(path):
            write_bytes_atomic(path, data, cache_root=self.root)
            return self._seal(path, manifest, hashlib.sha256(data).hexdigest(), len(data))

    @contextlib.contextmanager
    def writing(self, path: Path, size: int | None = None) -> Iterator[Path]:
        """A temporary path for a library that writes by path; the file replaces ``path`` if the block succeeds."""
        with self.lock(path), atomic_path(path, cache_root=self.root, size=size) as temp:
            yield temp

    def seal(self, path: Path, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record the file now at ``path`` (written with `writing`) in its manifest, so lookups trust it."""
        return self._seal(path, manifest, file_sha256(path), path.stat().st_size)

    @contextlib.contextmanager
    def lock(self, path: Path) -> Iterator[None]:
        """Hold the entry's exclusive flock (``<entry>.lock``): another holder, in any process, is waited for.

        Re-entrant within a thread. The lock file is removed on release, while still held; a waiter
        that then gets the removed file sees it is not the one at the path and locks afresh.
        """
        lock_path = path.with_suffix(".lock")
        held: set[Path] = _held.__dict__.setdefault("paths", set())
        if lock_path in held:
            yield
            return
        try:
            fd = _acquire(lock_path)
        except OSError as exc:
            raise _typed(exc, lock_path, self.root, None) or exc from exc
        held.add(lock_path)
        try:
            yield
        finally:
            held.discard(lock_path)
            with contextlib.suppress(FileNotFoundError):
                lock_path.unlink()
            os.close(fd)

    def entries(self, pattern: str = "**/*") -> list[StoredEntry]:
        """Every file matching ``pattern`` (not manifests or locks), with its manifest ({} if unreadable)."""
        found = []
        for path in sorted(self.root.glob(pattern)):
            if path.suffix not in (".json", ".lock", ".tmp") and path.is_file():
                found.append(self._entry(path))
        return found

    def remove(self, path: Path) -> None:
        """Delete the entry's file and manifest, under its lock."""
        with self.lock(path):
            for stale in (path, self.manifest_path(path)):
                stale.unlink(missing_ok=True)

    def _absent(self, path: Path) -> bool:
        return not path.exists() and not self.manifest_path(path).exists()

    def _entry(self, path: Path) -> StoredEntry:
        manifest = read_json(self.manifest_path(path))
        return StoredEntry(path, manifest if isinstance(manifest, dict) else {}, path.stat().st_size)

    def _seal(self, path: Path, manifest: dict[str, Any] | None, sha256: str, size: int) -> dict[str, Any]:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        full = {**(manifest or {}), "sha256": sha256, "size_bytes": size, "created": now}
        try:
            write_json(self.manifest_path(path), full, cache_root=self.root)
        except BaseException:
            self.remove(path)  # a file without its manifest would never be trusted: do not leave it
            raise
        return full


def _commit(temp: Path, target: Path) -> None:
    """fsync the written temporary file, rename it to ``target``, then fsync the folder that holds the name."""
    _fsync(temp)
    os.replace(temp, target)
    _fsync(target.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _typed(exc: OSError, target: Path, cache_root: Path | None, needed: int | None) -> StorageWriteError | None:
    """``exc`` as a typed error when it says the disk is full, read-only or forbidden; None for other errors."""
    if isinstance(exc, CacheWriteError) or (isinstance(exc, StorageWriteError) and cache_root is None):
        return None  # already typed (an inner atomic write)
    if exc.errno not in _WRITE_ERRNOS:
        return None
    folder = cache_root or target.parent
    free = None
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(target.parent).free
    kind = CacheWriteError if cache_root is not None else StorageWriteError
    strerror = exc.strerror or os.strerror(exc.errno)
    return kind(target, exc.errno, strerror, folder=folder, needed=needed, free=free)


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _remove_unlocked(path: Path) -> bool:
    """Delete ``path`` if no process holds its flock (its writer is gone); False if one does."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        path.unlink()
        return True
    finally:
        os.close(fd)


def _acquire(lock_path: Path) -> int:
    """An fd holding the flock of the file now at ``lock_path`` (retrying when a holder removed it meanwhile)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        with contextlib.suppress(FileNotFoundError):
            now, mine = os.stat(lock_path), os.fstat(fd)
            if (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                return fd
        os.close(fd)


def _plain(value: Any) -> Any:
    """``value`` as it reads back from a JSON manifest (tuples become lists, other objects strings)."""
    return json.loads(json.dumps(value, default=str))


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
