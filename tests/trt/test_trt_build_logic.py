"""The TensorRT build logic without TensorRT: builder flags by name, workspace, typing, and the api helpers
run against stand-in modules built from the real API surfaces of 10.3, 10.16 and 11.4 (tests/fixtures/trt-api).

The dumps hold names only; enum numbers in the stand-ins are arbitrary (and shuffled by hypothesis), which
is the point: edgerun must use TensorRT's flags by name and take their numbers from the module.
"""

from __future__ import annotations

import enum
import importlib
import itertools
import json
import logging
import sys
import types
from collections.abc import Iterator
from functools import cache
from importlib import util
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerun.errors import BackendError, BackendUnavailableError, UnsupportedModelError, UnsupportedPrecisionError
from edgerun.trt import api
from edgerun.trt.build import LOW_MEMORY_WORKSPACE_MB, BuildSettings, build_engine, timing_cache_file
from edgerun.trt.profiles import Profile, ShapeRange

REPO = Path(__file__).resolve().parents[2]
SURFACES = REPO / "tests" / "fixtures" / "trt-api"
VERSIONS = {"10.3": "trt-10.3.0.json", "10.16": "trt-10.16.1.11.json", "11.4": "trt-11.4.0.106.json"}
SURFACES_FOR_MAJOR = {10: ("10.3", "10.16"), 11: ("11.4",)}
INSTALL_HINT = "(JetPack: apt install python3-libnvinfer; desktop: pip install 'edgerun[tensorrt]')"

no_tensorrt = pytest.mark.skipif(util.find_spec("tensorrt") is not None, reason="tensorrt is importable here")
PROFILE = Profile((("x", ShapeRange((1, 3, 8, 8), (1, 3, 8, 8), (4, 3, 8, 8))),))


@cache
def surface(version: str) -> dict[str, Any]:
    path = SURFACES / VERSIONS[version]
    if not path.is_file():
        pytest.fail(f"API surface {path} is missing (see tests/fixtures/trt-api/README.md)")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def stand_in(version: str, numbers: dict[str, list[int]] | None = None) -> types.SimpleNamespace:
    """A ``tensorrt`` look-alike: every top-level enum of the dump with its real member names.

    ``numbers[enum]`` gives the members' values in dump order; by default their index.
    """
    data = surface(version)
    enums = {}
    for name, members in data["enums"].items():
        if "." in name:
            continue
        values = (numbers or {}).get(name, list(range(len(members))))
        enums[name] = enum.IntEnum(name, dict(zip(members, values, strict=True)))
    return types.SimpleNamespace(__version__=data["version"], **enums)


def settings_for(precision: str = "fp16", **changes: Any) -> BuildSettings:
    return BuildSettings(precision=precision, profile=PROFILE, **changes)


# --- flag_names ---------------------------------------------------------------------------------

COMBINATIONS = list(itertools.product((10, 11), ("fp32", "fp16", "int8"), (None, 0, 1), (False, True)))


@pytest.mark.parametrize(("major", "precision", "dla_core", "version_compatible"), COMBINATIONS)
def test_flag_names(major: int, precision: str, dla_core: int | None, version_compatible: bool) -> None:
    flags = settings_for(precision, dla_core=dla_core, version_compatible=version_compatible).flag_names(major)
    assert list(flags) == sorted(set(flags)), "sorted, each once"
    assert ("GPU_FALLBACK" in flags) == (dla_core is not None)
    assert ("FP16" in flags) == (dla_core is not None and major == 10 and precision == "fp16")
    assert ("VERSION_COMPATIBLE" in flags) == version_compatible
    assert "INT8" not in flags, "INT8 comes from Q/DQ models, never from a flag"
    assert set(flags) <= {"GPU_FALLBACK", "FP16", "VERSION_COMPATIBLE"}
    if major >= 11:
        assert not {"FP16", "INT8", "BF16"} & set(flags), "TensorRT 11 has no precision flags"


def test_flag_names_examples() -> None:
    assert settings_for("fp16").flag_names(10) == ()
    assert settings_for("fp16", dla_core=0).flag_names(10) == ("FP16", "GPU_FALLBACK")
    assert settings_for("fp16", dla_core=0).flag_names(11) == ("GPU_FALLBACK",)
    assert settings_for("fp32", dla_core=0).flag_names(10) == ("GPU_FALLBACK",)
    assert settings_for("fp16", version_compatible=True).flag_names(11) == ("VERSION_COMPATIBLE",)
    assert settings_for("fp16", dla_core=1, version_compatible=True).flag_names(10) == (
        "FP16",
        "GPU_FALLBACK",
        "VERSION_COMPATIBLE",
    )


@pytest.mark.parametrize("major", sorted(SURFACES_FOR_MAJOR))
def test_every_flag_name_exists_in_the_builder_flags_of_that_version(major: int) -> None:
    names = {
        name
        for _, precision, dla_core, version_compatible in COMBINATIONS
        for name in settings_for(precision, dla_core=dla_core, version_compatible=version_compatible).flag_names(major)
    }
    expected = {"GPU_FALLBACK", "VERSION_COMPATIBLE"} | ({"FP16"} if major == 10 else set())
    assert names == expected
    for version in SURFACES_FOR_MAJOR[major]:
        builder_flags = set(surface(version)["enums"]["BuilderFlag"])
        assert names <= builder_flags, f"TensorRT {version} lacks {sorted(names - builder_flags)}"


def test_the_flags_11_removed_are_really_gone_from_its_surface() -> None:
    """The reason flag_names differs by major: if 11.4 still had FP16 the split would be pointless."""
    eleven = set(surface("11.4")["enums"]["BuilderFlag"])
    assert not {"FP16", "INT8", "BF16"} & eleven
    assert {"FP16", "INT8"} <= set(surface("10.3")["enums"]["BuilderFlag"])


# --- workspace, typing, key ---------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(workspace=st.one_of(st.none(), st.integers(1, 1 << 20)), low_memory=st.booleans())
def test_effective_workspace(workspace: int | None, low_memory: bool) -> None:
    effective = settings_for(workspace_mb=workspace, low_memory=low_memory).effective_workspace_mb()
    if not low_memory:
        assert effective == workspace
    elif workspace is None:
        assert effective == LOW_MEMORY_WORKSPACE_MB == 256
    else:
        assert effective == min(workspace, 256)
        assert effective is not None
        assert effective <= LOW_MEMORY_WORKSPACE_MB


@pytest.mark.parametrize(
    ("major", "dla_core", "expected"), [(10, None, True), (10, 0, False), (11, None, True), (11, 0, True)]
)
def test_strongly_typed(major: int, dla_core: int | None, expected: bool) -> None:
    for precision in ("fp32", "fp16", "int8"):
        assert settings_for(precision, dla_core=dla_core).strongly_typed(major) is expected


def test_key_holds_the_effective_settings() -> None:
    key = settings_for(workspace_mb=2048, opt_level=3, dla_core=0, low_memory=True).key()
    assert key == {"workspace_mb": 256, "opt_level": 3, "dla_core": 0, "low_memory": True, "version_compatible": False}
    assert settings_for().key() != settings_for(version_compatible=True).key()
    assert json.loads(json.dumps(key)) == key


# --- api against the stand-ins ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("10.3.0", (10, 3, 0)),
        ("10.3.0.30", (10, 3, 0, 30)),
        ("10.16.1.11", (10, 16, 1, 11)),
        ("11.4.0.106", (11, 4, 0, 106)),
        ("11", (11,)),
    ],
)
def test_version_tuple(version: str, expected: tuple[int, ...]) -> None:
    assert api.version_tuple(types.SimpleNamespace(__version__=version)) == expected


@pytest.mark.parametrize("version", list(VERSIONS))
def test_the_stand_ins_carry_the_dumped_versions(version: str) -> None:
    trt = stand_in(version)
    assert trt.__version__.startswith(version + ".")
    assert api.version_tuple(trt)[:2] == tuple(int(p) for p in version.split("."))


@pytest.mark.parametrize("version", list(VERSIONS))
def test_network_flags(version: str) -> None:
    trt = stand_in(version)
    if version.startswith("10."):
        assert not api.always_strongly_typed(trt)
        assert api.network_flags(trt, True) == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    else:
        assert api.always_strongly_typed(trt)
        assert not hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
        assert api.network_flags(trt, True) == 0
    assert api.network_flags(trt, False) == 0


@settings(max_examples=30, deadline=None)
@given(version=st.sampled_from(["10.3", "10.16"]), data=st.data())
def test_network_flags_take_the_number_from_the_module(version: str, data: st.DataObject) -> None:
    members = surface(version)["enums"]["NetworkDefinitionCreationFlag"]
    numbers = data.draw(st.permutations(range(len(members))))
    trt = stand_in(version, {"NetworkDefinitionCreationFlag": list(numbers)})
    strongly_typed = numbers[members.index("STRONGLY_TYPED")]
    assert api.network_flags(trt, True) == 1 << strongly_typed


@pytest.mark.parametrize("version", list(VERSIONS))
def test_builder_flag_finds_every_flag_edgerun_asks_for(version: str) -> None:
    trt = stand_in(version)
    major = api.version_tuple(trt)[0]
    for _, precision, dla_core, version_compatible in COMBINATIONS:
        for name in settings_for(precision, dla_core=dla_core, version_compatible=version_compatible).flag_names(major):
            flag = api.builder_flag(trt, name)
            assert flag is trt.BuilderFlag[name]
            assert flag.name == name


@pytest.mark.parametrize("name", ["FP16", "INT8", "BF16", "OBEY_PRECISION_CONSTRAINTS"])
def test_builder_flag_names_the_version_that_lacks_it(name: str) -> None:
    assert api.builder_flag(stand_in("10.3"), name).name == name
    with pytest.raises(BackendUnavailableError, match=rf"^TensorRT 11\.4\.0\.106 has no builder flag {name}$"):
        api.builder_flag(stand_in("11.4"), name)


def test_builder_flag_knows_the_flags_only_newer_10x_has() -> None:
    assert api.builder_flag(stand_in("10.16"), "STRICT_NANS").name == "STRICT_NANS"
    with pytest.raises(BackendUnavailableError, match=r"^TensorRT 10\.3\.0 has no builder flag STRICT_NANS$"):
        api.builder_flag(stand_in("10.3"), "STRICT_NANS")


# --- without TensorRT ---------------------------------------------------------------------------


@no_tensorrt
def test_tensorrt_absent_says_how_to_install_it() -> None:
    with pytest.raises(BackendUnavailableError) as info:
        api.tensorrt()
    assert str(info.value) == f"the tensorrt Python package is not importable {INSTALL_HINT}"


@no_tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_engine_without_tensorrt_raises_with_the_install_hint(tmp_path: Path, precision: str) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not read")
    with pytest.raises(BackendUnavailableError, match="tensorrt Python package is not importable") as info:
        build_engine(model, settings_for(precision, dla_core=0), progress=lambda *a: None)
    assert INSTALL_HINT in str(info.value)


@pytest.fixture
def fake_tensorrt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path where a test writes its own ``tensorrt`` package; forgotten afterwards."""
    folder = tmp_path / "site"
    (folder / "tensorrt").mkdir(parents=True)
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop("tensorrt", None)
    importlib.invalidate_caches()
    yield folder / "tensorrt" / "__init__.py"
    sys.modules.pop("tensorrt", None)
    importlib.invalidate_caches()


@no_tensorrt
@pytest.mark.parametrize("version", ["8.6.1", "9.3.0", "12.0.0"])
def test_an_unsupported_tensorrt_is_refused_by_version(fake_tensorrt: Path, version: str) -> None:
    fake_tensorrt.write_text(f"__version__ = {version!r}\n")
    with pytest.raises(BackendUnavailableError) as info:
        api.tensorrt()
    assert str(info.value) == f"TensorRT {version} is not supported (supported: 10.x, 11.x)"


@no_tensorrt
def test_a_broken_tensorrt_install_is_unavailable_not_a_crash(fake_tensorrt: Path) -> None:
    fake_tensorrt.write_text("raise OSError('libnvinfer.so.10: cannot open shared object file')\n")
    with pytest.raises(BackendUnavailableError, match=r"installed but cannot be imported: libnvinfer\.so\.10"):
        api.tensorrt()
    assert "tensorrt" not in sys.modules


@no_tensorrt
@pytest.mark.parametrize("version", list(VERSIONS))
def test_a_supported_tensorrt_built_from_the_dump_is_accepted(fake_tensorrt: Path, version: str) -> None:
    data = surface(version)
    lines = ["import enum", f"__version__ = {data['version']!r}"]
    for name in ("BuilderFlag", "NetworkDefinitionCreationFlag", "DeviceType"):
        members = dict(zip(data["enums"][name], itertools.count()))
        lines.append(f"{name} = enum.IntEnum({name!r}, {members!r})")
    fake_tensorrt.write_text("\n".join(lines) + "\n")
    trt = api.tensorrt()
    assert trt.__version__ == data["version"]
    assert api.network_flags(trt, True) == (
        0 if version == "11.4" else 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    )


@no_tensorrt
@pytest.mark.parametrize("version", ["10.3.0", "10.16.1.11"])
def test_int8_on_dla_with_10x_is_refused_before_building(fake_tensorrt: Path, version: str) -> None:
    fake_tensorrt.write_text(f"__version__ = {version!r}\n")  # build_engine must stop before using anything else
    with pytest.raises(UnsupportedPrecisionError, match=r"INT8 on DLA with TensorRT 10\.x"):
        build_engine(Path("model.onnx"), settings_for("int8", dla_core=0))


# --- a TensorRT stand-in limited to the dumped names: runtime, logger, timing cache, DLA ----------


class FakeTensorRT:
    """Records what happens in one fake ``tensorrt``: the logger TensorRT kept, plans, timing caches."""

    def __init__(self) -> None:
        self.first_logger: Any = None
        self.parse_errors: list[str] = []
        self.build_error: str | None = None
        self.accepted_cache: bytes = b""
        """Timing cache bytes this 'GPU' accepts (besides empty ones)."""
        self.saved_cache_bytes = b"timings of this gpu"
        self.parser_flags: list[Any] = []
        self.config: Any = None


def _strict(surface_data: dict[str, Any], class_name: str, cls: type) -> type:
    """``cls`` limited to the members TensorRT's ``class_name`` has in the dump (for reading and setting)."""
    members = set(surface_data["classes"][class_name])
    defined = {n for n in vars(cls) if not n.startswith("_")}
    assert defined <= members, f"the stand-in {class_name} defines names TensorRT lacks: {defined - members}"

    def set_member(self: Any, name: str, value: Any) -> None:
        if not name.startswith("_") and name not in members:
            raise AttributeError(f"TensorRT's {class_name} has no attribute {name!r}")
        object.__setattr__(self, name, value)

    def unset_member(self: Any, name: str) -> Any:
        raise AttributeError(f"{class_name}.{name} is not set in the stand-in")

    return type(class_name, (cls,), {"__setattr__": set_member, "__getattr__": unset_member})


def fake_module(version: str, fake: FakeTensorRT) -> types.SimpleNamespace:
    """A ``tensorrt`` stand-in: the dump's enums plus the classes a build and a load touch."""
    data = surface(version)
    trt = stand_in(version)
    severity = enum.IntEnum("Severity", dict(zip(data["classes"]["ILogger"], itertools.count())))

    class ILogger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = (
            severity["INTERNAL_ERROR"], severity["ERROR"], severity["WARNING"], severity["INFO"], severity["VERBOSE"]
        )  # fmt: skip

        def __init__(self) -> None:
            pass

    def keep(logger: Any) -> Any:
        """TensorRT keeps the first logger it is given, process-wide; later ones are ignored."""
        if fake.first_logger is None:
            fake.first_logger = logger
        return fake.first_logger

    class Runtime:
        def __init__(self, logger: Any) -> None:
            self._logger = keep(logger)

        def deserialize_cuda_engine(self, data: bytes) -> Any:
            if data.startswith(b"lean") and not getattr(self, "_host_code", False):
                self._logger.log(ILogger.ERROR, "engine has host code, but the runtime does not allow it")
                return None
            return {"plan": data, "dla_core": getattr(self, "_dla", -1)}

    def runtime_setattr(self: Any, name: str, value: Any) -> None:
        members = set(data["classes"]["Runtime"])
        if name not in members and not name.startswith("_"):
            raise AttributeError(f"TensorRT's Runtime has no attribute {name!r}")
        if name == "engine_host_code_allowed":
            object.__setattr__(self, "_host_code", bool(value))
        elif name == "DLA_core":
            object.__setattr__(self, "_dla", int(value))
        else:
            object.__setattr__(self, name, value)

    Runtime.__setattr__ = runtime_setattr  # type: ignore[assignment,method-assign]

    class ITimingCache:
        def __init__(self, data: bytes) -> None:
            self._data = data

        def serialize(self) -> bytes:
            return fake.saved_cache_bytes

    class IOptimizationProfile:
        def __init__(self) -> None:
            self._shapes: dict[str, Any] = {}

        def set_shape(self, name: str, low: Any, opt: Any, high: Any) -> None:
            self._shapes[name] = (low, opt, high)

    class IBuilderConfig:
        def __init__(self) -> None:
            self._timing_cache: Any = None
            self._flags: list[Any] = []
            fake.config = self

        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            self._pool = (pool, size)

        def set_flag(self, flag: Any) -> None:
            self._flags.append(flag)

        def add_optimization_profile(self, profile: Any) -> int:
            return 0

        def create_timing_cache(self, data: bytes) -> Any:
            return ITimingCache(bytes(data))

        def set_timing_cache(self, cache: Any, ignore_mismatch: bool) -> bool:
            if cache._data not in (b"", fake.accepted_cache) and not ignore_mismatch:
                return False  # made on another device: TensorRT refuses it
            self._timing_cache = cache
            return True

        def get_timing_cache(self) -> Any:
            return self._timing_cache

    class INetworkDefinition:
        pass

    class Builder:
        num_DLA_cores = 2  # noqa: N815 - TensorRT's name

        def __init__(self, logger: Any) -> None:
            self._logger = keep(logger)

        def create_network(self, flags: int) -> Any:
            return strict_network()

        def create_builder_config(self) -> Any:
            return strict_config()

        def create_optimization_profile(self) -> Any:
            return strict_profile()

        def build_serialized_network(self, network: Any, config: Any) -> Any:
            if fake.build_error is not None:
                self._logger.log(ILogger.ERROR, fake.build_error)
                return None
            return b"plan"

    class ParserError:
        def __init__(self, text: str) -> None:
            self._text = text

        def node_name(self) -> str:
            return "conv"

        def node_operator(self) -> str:
            return "Conv"

        def desc(self) -> str:
            return self._text

    class OnnxParser:
        def __init__(self, network: Any, logger: Any) -> None:
            self._logger = keep(logger)

        def set_flag(self, flag: Any) -> None:
            fake.parser_flags.append(flag)

        def parse_from_file(self, path: str) -> bool:
            return not fake.parse_errors

        @property
        def num_errors(self) -> int:
            return len(fake.parse_errors)

        def get_error(self, index: int) -> Any:
            return ParserError(fake.parse_errors[index])

    strict_network = _strict(data, "INetworkDefinition", INetworkDefinition)
    strict_config = _strict(data, "IBuilderConfig", IBuilderConfig)
    strict_profile = _strict(data, "IOptimizationProfile", IOptimizationProfile)
    for name, cls in [
        ("ILogger", ILogger),
        ("Runtime", Runtime),
        ("Builder", _strict(data, "Builder", Builder)),
        ("OnnxParser", _strict(data, "OnnxParser", OnnxParser)),
    ]:
        setattr(trt, name, cls)
    return trt


@pytest.fixture
def fake() -> FakeTensorRT:
    return FakeTensorRT()


def use(monkeypatch: pytest.MonkeyPatch, version: str, fake: FakeTensorRT) -> Any:
    trt = fake_module(version, fake)
    monkeypatch.setattr(api, "tensorrt", lambda: trt)
    return trt


STATIC = Profile((("x", ShapeRange((1, 3, 8, 8), (1, 3, 8, 8), (1, 3, 8, 8))),))


@pytest.mark.parametrize("version", list(VERSIONS))
@pytest.mark.parametrize("version_compatible", [False, True])
@pytest.mark.parametrize("dla_core", [None, 1])
def test_make_runtime_loads_what_the_settings_built(
    fake: FakeTensorRT, version: str, version_compatible: bool, dla_core: int | None
) -> None:
    """A version-compatible plan (lean runtime inside) loads only where host code is allowed."""
    trt = fake_module(version, fake)
    runtime = api.make_runtime(trt, api.make_logger(trt), version_compatible=version_compatible, dla_core=dla_core)
    lean = runtime.deserialize_cuda_engine(b"lean runtime plan")
    assert (lean is not None) is version_compatible
    engine = runtime.deserialize_cuda_engine(b"plan")
    assert engine["dla_core"] == (-1 if dla_core is None else dla_core)


@pytest.mark.parametrize("version", list(VERSIONS))
def test_one_logger_per_process_so_build_errors_reach_the_message(
    fake: FakeTensorRT, monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    """TensorRT keeps the first logger: a Runtime made earlier must not swallow the builder's errors."""
    trt = use(monkeypatch, version, fake)
    api.make_runtime(trt, api.make_logger(trt), version_compatible=False, dla_core=None)  # a load came first
    assert api.make_logger(trt) is fake.first_logger
    fake.build_error = "Error Code 4: Internal Error (out of memory building conv)"
    with pytest.raises(BackendError, match=r"could not build an engine for m\.onnx: Error Code 4: .*out of memory"):
        build_engine(Path("m.onnx"), settings_for())
    fake.build_error = None
    with api.collect_errors(trt) as errors:
        assert build_engine(Path("m.onnx"), settings_for()) == b"plan"
    assert errors.messages == [], "errors are taken per build: the earlier failure is not carried over"


def test_collect_errors_holds_only_the_errors_of_its_block(fake: FakeTensorRT) -> None:
    trt = fake_module("11.4", fake)
    logger = api.make_logger(trt)
    logger.log(trt.ILogger.ERROR, "before")
    with api.collect_errors(trt) as outer:
        logger.log(trt.ILogger.WARNING, "a warning")
        logger.log(trt.ILogger.ERROR, "one")
        with api.collect_errors(trt) as inner:
            logger.log(trt.ILogger.INTERNAL_ERROR, "two")
    logger.log(trt.ILogger.ERROR, "after")
    assert outer.messages == ["one", "two"]
    assert inner.messages == ["two"]
    assert inner.detail() == "two"
    assert api.BuildErrors().detail() == "see the log with --debug"


@pytest.mark.parametrize("version", list(VERSIONS))
@pytest.mark.parametrize("as_type", [str, Path])
def test_a_timing_cache_from_another_gpu_is_replaced_not_a_crash(
    fake: FakeTensorRT,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    version: str,
    as_type: Any,
) -> None:
    trt = use(monkeypatch, version, fake)
    device = {"gpu": "Orin", "compute_capability": "8.7", "multiprocessors": 8, "memory_gib": 8}
    settings = settings_for(timing_cache=as_type(str(tmp_path / "timing.cache")))
    assert isinstance(settings.timing_cache, Path), "a str option becomes a Path"
    path = timing_cache_file(tmp_path / "timing.cache", trt.__version__, device)
    path.write_bytes(b"timings of another gpu")
    with caplog.at_level(logging.WARNING, logger="edgerun"):
        assert build_engine(Path("m.onnx"), settings, device=device) == b"plan"
    assert any("another GPU or TensorRT version" in r.getMessage() for r in caplog.records)
    assert fake.config.get_timing_cache() is not None
    assert path.read_bytes() == b"timings of this gpu", "the fresh cache replaced the foreign one"
    fake.accepted_cache = path.read_bytes()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgerun"):
        assert build_engine(Path("m.onnx"), settings, device=device) == b"plan"
    assert not caplog.records, "its own cache is used without a word"
    assert fake.config.get_timing_cache()._data == b"timings of this gpu"


def test_timing_cache_files_are_per_tensorrt_version_and_gpu(tmp_path: Path) -> None:
    nano = {"gpu": "Orin", "compute_capability": "8.7", "multiprocessors": 8, "memory_gib": 8}
    agx = {**nano, "multiprocessors": 16, "memory_gib": 64}
    base = tmp_path / "timing.cache"
    names = {
        timing_cache_file(base, "10.3.0", nano),
        timing_cache_file(base, "10.3.0", agx),
        timing_cache_file(base, "10.7.0", nano),
        timing_cache_file(str(base), "10.3.0", None),
    }
    assert len(names) == 4
    assert all(p.parent == tmp_path and p.suffix == ".cache" for p in names)
    assert timing_cache_file(base, "10.3.0", nano) == timing_cache_file(str(base), "10.3.0", dict(nano))
    assert timing_cache_file(base, "10.3.0", nano).name.startswith("timing-trt10.3.0-orin-")
    inside = timing_cache_file(tmp_path, "11.4.0.106", nano)
    assert inside.parent == tmp_path
    assert inside.name.startswith("timing-trt11.4.0.106-orin-")


def test_parser_errors_name_the_nodes(fake: FakeTensorRT, monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, "11.4", fake)
    fake.parse_errors = ["DequantizeLinear input must have type FP8, FP4, Int4, or Int8"]
    with pytest.raises(UnsupportedModelError, match=r"node 'conv' \(Conv\): DequantizeLinear input must"):
        build_engine(Path("m.onnx"), settings_for())


@pytest.mark.parametrize("version", list(VERSIONS))
def test_dla_needs_a_static_profile(fake: FakeTensorRT, monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    trt = use(monkeypatch, version, fake)
    dynamic = settings_for(dla_core=0)
    assert dynamic.dla_problem() is not None
    assert "static shape profile" in str(dynamic.dla_problem())
    with pytest.raises(UnsupportedModelError, match=r"static shape profile .* x 1x3x8x8:1x3x8x8:4x3x8x8"):
        build_engine(Path("m.onnx"), dynamic)
    assert fake.config is None, "refused before building"
    static = BuildSettings(precision="fp16", profile=STATIC, dla_core=1)
    assert static.dla_problem() is None
    assert settings_for().dla_problem() is None
    assert build_engine(Path("m.onnx"), static) == b"plan"
    assert fake.config.DLA_core == 1
    assert fake.config.default_device_type == trt.DeviceType.DLA
    has_adjust = "ADJUST_FOR_DLA" in surface(version)["enums"]["OnnxParserFlag"]
    assert fake.parser_flags == ([trt.OnnxParserFlag.ADJUST_FOR_DLA] if has_adjust else [])
    assert has_adjust == (version != "10.3")


@pytest.mark.parametrize("version", list(VERSIONS))
def test_cache_verify_loads_each_engine_as_its_key_says(
    fake: FakeTensorRT, monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    """`edgerun cache verify` must allow host code for a version-compatible entry, or it deletes a good engine."""
    from edgerun.cli.trt import _deserializer
    from edgerun.trt import cuda
    from edgerun.trt.cache import EngineKey

    trt = use(monkeypatch, version, fake)
    gpu = types.SimpleNamespace(name="Orin", compute_capability="8.7", total_memory=16 * 2**30, multiprocessors=8)
    monkeypatch.setattr(cuda, "device_info", lambda index=0: gpu)
    found = _deserializer()
    assert found is not None
    check_key, device = found
    assert device == {
        "tensorrt": trt.__version__,
        "gpu": "Orin",
        "compute_capability": "8.7",
        "multiprocessors": 8,
        "memory_gib": 16,
    }

    def key(version_compatible: bool) -> EngineKey:
        return EngineKey(
            "a", "b", "fp16", trt.__version__, "Orin", "8.7", {}, (), {"version_compatible": version_compatible}
        )

    check_key(key(True), b"lean runtime plan")
    check_key(key(False), b"plan")
    with pytest.raises(ValueError, match="host code"):
        check_key(key(False), b"lean runtime plan")
