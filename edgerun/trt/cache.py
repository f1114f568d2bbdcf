"""The TensorRT engine cache: built engines keyed on everything that makes them valid.

An engine runs only on the TensorRT version and GPU that built it, for the model, precision,
shape profile and flags it was built with. The key covers all of those (flags by name: their
numbers changed in TensorRT 11), so an upgrade or another GPU is a miss, never a "plan file
incompatible" crash. Beside each engine a manifest records the key and the engine's SHA-256.
Writes are atomic (temporary file, fsync, rename), a file lock stops two processes from
building the same engine at once, and an entry is only trusted after its bytes match the
manifest and the caller's check (deserializing it) passes; anything else is removed with a
warning and rebuilt. A cache folder that cannot be written falls back to a temporary one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgerun import __version__
from edgerun.storage import cache_dir, read_json, writable

_log = logging.getLogger("edgerun")


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine's validity depends on."""

    model_sha256: str
    """The ONNX the engine was built from (a converted FP16 / Q/DQ model where one was used)."""
    source_sha256: str
    """The user's original model, so entries can be listed and cleared per model."""
    precision: str
    tensorrt: str
    gpu: str
    compute_capability: str
    profile: dict[str, str]
    flags: tuple[str, ...]
    """Builder flags by name, sorted."""
    settings: dict[str, Any] = field(default_factory=dict)
    """Workspace, optimisation level, DLA core, ...: anything else given to the builder."""
    edgerun: str = __version__

    def digest(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["flags"] = list(self.flags)
        return data


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    manifest: dict[str, Any]
    size_bytes: int


class EngineCache:
    """A folder of ``<model>/<key>.engine`` files with ``.json`` manifests."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = writable(root or cache_dir() / "engines")

    def path_for(self, key: EngineKey) -> Path:
        return self.root / key.source_sha256[:16] / f"{key.digest()[:32]}.engine"

    def lookup(self, key: EngineKey, check: Callable[[bytes], None] | None = None) -> bytes | None:
        """The cached engine for ``key``, or None; a bad entry is removed (with a warning) and is a miss.

        ``check`` is called with the engine bytes (the backend deserializes them) and raises if
        they are unusable; only then is the entry trusted.
        """
        path = self.path_for(key)
        manifest_path = path.with_suffix(".json")
        if not path.exists() and not manifest_path.exists():
            return None
        problem = _problem(path, manifest_path, key)
        data = b""
        if problem is None:
            data = path.read_bytes()
            manifest = read_json(manifest_path)
            if not isinstance(manifest, dict) or hashlib.sha256(data).hexdigest() != manifest.get("sha256"):
                problem = "its bytes do not match the manifest (truncated or overwritten)"
        if problem is None and check is not None:
            try:
                check(data)
            except Exception as exc:  # whatever TensorRT raises for a foreign or corrupt plan
                problem = f"TensorRT cannot deserialize it ({exc})"
        if problem is not None:
            _log.warning("engine cache entry %s is unusable: %s; rebuilding it", path, problem)
            self.remove(path)
            return None
        return data

    def store(self, key: EngineKey, engine: bytes, details: dict[str, Any] | None = None) -> Path:
        """Write ``engine`` and its manifest atomically; refuses an empty engine."""
        if not engine:
            raise ValueError("refusing to cache an empty engine")
        path = self.path_for(key)
        manifest = {
            **(details or {}),
            "key": key.to_dict(),
            "sha256": hashlib.sha256(engine).hexdigest(),
            "size_bytes": len(engine),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        _atomic_write(path, engine)
        try:
            _atomic_write(path.with_suffix(".json"), (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
        except BaseException:
            self.remove(path)  # an engine without a manifest would never be trusted: do not leave it
            raise
        return path

    @contextlib.contextmanager
    def build_lock(self, key: EngineKey) -> Iterator[None]:
        """Hold an exclusive lock on this key: a second builder waits, then finds the engine cached."""
        lock_path = self.path_for(key).with_suffix(".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def entries(self) -> list[CacheEntry]:
        found = []
        for engine in sorted(self.root.glob("*/*.engine")):
            manifest = read_json(engine.with_suffix(".json"))
            found.append(CacheEntry(engine, manifest if isinstance(manifest, dict) else {}, engine.stat().st_size))
        return found

    def verify(self, check: Callable[[bytes], None] | None = None) -> dict[Path, str | None]:
        """Every entry's problem (None when sound); unsound entries are removed."""
        results: dict[Path, str | None] = {}
        for entry in self.entries():
            problem = self._entry_problem(entry, check)
            if problem is not None:
                _log.warning("engine cache entry %s is unusable: %s; removing it", entry.path, problem)
                self.remove(entry.path)
            results[entry.path] = problem
        return results

    def _entry_problem(self, entry: CacheEntry, check: Callable[[bytes], None] | None) -> str | None:
        key_data = entry.manifest.get("key")
        if not isinstance(key_data, dict):
            return "its manifest is missing or unreadable"
        try:
            key = EngineKey(**{**key_data, "flags": tuple(key_data.get("flags", ()))})
        except TypeError:
            return "its manifest was written by another edgerun version (unknown or missing key fields)"
        if self.path_for(key) != entry.path:
            return "its manifest describes another engine"
        problem = _problem(entry.path, entry.path.with_suffix(".json"), key)
        if problem is None:
            data = entry.path.read_bytes()
            if hashlib.sha256(data).hexdigest() != entry.manifest.get("sha256"):
                problem = "its bytes do not match the manifest (truncated or overwritten)"
            elif check is not None:
                try:
                    check(data)
                except Exception as exc:  # whatever TensorRT raises for a foreign or corrupt plan
                    problem = f"TensorRT cannot deserialize it ({exc})"
        return problem

    def clear(self) -> int:
        """Remove every entry; returns how many engines were removed."""
        entries = self.entries()
        for entry in entries:
            self.remove(entry.path)
        return len(entries)

    @staticmethod
    def remove(path: Path) -> None:
        for stale in (path, path.with_suffix(".json")):
            stale.unlink(missing_ok=True)


def _problem(path: Path, manifest_path: Path, key: EngineKey) -> str | None:
    if not path.is_file():
        return "the engine file is missing"
    if path.stat().st_size == 0:
        return "the engine file is empty (an interrupted build?)"
    manifest = read_json(manifest_path)
    if not isinstance(manifest, dict) or "sha256" not in manifest:
        return "its manifest is missing or unreadable"
    if manifest.get("key") != json.loads(json.dumps(key.to_dict(), default=str)):
        return "it was built for other settings, TensorRT version or GPU"
    return None


def _atomic_write(target: Path, data: bytes) -> None:
    """Temporary file in the same folder, fsync, rename, fsync the folder: all or nothing on disk."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, target)
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
