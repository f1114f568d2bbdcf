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

from edgerun.errors import BackendUnavailableError, UnsupportedPrecisionError
from edgerun.trt import api
from edgerun.trt.build import LOW_MEMORY_WORKSPACE_MB, BuildSettings, build_engine
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
