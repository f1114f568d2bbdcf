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
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgerun import __version__
from edgerun.storage import ManifestStore, StoredEntry, cache_dir, writable

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


CacheEntry = StoredEntry
"""An engine in the cache: its path, its manifest ({} if unreadable) and its size."""

_WARNING = "engine cache entry %s is unusable: %s; rebuilding it"


class EngineCache:
    """A folder of ``<model>/<key>.engine`` files with ``.json`` manifests (a `ManifestStore`)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = writable(root or cache_dir() / "engines")
        self._store = ManifestStore(self.root, mismatch="it was built for other settings, TensorRT version or GPU")

    def path_for(self, key: EngineKey) -> Path:
        return self.root / key.source_sha256[:16] / f"{key.digest()[:32]}.engine"

    def lookup(self, key: EngineKey, check: Callable[[bytes], None] | None = None) -> bytes | None:
        """The cached engine for ``key``, or None; a bad entry is removed (with a warning) and is a miss.

        ``check`` is called with the engine bytes (the backend deserializes them) and raises if
        they are unusable; only then is the entry trusted.
        """
        read: list[bytes] = []
        entry = self._store.lookup(self.path_for(key), {"key": key.to_dict()}, _reader(check, read), warning=_WARNING)
        return read[-1] if entry is not None and read else None

    def store(self, key: EngineKey, engine: bytes, details: dict[str, Any] | None = None) -> Path:
        """Write ``engine`` and its manifest atomically; refuses an empty engine."""
        if not engine:
            raise ValueError("refusing to cache an empty engine")
        path = self.path_for(key)
        self._store.store(path, engine, {**(details or {}), "key": key.to_dict()})
        return path

    def build_lock(self, key: EngineKey) -> contextlib.AbstractContextManager[None]:
        """Hold an exclusive lock on this key: a second builder waits, then finds the engine cached."""
        return self._store.lock(self.path_for(key))

    def entries(self) -> list[CacheEntry]:
        return self._store.entries("*/*.engine")

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
        return self._store.problem(entry.path, {"key": key.to_dict()}, _reader(check, []))

    def clear(self) -> int:
        """Remove every entry; returns how many engines were removed."""
        entries = self.entries()
        for entry in entries:
            self.remove(entry.path)
        return len(entries)

    def remove(self, path: Path) -> None:
        """Delete an engine and its manifest (waiting for a build of it to finish)."""
        self._store.remove(path)


def _reader(check: Callable[[bytes], None] | None, read: list[bytes]) -> Callable[[Path], None]:
    """A store check that reads the engine, has ``check`` (TensorRT) deserialize it, and keeps the bytes."""

    def deserialize(path: Path) -> None:
        data = path.read_bytes()
        if check is not None:
            try:
                check(data)
            except Exception as exc:  # whatever TensorRT raises for a foreign or corrupt plan
                raise ValueError(f"TensorRT cannot deserialize it ({exc})") from exc
        read.append(data)

    return deserialize
