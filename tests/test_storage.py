"""edgerun.storage: atomic writes, stale temporary files, file hashes, the manifest-checked store and its lock."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import namedtuple
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgerun import storage
from edgerun.errors import CacheWriteError, EdgerunError, StorageWriteError
from edgerun.storage import ManifestStore, atomic_path, file_sha256, sweep_temps, write_bytes_atomic, write_json

HOUR_AGO = time.time() - 3600
DiskUsage = namedtuple("DiskUsage", "total used free")
FIXTURE_HEALTH = [HealthCheck.function_scoped_fixture]


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "edgerun" and r.levelno == logging.WARNING]


@pytest.fixture
def store(tmp_path: Path) -> ManifestStore:
    return ManifestStore(tmp_path / "cache", mismatch="it was made for another model")


# --- atomic writes ------------------------------------------------------------------------------


def test_an_atomic_write_fsyncs_the_file_and_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    target = tmp_path / "out" / "model.onnx"
    write_bytes_atomic(target, b"weights")
    assert target.read_bytes() == b"weights"
    assert len(synced) == 2
    assert Path(synced[0]).name.startswith(".model.onnx."), "the data, under its temporary name"
    assert Path(synced[1]) == target.parent, "then the folder holding the new name"
    assert files_under(tmp_path) == ["out/model.onnx"]


def test_a_failed_block_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "card.json"
    write_json(target, {"version": 1})

    def convert(temp: Path) -> None:
        temp.write_text("half")
        raise RuntimeError("converter crashed")

    with pytest.raises(RuntimeError, match="converter crashed"), atomic_path(target) as temp:
        convert(temp)
    assert json.loads(target.read_text()) == {"version": 1}
    assert files_under(tmp_path) == ["card.json"]


def test_the_context_manager_replaces_the_target_with_what_the_block_wrote(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    with atomic_path(target) as temp:
        assert temp.parent == tmp_path
        temp.write_bytes(b"new")
        assert target.read_bytes() == b"old", "not replaced before the block ends"
    assert target.read_bytes() == b"new"


# --- stale temporary files ----------------------------------------------------------------------


def _temp(folder: Path, name: str, mtime: float | None = None) -> Path:
    path = folder / name
    path.write_bytes(b"partial")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_a_write_sweeps_old_temporary_files_and_keeps_fresh_ones(tmp_path: Path) -> None:
    stale = _temp(tmp_path, ".x.onnx.abc12_yz.tmp", HOUR_AGO)
    other_stale = _temp(tmp_path, ".engine.plan.k2j4hq0w.tmp", HOUR_AGO)
    fresh = _temp(tmp_path, ".x.onnx.def45678.tmp")  # a concurrent writer's, just created
    names = ["notes.tmp", ".x.onnx", ".editor.tmp", "x.onnx.abc12_yz.tmp"]
    not_ours = [_temp(tmp_path, name, HOUR_AGO) for name in names]
    write_bytes_atomic(tmp_path / "y.json", b"{}")
    assert not stale.exists()
    assert not other_stale.exists()
    assert fresh.exists()
    assert all(p.exists() for p in not_ours), "only .NAME.XXXXXXXX.tmp files are atomic_path's"


def test_an_old_temporary_file_whose_writer_holds_its_lock_is_kept(tmp_path: Path) -> None:
    """A slow build (calibration for an hour) keeps its temporary file's flock: it is not swept."""
    with atomic_path(tmp_path / "slow.onnx") as temp:
        temp.write_bytes(b"calibrating")
        os.utime(temp, (HOUR_AGO, HOUR_AGO))
        assert sweep_temps(tmp_path) == []
        assert temp.exists()
        write_bytes_atomic(tmp_path / "other.json", b"{}")
        assert temp.exists()
    assert (tmp_path / "slow.onnx").read_bytes() == b"calibrating"


WRITER = """
import pathlib, sys, time
from edgerun.storage import atomic_path

with atomic_path(pathlib.Path(sys.argv[1])) as temp:
    temp.write_bytes(b"half an engine")
    pathlib.Path(sys.argv[2]).touch()
    time.sleep(60)
"""


def test_the_temporary_file_of_a_killed_writer_is_swept_once_old(tmp_path: Path) -> None:
    folder, ready = tmp_path / "engines", tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder / "a.engine"), str(ready)])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None, "the writer died"
            assert time.monotonic() < deadline, "the writer did not start"
            time.sleep(0.01)
        (left,) = folder.glob(".a.engine.*.tmp")
        os.utime(left, (HOUR_AGO, HOUR_AGO))
        assert sweep_temps(folder) == [], "alive: its lock is held"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert left.exists(), "SIGKILL leaves the temporary file behind"
    write_bytes_atomic(folder / "b.engine", b"engine")
    assert not left.exists()
    assert files_under(folder) == ["b.engine"]


# --- full and read-only disks -------------------------------------------------------------------


def _fail_fsync(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    def fsync(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_full_disk_is_a_typed_error_naming_the_folder_and_the_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setattr(shutil, "disk_usage", lambda path: DiskUsage(10 << 30, 10 << 30, 1 << 20))
    _fail_fsync(monkeypatch, errno.ENOSPC)
    with pytest.raises(CacheWriteError) as info:
        write_bytes_atomic(cache / "models" / "m.onnx", b"x" * (3 << 20), cache_root=cache)
    error = info.value
    assert isinstance(error, OSError)
    assert isinstance(error, EdgerunError)
    assert error.errno == errno.ENOSPC
    assert (error.needed, error.free) == (3 << 20, 1 << 20)
    message = str(error)
    assert f"{cache / 'models' / 'm.onnx'} in edgerun's cache folder {cache}" in message
    assert "No space left on device (needs about 3.0 MiB, 1.0 MiB free)" in message
    assert "EDGERUN_CACHE_DIR=" in message
    assert str(pickle.loads(pickle.dumps(error))) == message, "it survives a process pool"
    assert files_under(tmp_path) == [], "no partial file and no temporary one"


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.EDQUOT])
def test_read_only_forbidden_or_over_quota_is_a_typed_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def mkstemp(**kwargs: object) -> tuple[int, str]:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    with pytest.raises(CacheWriteError) as info:
        write_json(tmp_path / "a.json", {}, cache_root=tmp_path)
    assert info.value.errno == code
    assert os.strerror(code) in str(info.value)
    assert ("EDGERUN_CACHE_DIR=/other/disk" if code == errno.EDQUOT else "writable folder") in str(info.value)


def test_outside_a_cache_the_error_says_where_to_free_space(tmp_path: Path) -> None:

    def save(temp: Path) -> None:  # what onnx.save does on a full disk
        temp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(StorageWriteError) as info, atomic_path(tmp_path / "out.onnx") as temp:
        save(temp)
    assert not isinstance(info.value, CacheWriteError)
    assert f"cannot write {tmp_path / 'out.onnx'}: No space left on device (needs about 4 B" in str(info.value)
    assert f"Free some space in {tmp_path}" in str(info.value)
    assert files_under(tmp_path) == []


def test_other_errors_in_the_block_pass_through_unchanged(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info, atomic_path(tmp_path / "out.onnx"):
        open(tmp_path / "missing-input")  # noqa: SIM115 - reading a source, not writing
    assert not isinstance(info.value, StorageWriteError)


def test_a_full_disk_writing_a_manifest_leaves_no_entry(store: ManifestStore, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.fsync
    calls: list[int] = []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 3:  # the data and its folder made it; the manifest does not
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(CacheWriteError, match=r"m\.json in edgerun's cache folder"):
        store.store(store.root / "m.onnx", b"model bytes")
    assert files_under(store.root) == []


# --- hashes -------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_HEALTH)
@given(parts=st.lists(st.binary(max_size=64), min_size=1, max_size=4), chunk=st.integers(1, 9))
def test_file_sha256_is_the_hash_of_the_files_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parts: list[bytes], chunk: int
) -> None:
    monkeypatch.setattr(storage, "HASH_CHUNK", chunk)  # many chunk boundaries in small files
    paths = []
    for index, data in enumerate(parts):
        paths.append(tmp_path / f"part{index}")
        paths[-1].write_bytes(data)
    assert file_sha256(*paths) == hashlib.sha256(b"".join(parts)).hexdigest()


# --- the manifest-checked store -----------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_HEALTH)
@given(data=st.binary(min_size=1, max_size=4096), fields=st.dictionaries(st.text(max_size=8), st.integers()))
def test_any_bytes_round_trip(store: ManifestStore, data: bytes, fields: dict[str, int]) -> None:
    path = store.root / "m" / "entry.bin"
    expected = {"settings": fields, "model": "a" * 64}
    manifest = store.store(path, data, expected)
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest()
    entry = store.lookup(path, expected)
    assert entry is not None
    assert entry.path.read_bytes() == data
    assert entry.size_bytes == len(data)
    assert entry.manifest == json.loads(store.manifest_path(path).read_text()) == manifest
    assert not [n for n in files_under(store.root) if n.endswith((".tmp", ".lock"))]


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_HEALTH)
@given(data=st.binary(min_size=2, max_size=512), cut=st.integers(0, 511), flip=st.booleans())
def test_a_truncated_or_altered_file_is_a_miss_and_is_removed(
    store: ManifestStore, caplog: pytest.LogCaptureFixture, data: bytes, cut: int, flip: bool
) -> None:
    path = store.root / "entry.bin"
    store.store(path, data)
    if flip:
        index = cut % len(data)
        path.write_bytes(data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :])
    else:
        path.write_bytes(data[: cut % len(data)])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgerun"):
        assert store.lookup(path) is None
    (warning,) = warnings_of(caplog)
    assert str(path) in warning
    assert ("empty" if cut % len(data) == 0 and not flip else "do not match") in warning
    assert files_under(store.root) == []


def test_a_manifest_for_other_settings_is_a_miss(store: ManifestStore, caplog: pytest.LogCaptureFixture) -> None:
    path = store.root / "entry.bin"
    store.store(path, b"data", {"source_sha256": "a" * 64, "settings": {"precision": "fp16"}})
    assert store.lookup(path, {"source_sha256": "a" * 64}) is not None, "fields not asked for do not matter"
    with caplog.at_level(logging.WARNING, logger="edgerun"):
        assert store.lookup(path, {"source_sha256": "a" * 64, "settings": {"precision": "int8"}}) is None
    (warning,) = warnings_of(caplog)
    assert "it was made for another model (its manifest differs in settings)" in warning
    assert not path.exists()


def test_a_failing_check_is_a_miss_saying_why(store: ManifestStore, caplog: pytest.LogCaptureFixture) -> None:
    path = store.root / "entry.onnx"
    store.store(path, b"not a model")
    seen: list[bytes] = []
    assert store.lookup(path, check=lambda p: seen.append(p.read_bytes())) is not None
    assert seen == [b"not a model"]

    def reject(candidate: Path) -> None:
        raise ValueError("not an ONNX model: protobuf parse failed")

    with caplog.at_level(logging.WARNING, logger="edgerun"):
        assert store.lookup(path, check=reject, warning="model %s is bad (%s)") is None
    assert warnings_of(caplog) == [f"model {path} is bad (not an ONNX model: protobuf parse failed)"]


def test_nothing_stored_is_a_silent_miss(store: ManifestStore, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="edgerun"):
        assert store.lookup(store.root / "nothing.bin", check=lambda p: pytest.fail("checked")) is None
    assert caplog.records == []
    assert not store.root.exists(), "a miss creates nothing"


def test_an_entry_written_with_a_library_then_sealed(store: ManifestStore) -> None:
    path = store.root / "model.onnx"
    with store.writing(path) as temp:
        temp.write_bytes(b"converted")
        assert store.lookup(path) is None
    store.seal(path, {"detail": "fp16"})
    entry = store.lookup(path, {"detail": "fp16"})
    assert entry is not None
    assert entry.manifest["sha256"] == hashlib.sha256(b"converted").hexdigest()
    assert [e.path for e in store.entries()] == [path]


# --- the lock -----------------------------------------------------------------------------------


def test_lookup_removes_a_bad_entry_only_under_its_lock(store: ManifestStore) -> None:
    """A builder holds the lock mid-write (file there, manifest not yet): lookup waits, then finds it whole."""
    path = store.root / "entry.bin"
    store.store(path, b"old build")
    store.manifest_path(path).unlink()
    result: list[object] = []
    with store.lock(path):
        reader = threading.Thread(target=lambda: result.append(store.lookup(path)))
        reader.start()
        reader.join(0.3)
        assert reader.is_alive(), "the lookup waits for the builder's lock"
        assert path.exists(), "nothing removed while the builder holds the lock"
        store.store(path, b"new build")
    reader.join(10)
    (entry,) = result
    assert entry is not None
    assert path.read_bytes() == b"new build"


def test_the_lock_is_reentrant_and_leaves_no_file(store: ManifestStore) -> None:
    path = store.root / "entry.bin"
    with store.lock(path), store.lock(path):
        assert path.with_suffix(".lock").exists()
        store.store(path, b"data")  # takes the same lock again
    assert not path.with_suffix(".lock").exists()
    assert files_under(store.root) == ["entry.bin", "entry.json"]


def test_the_lock_excludes_every_other_holder(store: ManifestStore) -> None:
    """flock is per open file: another open of the lock file (as in another process) cannot take it."""
    path = store.root / "entry.bin"
    with store.lock(path), path.with_suffix(".lock").open() as handle, pytest.raises(BlockingIOError):
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _build_once(store: ManifestStore, path: Path, builds: list[str], me: str) -> str:
    with store.lock(path):
        if store.lookup(path) is not None:
            return "cached"
        time.sleep(0.2)  # building
        builds.append(me)
        store.store(path, f"built by {me}".encode())
        return "built"


@pytest.mark.parametrize("locked", [True, False])
def test_threads_racing_for_one_entry_build_it_once(tmp_path: Path, locked: bool) -> None:
    store = ManifestStore(tmp_path / "cache")
    path = store.root / "entry.bin"
    builds: list[str] = []
    results: list[str] = []
    start = threading.Barrier(4)

    def run(me: str) -> None:
        start.wait()
        if locked:
            results.append(_build_once(store, path, builds, me))
        elif store.lookup(path) is None:  # the control: without the lock every thread builds
            time.sleep(0.2)
            builds.append(me)
            store.store(path, f"built by {me}".encode())

    threads = [threading.Thread(target=run, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    if locked:
        assert sorted(results) == ["built", "cached", "cached", "cached"]
        (builder,) = builds
        entry = store.lookup(path)
        assert entry is not None
        assert entry.path.read_bytes() == f"built by {builder}".encode()
    else:
        assert len(builds) == 4
