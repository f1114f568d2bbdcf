"""The TensorRT engine cache (edgerun.trt.cache): keys, manifests, bad entries, atomic writes, locks.

No TensorRT is needed: the cache stores opaque bytes, and TensorRT's part (deserializing a plan)
is the ``check`` callable, which these tests replace with one that raises for a foreign plan.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgerun
from edgerun.errors import CacheWriteError
from edgerun.trt.cache import EngineCache, EngineKey, device_fields

FIELDS = [f.name for f in dataclasses.fields(EngineKey)]


def make_key(**changes: Any) -> EngineKey:
    base: dict[str, Any] = {
        "model_sha256": "a" * 64,
        "source_sha256": "b" * 64,
        "precision": "fp16",
        "tensorrt": "10.3.0",
        "gpu": "Orin",
        "compute_capability": "8.7",
        "profile": {"image": "1x1x8x8:1x1x8x8:8x1x8x8"},
        "flags": (),
        "settings": {"workspace_mb": None, "opt_level": None, "dla_core": None, "low_memory": False},
        "edgerun": "0.9.0",
    }
    return EngineKey(**{**base, **changes})


@pytest.fixture
def cache(tmp_path: Path) -> EngineCache:
    return EngineCache(tmp_path / "engines")


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "edgerun" and r.levelno == logging.WARNING]


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# --- keys ---------------------------------------------------------------------------------------

text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), text)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "model_sha256": st.text("0123456789abcdef", min_size=1, max_size=64),
    "source_sha256": st.text("0123456789abcdef", min_size=1, max_size=64),
    "precision": st.sampled_from(["fp32", "fp16", "int8", "bf16"]),
    "tensorrt": st.sampled_from(["10.3.0", "10.3.0.30", "10.16.1.11", "11.4.0.106"]) | text,
    "gpu": st.sampled_from(["Orin", "Xavier", "NVIDIA GeForce RTX 4090", "NVIDIA H200"]) | text,
    "compute_capability": st.sampled_from(["7.2", "8.7", "8.9", "9.0"]) | text,
    "profile": st.dictionaries(text, text, max_size=3),
    "flags": st.lists(st.sampled_from(["FP16", "GPU_FALLBACK", "VERSION_COMPATIBLE", "TF32"]), unique=True).map(
        lambda f: tuple(sorted(f))
    ),
    "settings": st.dictionaries(text, scalars, max_size=4),
    "edgerun": st.sampled_from(["0.9.0", "0.10.0", "1.0.0"]) | text,
    "multiprocessors": st.sampled_from([4, 8, 16, 132]) | st.integers(0, 1024),
    "memory_gib": st.sampled_from([4, 8, 16, 32, 64, 141]) | st.integers(0, 4096),
}


def test_every_field_of_the_key_has_a_strategy() -> None:
    """A field added to EngineKey later must be added to the digest test below."""
    assert set(FIELD_VALUES) == set(FIELDS)


@st.composite
def keys(draw: st.DrawFn) -> EngineKey:
    return EngineKey(**{name: draw(strategy) for name, strategy in FIELD_VALUES.items()})


@settings(max_examples=150, deadline=None)
@given(key=keys(), field=st.sampled_from(FIELDS), data=st.data())
def test_digest_changes_when_any_field_changes(key: EngineKey, field: str, data: st.DataObject) -> None:
    old = getattr(key, field)
    new = data.draw(FIELD_VALUES[field].filter(lambda v: v != old), label=field)
    changed = dataclasses.replace(key, **{field: new})
    assert changed.digest() != key.digest(), f"{field}: {old!r} -> {new!r} kept the digest"


@settings(max_examples=100, deadline=None)
@given(key=keys())
def test_digest_is_stable_for_equal_keys(key: EngineKey) -> None:
    """Same fields (dicts in any insertion order, copies) give the same digest and the same path."""
    fields = {name: getattr(key, name) for name in FIELDS}
    fields["profile"] = dict(reversed(list(key.profile.items())))
    fields["settings"] = dict(reversed(list(key.settings.items())))
    again = EngineKey(**fields)
    assert again.digest() == key.digest()
    assert len(key.digest()) == 64
    assert again.digest() == EngineKey(**fields).digest(), "the same in a new object"


def test_every_named_field_changes_the_engine_path(cache: EngineCache) -> None:
    """The fields the README names (TensorRT version, GPU, ...): each gives another file."""
    base = make_key()
    variants = {
        "tensorrt": "11.4.0.106",
        "gpu": "Xavier",
        "compute_capability": "7.2",
        "precision": "int8",
        "profile": {"image": "1x1x8x8:4x1x8x8:16x1x8x8"},
        "flags": ("GPU_FALLBACK",),
        "settings": {**base.settings, "workspace_mb": 256},
        "model_sha256": "c" * 64,
        "source_sha256": "d" * 64,
        "edgerun": "0.9.1",
        "multiprocessors": 16,
        "memory_gib": 16,
    }
    assert set(variants) == set(FIELDS)
    paths = {cache.path_for(base)} | {cache.path_for(dataclasses.replace(base, **{k: v})) for k, v in variants.items()}
    assert len(paths) == len(variants) + 1


def test_the_key_defaults_to_this_edgerun_version() -> None:
    fields = {name: getattr(make_key(), name) for name in FIELDS if name != "edgerun"}
    assert EngineKey(**fields).edgerun == edgerun.__version__


# --- store and lookup ---------------------------------------------------------------------------


def test_store_then_lookup_returns_the_bytes(cache: EngineCache) -> None:
    key = make_key()
    engine = bytes(range(256)) * 10
    path = cache.store(key, engine)
    assert path == cache.path_for(key)
    assert path.read_bytes() == engine
    assert cache.lookup(key) == engine
    assert cache.lookup(make_key(gpu="Xavier")) is None, "another key is a miss"


def test_the_check_sees_the_bytes_and_a_passing_check_is_a_hit(cache: EngineCache) -> None:
    key = make_key()
    cache.store(key, b"plan")
    seen: list[bytes] = []
    assert cache.lookup(key, seen.append) == b"plan"
    assert seen == [b"plan"]


def test_manifest_records_key_hash_size_time_and_details(cache: EngineCache) -> None:
    key = make_key(flags=("FP16", "GPU_FALLBACK"), settings={"workspace_mb": 256, "dla_core": 0})
    engine = b"\x00engine\xff" * 100
    path = cache.store(key, engine, {"model": "/models/det.onnx"})
    manifest = json.loads(path.with_suffix(".json").read_text())
    assert manifest["key"] == key.to_dict()
    assert manifest["key"]["flags"] == ["FP16", "GPU_FALLBACK"]
    assert manifest["key"]["tensorrt"] == "10.3.0"
    assert manifest["key"]["gpu"] == "Orin"
    assert manifest["sha256"] == hashlib.sha256(engine).hexdigest()
    assert manifest["size_bytes"] == len(engine)
    assert manifest["model"] == "/models/det.onnx"
    created = datetime.fromisoformat(manifest["created"])
    assert created.utcoffset() is not None, "the time says its zone"
    assert abs((datetime.now(created.tzinfo) - created).total_seconds()) < 60


def test_entries_live_per_source_model(cache: EngineCache) -> None:
    first = cache.store(make_key(), b"1")
    second = cache.store(make_key(precision="fp32"), b"2")
    other = cache.store(make_key(source_sha256="e" * 64), b"3")
    assert first.parent == second.parent == cache.root / ("b" * 16)
    assert other.parent == cache.root / ("e" * 16)


def test_store_refuses_empty_bytes(cache: EngineCache) -> None:
    with pytest.raises(ValueError, match="empty engine"):
        cache.store(make_key(), b"")
    assert files_under(cache.root) == []


# --- bad entries: a miss, a warning, and the entry removed ---------------------------------------


def _foreign_manifest(cache: EngineCache, key: EngineKey) -> None:
    """The manifest an engine of another TensorRT/GPU would have, at this key's place."""
    other = make_key(tensorrt="10.16.1.11", gpu="NVIDIA GeForce RTX 4090", compute_capability="8.9")
    manifest = cache.path_for(key).with_suffix(".json")
    data = json.loads(manifest.read_text())
    data["key"] = other.to_dict()
    manifest.write_text(json.dumps(data))


DAMAGE = {
    "zero-byte engine": (lambda c, k: c.path_for(k).write_bytes(b""), "empty"),
    "truncated engine": (lambda c, k: c.path_for(k).write_bytes(c.path_for(k).read_bytes()[:7]), "do not match"),
    "overwritten engine": (lambda c, k: c.path_for(k).write_bytes(b"X" * 64), "do not match"),
    "missing engine": (lambda c, k: c.path_for(k).unlink(), "missing"),
    "missing manifest": (lambda c, k: c.path_for(k).with_suffix(".json").unlink(), "manifest"),
    "corrupt manifest": (lambda c, k: c.path_for(k).with_suffix(".json").write_text('{"key": '), "manifest"),
    "manifest not an object": (lambda c, k: c.path_for(k).with_suffix(".json").write_text("[1, 2]"), "manifest"),
    "manifest without sha256": (
        lambda c, k: c.path_for(k).with_suffix(".json").write_text(json.dumps({"key": k.to_dict()})),
        "manifest",
    ),
    "manifest of another TensorRT and GPU": (_foreign_manifest, "other settings, TensorRT version or GPU"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_bad_entry_is_a_miss_with_a_warning_and_is_removed(
    cache: EngineCache, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    key = make_key()
    engine = b"serialized plan " * 64
    path = cache.store(key, engine)
    assert cache.lookup(key) == engine
    spoil, why = DAMAGE[damage]
    spoil(cache, key)
    with caplog.at_level(logging.WARNING, logger="edgerun"):
        assert cache.lookup(key) is None
    (warning,) = warnings_of(caplog)
    assert str(path) in warning
    assert why in warning
    assert not path.exists()
    assert not path.with_suffix(".json").exists()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgerun"):
        assert cache.lookup(key) is None, "still a miss, now a plain one"
    assert warnings_of(caplog) == []
    cache.store(key, engine)
    assert cache.lookup(key) == engine, "rebuilt and stored again"


def test_a_plan_tensorrt_cannot_deserialize_is_a_miss_with_a_warning(
    cache: EngineCache, caplog: pytest.LogCaptureFixture
) -> None:
    key = make_key()
    path = cache.store(key, b"a plan from another TensorRT")

    def deserialize(data: bytes) -> None:
        raise RuntimeError("Serialization assertion stdVersionRead == kSERIALIZATION_VERSION failed")

    with caplog.at_level(logging.WARNING, logger="edgerun"):
        assert cache.lookup(key, deserialize) is None
    (warning,) = warnings_of(caplog)
    assert "cannot deserialize" in warning
    assert "kSERIALIZATION_VERSION" in warning
    assert not path.exists()
    assert not path.with_suffix(".json").exists()


def test_nothing_cached_is_a_silent_miss(cache: EngineCache, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="edgerun"):
        assert cache.lookup(make_key(), lambda data: pytest.fail("check called without an entry")) is None
    assert warnings_of(caplog) == []


# --- atomic writes ------------------------------------------------------------------------------


def test_writes_leave_no_temporary_files(cache: EngineCache) -> None:
    for index in range(3):
        cache.store(make_key(precision=f"p{index}"), b"x" * (index + 1))
    cache.store(make_key(precision="p0"), b"rewritten")
    names = [Path(name).name for name in files_under(cache.root)]
    assert not [n for n in names if n.startswith(".") or n.endswith(".tmp")]
    assert sorted(n.rsplit(".", 1)[1] for n in names) == ["engine"] * 3 + ["json"] * 3


def _failing_replace(monkeypatch: pytest.MonkeyPatch, fail_on: int) -> list[str]:
    """``os.replace`` raising (disk full) on its ``fail_on``-th call; returns the targets it was given."""
    real = os.replace
    calls: list[str] = []

    def replace(src: Any, dst: Any) -> None:
        calls.append(str(dst))
        if len(calls) == fail_on:
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    return calls


def test_a_crash_writing_the_engine_leaves_nothing(cache: EngineCache, monkeypatch: pytest.MonkeyPatch) -> None:
    key = make_key()
    calls = _failing_replace(monkeypatch, fail_on=1)
    with pytest.raises(CacheWriteError, match="No space left") as info:
        cache.store(key, b"engine")
    assert calls == [str(cache.path_for(key))]
    assert info.value.folder == str(cache.root), "a typed error naming the cache folder, not a bare OSError"
    assert "EDGERUN_CACHE_DIR=" in str(info.value)
    monkeypatch.undo()
    assert files_under(cache.root) == []
    assert cache.entries() == []
    assert cache.lookup(key) is None


def test_a_crash_writing_the_manifest_is_still_a_miss_later(
    cache: EngineCache, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key = make_key()
    _failing_replace(monkeypatch, fail_on=2)
    with pytest.raises(OSError, match="No space left"):
        cache.store(key, b"engine")
    monkeypatch.undo()
    assert not [n for n in files_under(cache.root) if n.endswith(".tmp")]
    with caplog.at_level(logging.WARNING, logger="edgerun"):
        assert cache.lookup(key) is None
    assert files_under(cache.root) == []


def test_a_crash_writing_the_manifest_leaves_no_partial_entry(
    cache: EngineCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = make_key()
    _failing_replace(monkeypatch, fail_on=2)
    with pytest.raises(OSError, match="No space left"):
        cache.store(key, b"engine")
    monkeypatch.undo()
    assert files_under(cache.root) == []
    assert cache.entries() == []


# --- a cache folder that cannot be written ------------------------------------------------------


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tempfile.gettempdir() inside this test's folder, so the fallback cache lands there."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_a_read_only_cache_folder_falls_back_to_a_temporary_one(
    tmp_path: Path, private_tmp: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing into the folder fails as a read-only folder makes it fail (injected: root ignores permissions)."""
    root = tmp_path / "read-only"
    root.mkdir()
    real = tempfile.NamedTemporaryFile

    def denied(*args: Any, **kwargs: Any) -> Any:
        if Path(kwargs.get("dir") or ".") == root:
            raise PermissionError(13, "Permission denied", str(root))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", denied)
    try:
        with caplog.at_level(logging.WARNING, logger="edgerun"):
            cache = EngineCache(root)
        assert cache.root.is_relative_to(private_tmp)
        assert str(os.getuid()) in str(cache.root.relative_to(private_tmp)), "per user"
        (warning,) = warnings_of(caplog)
        assert str(root) in warning
        assert "not writable" in warning
        assert str(cache.root) in warning
        cache.store(make_key(), b"engine")
        assert cache.lookup(make_key()) == b"engine"
        assert list(root.iterdir()) == []
    finally:
        monkeypatch.undo()


def test_a_cache_folder_that_cannot_be_made_falls_back_to_a_temporary_one(
    tmp_path: Path, private_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file where the folder should be: mkdir fails even for root."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file")
    with caplog.at_level(logging.WARNING, logger="edgerun"):
        cache = EngineCache(blocker / "engines")
    assert cache.root.is_relative_to(private_tmp)
    assert str(os.getuid()) in str(cache.root.relative_to(private_tmp)), "per user"
    (warning,) = warnings_of(caplog)
    assert str(blocker / "engines") in warning
    assert "not writable" in warning
    assert str(cache.root) in warning
    cache.store(make_key(), b"engine")
    assert cache.lookup(make_key()) == b"engine"
    assert blocker.read_text() == "a file"


def test_a_writable_folder_is_used_as_is_and_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="edgerun"):
        cache = EngineCache(tmp_path / "a" / "b")
    assert cache.root == tmp_path / "a" / "b"
    assert cache.root.is_dir()
    assert warnings_of(caplog) == []
    assert list(cache.root.iterdir()) == [], "the write probe cleans up"


def test_the_default_folder_is_the_user_cache() -> None:
    user_cache = Path(os.environ["EDGERUN_CACHE_DIR"])  # conftest points it at a fresh folder
    assert EngineCache().root == user_cache / "engines"


# --- two processes, one build -------------------------------------------------------------------

BUILDER = """
import contextlib, pathlib, sys, time
from edgerun.trt.cache import EngineCache, EngineKey

root, log, ready, go, me, locked = sys.argv[1:7]
cache = EngineCache(pathlib.Path(root))
key = EngineKey("a" * 64, "b" * 64, "fp16", "10.3.0", "Orin", "8.7", {"x": "1x3:1x3:1x3"}, ())
pathlib.Path(ready).touch()
while not pathlib.Path(go).exists():
    time.sleep(0.002)
with cache.build_lock(key) if locked == "1" else contextlib.nullcontext():
    if cache.lookup(key) is None:
        time.sleep(0.5)  # building
        with open(log, "a") as handle:
            handle.write(me + "\\n")
        cache.store(key, ("engine built by " + me).encode())
        print("built")
    else:
        print("cached")
"""


def race(tmp_path: Path, locked: bool) -> tuple[list[str], list[str], EngineCache]:
    """Two builder processes released at the same moment; their outputs and the build log."""
    root, log, go = tmp_path / "engines", tmp_path / "builds.log", tmp_path / "go"
    log.touch()
    procs = []
    for me in ("first", "second"):
        ready = tmp_path / f"ready-{me}"
        args = [sys.executable, "-c", BUILDER, str(root), str(log), str(ready), str(go), me, "1" if locked else "0"]
        procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + 30
    while not all((tmp_path / f"ready-{me}").exists() for me in ("first", "second")):
        assert time.monotonic() < deadline, "the builders did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.005)
    go.touch()
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr
        results.append(stdout.strip())
    return results, log.read_text().split(), EngineCache(root)


def test_build_lock_lets_one_process_build_and_the_other_find_it_cached(tmp_path: Path) -> None:
    results, builds, cache = race(tmp_path, locked=True)
    assert sorted(results) == ["built", "cached"]
    (builder,) = builds
    assert builder in ("first", "second")
    key = make_key(profile={"x": "1x3:1x3:1x3"}, settings={}, edgerun=edgerun.__version__, precision="fp16")
    assert cache.lookup(key) == f"engine built by {builder}".encode()
    assert len(cache.entries()) == 1


def test_without_the_lock_both_processes_build(tmp_path: Path) -> None:
    """The control: the race above is real, so the lock is what makes it one build."""
    results, builds, _ = race(tmp_path, locked=False)
    assert results == ["built", "built"]
    assert sorted(builds) == ["first", "second"]


# --- entries, verify, clear ---------------------------------------------------------------------


def test_entries_verify_and_clear(cache: EngineCache, caplog: pytest.LogCaptureFixture) -> None:
    good = [make_key(), make_key(precision="fp32"), make_key(source_sha256="f" * 64)]
    bad = [make_key(precision="int8"), make_key(gpu="Xavier")]
    for index, key in enumerate(good + bad):
        cache.store(key, f"engine {index}".encode() * 10)
    cache.path_for(bad[0]).write_bytes(b"engine 3")  # truncated
    cache.path_for(bad[1]).with_suffix(".json").write_text("{not json")

    entries = cache.entries()
    assert [e.path for e in entries] == sorted(cache.path_for(k) for k in good + bad)
    sizes = {e.path: e.size_bytes for e in entries}
    assert sizes[cache.path_for(bad[0])] == len(b"engine 3")
    assert sizes[cache.path_for(good[0])] == len(b"engine 0" * 10)
    manifests = {e.path: e.manifest for e in entries}
    assert manifests[cache.path_for(bad[1])] == {}, "an unreadable manifest lists as empty"
    assert manifests[cache.path_for(good[1])]["key"]["precision"] == "fp32"

    with caplog.at_level(logging.WARNING, logger="edgerun"):
        results = cache.verify()
    assert set(results) == {cache.path_for(k) for k in good + bad}
    for key in good:
        assert results[cache.path_for(key)] is None
        assert cache.path_for(key).exists()
    for key in bad:
        assert results[cache.path_for(key)] is not None
        assert not cache.path_for(key).exists()
        assert not cache.path_for(key).with_suffix(".json").exists()
    assert sorted(e.path for e in cache.entries()) == sorted(cache.path_for(k) for k in good)

    def deserialize(data: bytes) -> None:
        if data.startswith(b"engine 2"):
            raise ValueError("not a plan of this TensorRT")

    rejecting = cache.verify(deserialize)
    assert [p for p, problem in rejecting.items() if problem is not None] == [cache.path_for(good[2])]
    assert len(cache.entries()) == 2

    assert cache.clear() == 2
    assert cache.entries() == []
    assert not list(cache.root.glob("*/*.engine")) + list(cache.root.glob("*/*.json"))
    assert cache.clear() == 0


def test_an_empty_cache_lists_verifies_and_clears_nothing(cache: EngineCache) -> None:
    assert cache.entries() == []
    assert cache.verify() == {}
    assert cache.clear() == 0


def test_verify_removes_an_entry_whose_manifest_belongs_to_another_key(cache: EngineCache) -> None:
    key, other = make_key(), make_key(tensorrt="10.16.1.11")
    cache.store(key, b"engine for 10.3")
    cache.store(other, b"engine for 10.16")
    cache.path_for(key).with_suffix(".json").write_text(cache.path_for(other).with_suffix(".json").read_text())
    results = cache.verify()
    assert results[cache.path_for(other)] is None
    assert results[cache.path_for(key)] is not None
    assert not cache.path_for(key).exists()


@pytest.mark.parametrize("edit", ["extra field", "missing field"])
def test_verify_removes_an_entry_whose_manifest_key_does_not_fit(cache: EngineCache, edit: str) -> None:
    key = make_key()
    path = cache.store(key, b"engine")
    manifest = json.loads(path.with_suffix(".json").read_text())
    if edit == "extra field":
        manifest["key"]["builder_api"] = 2
    else:
        del manifest["key"]["gpu"]
    path.with_suffix(".json").write_text(json.dumps(manifest))
    results = cache.verify()
    assert results[path] is not None
    assert not path.exists()


def test_verify_says_what_was_wrong_with_a_removed_entry(cache: EngineCache) -> None:
    key = make_key()
    path = cache.store(key, b"engine" * 10)
    path.write_bytes(b"engine")
    problem = cache.verify()[path]
    assert problem is not None
    assert "do not match" in problem


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(engine=st.binary(min_size=1, max_size=2048), cut=st.integers(0, 2047))
def test_any_truncation_is_caught(tmp_path: Path, engine: bytes, cut: int) -> None:
    cache = EngineCache(tmp_path / "engines")
    key = make_key()
    path = cache.store(key, engine)
    path.write_bytes(engine[: cut % len(engine)])
    assert cache.lookup(key) is None
    assert not path.exists()


# --- GPU identity, verify on this device, locking, path-likes -----------------------------------


@dataclasses.dataclass
class _Gpu:
    """What `edgerun.trt.cuda.device_info` returns (name, capability, memory, SMs)."""

    name: str
    compute_capability: str
    total_memory: int
    multiprocessors: int


ORIN_NANO_8GB = _Gpu("Orin", "8.7", 7_620_000_000, 8)
ORIN_NANO_4GB = _Gpu("Orin", "8.7", 3_650_000_000, 4)
ORIN_NX_16GB = _Gpu("Orin", "8.7", 15_660_000_000, 8)
ORIN_AGX_64GB = _Gpu("Orin", "8.7", 64_300_000_000, 16)


def key_on(gpu: _Gpu, **changes: Any) -> EngineKey:
    fields = {**{name: getattr(make_key(), name) for name in FIELDS}, **device_fields(gpu), **changes}
    return EngineKey(**fields)


def test_orin_variants_that_share_name_and_capability_get_their_own_engines(cache: EngineCache) -> None:
    boards = [ORIN_NANO_4GB, ORIN_NANO_8GB, ORIN_NX_16GB, ORIN_AGX_64GB]
    assert {(b.name, b.compute_capability) for b in boards} == {("Orin", "8.7")}
    assert device_fields(ORIN_NANO_8GB) == {
        "gpu": "Orin",
        "compute_capability": "8.7",
        "multiprocessors": 8,
        "memory_gib": 7,
    }
    assert len({cache.path_for(key_on(b)) for b in boards}) == len(boards)


def test_verify_judges_only_what_this_device_can_judge(cache: EngineCache, caplog: pytest.LogCaptureFixture) -> None:
    """An engine for another GPU or TensorRT never deserializes here: verify must keep it, not delete it."""
    mine = key_on(ORIN_NANO_8GB)
    mine_broken = key_on(ORIN_NANO_8GB, precision="fp32")
    other_board = key_on(ORIN_AGX_64GB)
    other_tensorrt = key_on(ORIN_NANO_8GB, tensorrt="10.7.0")
    for key in (mine, mine_broken, other_board, other_tensorrt):
        cache.store(key, f"plan {key.precision} {key.tensorrt} {key.multiprocessors}".encode())
    device = {"tensorrt": "10.3.0", **device_fields(ORIN_NANO_8GB)}
    judged: list[str] = []

    def deserialize(data: bytes) -> None:  # as TensorRT: only plans of this GPU and version load
        judged.append(data.decode())
        if data != b"plan fp16 10.3.0 8":
            raise ValueError("the engine plan file is not compatible with this version of TensorRT")

    with caplog.at_level(logging.WARNING, logger="edgerun"):
        results = cache.verify(deserialize, device)
    assert results == {cache.path_for(mine): None, cache.path_for(mine_broken): results[cache.path_for(mine_broken)]}
    assert results[cache.path_for(mine_broken)] is not None
    assert not cache.path_for(mine_broken).exists()
    assert cache.path_for(other_board).exists()
    assert cache.path_for(other_tensorrt).exists()
    assert sorted(judged) == ["plan fp16 10.3.0 8", "plan fp32 10.3.0 8", "plan fp32 10.3.0 8"], "others never judged"
    assert sorted(e.path for e in cache.skipped(device)) == sorted(
        [cache.path_for(other_board), cache.path_for(other_tensorrt)]
    )
    assert cache.lookup(other_board) == b"plan fp16 10.3.0 16"


def test_verify_gives_the_check_the_entry_key(cache: EngineCache) -> None:
    """A version-compatible or DLA engine needs its runtime set up from the key before deserializing."""
    plain = key_on(ORIN_NANO_8GB)
    compatible = key_on(ORIN_NANO_8GB, flags=("VERSION_COMPATIBLE",), settings={"version_compatible": True})
    cache.store(plain, b"plain plan")
    cache.store(compatible, b"lean runtime inside")
    seen: dict[bytes, bool] = {}

    def check_key(key: EngineKey, data: bytes) -> None:
        seen[data] = bool(key.settings.get("version_compatible"))
        if data == b"lean runtime inside" and not seen[data]:
            raise ValueError("host code not allowed")

    results = cache.verify(device={"tensorrt": "10.3.0", **device_fields(ORIN_NANO_8GB)}, check_key=check_key)
    assert set(results.values()) == {None}
    assert seen == {b"plain plan": False, b"lean runtime inside": True}


def test_verify_does_not_remove_an_entry_a_builder_rewrote_meanwhile(cache: EngineCache) -> None:
    """The removal is decided again under the entry's lock: a builder that replaced the entry wins."""
    key = make_key()
    path = cache.store(key, b"stale engine")

    def check(data: bytes) -> None:
        if data == b"stale engine":
            cache.store(key, b"rebuilt engine")  # another process rebuilds it while verify looks
            raise ValueError("not a plan of this TensorRT")

    assert cache.verify(check) == {path: None}
    assert cache.lookup(key) == b"rebuilt engine"


def test_lookup_of_a_bad_entry_waits_for_its_builder_instead_of_deleting(cache: EngineCache) -> None:
    import threading

    key = make_key()
    path = cache.store(key, b"old engine" * 10)
    path.write_bytes(b"torn")
    found: list[bytes | None] = []
    with cache.build_lock(key):
        reader = threading.Thread(target=lambda: found.append(cache.lookup(key)))
        reader.start()
        time.sleep(0.3)
        assert reader.is_alive(), "the lookup waits for the lock before removing anything"
        cache.store(key, b"fresh engine")
    reader.join(10)
    assert found == [b"fresh engine"]
    assert cache.lookup(key) == b"fresh engine"


def test_lookup_loaded_deserializes_once(cache: EngineCache) -> None:
    key = make_key()
    cache.store(key, b"plan")
    made: list[bytes] = []

    def load(data: bytes) -> dict[str, bytes]:
        made.append(data)
        return {"engine": data}

    assert cache.lookup_loaded(key, load) == (b"plan", {"engine": b"plan"})
    assert made == [b"plan"]
    assert cache.lookup_loaded(make_key(precision="int8"), load) is None


@pytest.mark.parametrize("kind", [str, Path, os.fsencode])
def test_the_cache_folder_may_be_any_path_like(tmp_path: Path, kind: Any) -> None:
    root = tmp_path / "as-given"
    cache = EngineCache(kind(str(root)) if kind is not os.fsencode else str(root))
    assert cache.root == root
    assert cache.lookup(make_key()) is None
    cache.store(make_key(), b"engine")
    assert (root / make_key().source_sha256[:16]).is_dir()
