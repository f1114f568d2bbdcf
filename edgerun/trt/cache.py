"""The TensorRT engine cache: built engines keyed on everything that makes them valid.

An engine runs only on the TensorRT version and GPU that built it, for the model, precision,
shape profile and flags it was built with. The key covers all of those (flags by name: their
numbers changed in TensorRT 11), so an upgrade or another GPU is a miss, never a "plan file
incompatible" crash. Beside each engine a manifest records the key and the engine's SHA-256.
Writes are atomic (temporary file, fsync, rename), a file lock stops two processes from
building the same engine at once, and an entry is only trusted after its bytes match the
manifest and the caller's check (deserializing it) passes; anything else is removed with a
warning and rebuilt. A cache folder that cannot be written falls back to a temporary one.

The GPU is named by its name, compute capability, multiprocessor count and memory size
(`device_fields`): Jetson Orin modules all report "Orin" and 8.7, and differ only in SM count
and memory. `EngineCache.verify` judges only the entries this device can judge (same GPU and
TensorRT version); entries for other GPUs or versions are listed as skipped and kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from edgerun import __version__
from edgerun.storage import ManifestStore, StoredEntry, cache_dir, read_json, writable

_log = logging.getLogger("edgerun")
T = TypeVar("T")


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
    multiprocessors: int | None = None
    """The GPU's SM count: Jetson Orin variants share name and compute capability."""
    memory_gib: int | None = None
    """The GPU's memory in GiB, rounded (on Jetson the board's memory): 4 / 8 / 16 / 32 / 64."""

    def digest(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["flags"] = list(self.flags)
        return data

    def device_identity(self) -> dict[str, Any]:
        """What this key says about the device: TensorRT version and GPU identity (see `device_fields`)."""
        return {name: getattr(self, name) for name in DEVICE_FIELDS}


DEVICE_FIELDS = ("tensorrt", "gpu", "compute_capability", "multiprocessors", "memory_gib")
"""The key fields that only the device that built an engine can judge it by."""


def device_fields(gpu: Any) -> dict[str, Any]:
    """The GPU part of an `EngineKey` from a device description (`edgerun.trt.cuda.device_info`):
    ``EngineKey(..., tensorrt=trt.__version__, **device_fields(info))``."""
    return {
        "gpu": str(gpu.name),
        "compute_capability": str(gpu.compute_capability),
        "multiprocessors": int(gpu.multiprocessors),
        "memory_gib": round(int(gpu.total_memory) / 2**30),
    }


CacheEntry = StoredEntry
"""An engine in the cache: its path, its manifest ({} if unreadable) and its size."""

_WARNING = "engine cache entry %s is unusable: %s; rebuilding it"


class EngineCache:
    """A folder of ``<model>/<key>.engine`` files with ``.json`` manifests (a `ManifestStore`)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = writable(Path(os.fspath(root)) if root is not None else cache_dir() / "engines")
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

    def lookup_loaded(self, key: EngineKey, load: Callable[[bytes], T]) -> tuple[bytes, T] | None:
        """Like `lookup`, also returning what ``load`` (deserialize) made of the bytes, so a load
        deserializes the engine once, not once to check it and again to use it."""
        loaded: list[T] = []

        def check(data: bytes) -> None:
            loaded.append(load(data))

        data = self.lookup(key, check)
        return (data, loaded[-1]) if data is not None and loaded else None

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

    def verify(
        self,
        check: Callable[[bytes], None] | None = None,
        device: Mapping[str, Any] | None = None,
        *,
        check_key: Callable[[EngineKey, bytes], None] | None = None,
    ) -> dict[Path, str | None]:
        """Every entry's problem (None when sound); unsound entries are removed.

        ``check`` deserializes the bytes and raises when TensorRT cannot; ``check_key`` does the same
        knowing the entry's key (a version-compatible or DLA engine needs a runtime set up for it).

        ``device``: this device's identity (`EngineKey.device_identity` fields). Entries whose key
        names another GPU or TensorRT version cannot be judged here (their plans never deserialize on
        this device): they are left alone and left out of the result (see `skipped`). Without
        ``device`` every entry is checked against its manifest only, so pass no ``check`` then.
        An entry is removed only after a second look under its lock (a builder may be writing it).
        """
        results: dict[Path, str | None] = {}
        for entry in self.entries():
            if device is not None and self.foreign(entry, device):
                continue
            problem = self._entry_problem(entry, check, check_key)
            if problem is not None:
                with self._store.lock(entry.path):
                    if not entry.path.exists():
                        continue  # removed meanwhile (a lookup found it bad, or a clear)
                    problem = self._entry_problem(self._reread(entry.path), check, check_key)
                    if problem is not None:
                        _log.warning("engine cache entry %s is unusable: %s; removing it", entry.path, problem)
                        self.remove(entry.path)
            results[entry.path] = problem
        return results

    def skipped(self, device: Mapping[str, Any]) -> list[CacheEntry]:
        """The entries `verify` leaves alone on ``device``: built for another GPU or TensorRT version."""
        return [entry for entry in self.entries() if self.foreign(entry, device)]

    @staticmethod
    def foreign(entry: CacheEntry, device: Mapping[str, Any]) -> bool:
        """The entry's manifest names a device other than ``device`` (an unreadable manifest is not foreign)."""
        key = entry.manifest.get("key")
        if not isinstance(key, dict):
            return False
        return any(name in key and key[name] != value for name, value in device.items())

    def _reread(self, path: Path) -> CacheEntry:
        """The entry at ``path`` as it is now (a builder may have replaced it since it was listed)."""
        manifest = read_json(self._store.manifest_path(path))
        return CacheEntry(path, manifest if isinstance(manifest, dict) else {}, path.stat().st_size)

    def _entry_problem(
        self,
        entry: CacheEntry,
        check: Callable[[bytes], None] | None,
        check_key: Callable[[EngineKey, bytes], None] | None = None,
    ) -> str | None:
        key_data = entry.manifest.get("key")
        if not isinstance(key_data, dict):
            return "its manifest is missing or unreadable"
        try:
            key = EngineKey(**{**key_data, "flags": tuple(key_data.get("flags", ()))})
        except TypeError:
            return "its manifest was written by another edgerun version (unknown or missing key fields)"
        if self.path_for(key) != entry.path:
            return "its manifest describes another engine"
        if check_key is not None:
            keyed = check_key

            def check(data: bytes) -> None:
                keyed(key, data)

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
