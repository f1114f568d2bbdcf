"""Engine build recipes (edgerun.trt.recipes): every engines/*.toml parses and plans a profile for its
bundled model; bad recipes raise ConfigError naming the file; relative paths follow the recipe."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from edgerun import models
from edgerun.errors import ConfigError
from edgerun.runtime.modelfile import ModelFile
from edgerun.trt import entry as backend
from edgerun.trt.profiles import Profile, parse_batch_range, parse_shape_range, plan_profile
from edgerun.trt.recipes import PRECISIONS, read_recipe

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "engines").glob("*.toml"))

# What engines/README.md's table promises for each recipe.
EXPECTED = {
    "ppocr-cls-fp16.toml": ("ppocr-cls", "fp16", {"x": "1x3x48x192:8x3x48x192:16x3x48x192"}),
    "ppocr-det-orin-dla-lowmem.toml": ("ppocr-det", "fp16", {"x": "1x3x480x480:1x3x480x480:1x3x480x480"}),
    "ppocr-det-orin-fp16.toml": ("ppocr-det", "fp16", {"x": "1x3x480x480:1x3x480x480:4x3x480x480"}),
    "ppocr-det-orin-int8.toml": ("ppocr-det", "int8", {"x": "1x3x480x480:1x3x480x480:4x3x480x480"}),
}


def planned(options: dict[str, object], model: str) -> Profile:
    """The profile the TensorRT backend would build for these load options (as backend._profile does)."""
    batch = options.get("batch")
    shapes = options.get("shapes")
    assert shapes is None or isinstance(shapes, dict)
    return plan_profile(
        ModelFile.open(models.path(model)).inputs,
        batch=parse_batch_range(str(batch)) if batch is not None else None,
        shapes=dict(parse_shape_range(f"{k}={v}") for k, v in shapes.items()) if shapes else None,
        typical=models.card(model).input_shapes,
    )


def test_the_recipes_are_there() -> None:
    assert {p.name for p in RECIPES} == set(EXPECTED)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_recipe_parses_and_plans_a_profile_for_its_model(path: Path) -> None:
    recipe = read_recipe(path)
    model, precision, profile = EXPECTED[path.name]
    assert recipe.path == path
    assert recipe.model == model
    assert recipe.model in models.names()
    assert recipe.precision == precision in PRECISIONS
    assert recipe.target, "each recipe says where it was meant to run"
    options = recipe.load_options()
    assert set(options) <= set(backend.OPTIONS) | {"calibration"}, "load() would reject an option"
    assert planned(options, recipe.model).key() == profile


def test_the_int8_recipe_calibrates_on_the_repositorys_photos() -> None:
    recipe = read_recipe(REPO / "engines" / "ppocr-det-orin-int8.toml")
    assert recipe.calibration == (REPO / "calibration" / "photos").resolve()
    assert recipe.calibration.is_dir()
    assert any(recipe.calibration.iterdir())
    assert recipe.load_options()["calibration"] == str(recipe.calibration)


def test_the_dla_recipe_asks_for_core_0_and_a_low_memory_build() -> None:
    recipe = read_recipe(REPO / "engines" / "ppocr-det-orin-dla-lowmem.toml")
    assert recipe.load_options() == {"batch": "1", "dla_core": 0, "low_memory": True}


# --- bad recipes --------------------------------------------------------------------------------

GOOD = 'model = "ppocr-det"\nprecision = "fp16"\n'


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (GOOD + 'bacth = "1:1:4"\n', "unknown recipe keys bacth"),
        (GOOD + "[builder]\nworkspace_mb = 1\n", "unknown recipe keys builder"),
        ('precision = "fp16"\n', "recipe needs 'model'"),
        ('model = "ppocr-det"\n', "recipe needs 'precision'"),
        ('model = "ppocr-det"\nprecision = "fp64"\n', "precision 'fp64' is not one of fp32, fp16, int8"),
        ('model = "ppocr-det"\nprecision = "FP16"\n', "precision 'FP16' is not one of"),
        ('model = "ppocr-det"\nprecision = "int8"\n', "an int8 recipe needs 'calibration'"),
        (GOOD + 'batch = "1:1:4"\n[shapes]\nx = "1x3x480x480"\n', "give 'batch' or 'shapes', not both"),
        (GOOD + "workspace_mb = -1\n", "'workspace_mb' must be an integer >= 1, got -1"),
        (GOOD + "opt_level = -3\n", "'opt_level' must be an integer >= 0 and <= 5, got -3"),
        (GOOD + "dla_core = -1\n", "'dla_core' must be an integer >= 0, got -1"),
        (GOOD + 'dla_core = "0"\n', "'dla_core' must be an integer >= 0, got '0'"),
        (GOOD + "workspace_mb = 1.5\n", "'workspace_mb' must be an integer >="),
        (GOOD + "dla_core = true\n", "'dla_core' must be an integer >= 0, got True"),
        ('model = "ppocr-det"\nprecision = \n', "recipe is not valid TOML"),
        ('model = "ppocr-det"\nmodel = "ppocr-cls"\nprecision = "fp16"\n', "recipe is not valid TOML"),
        ("[shapes\n", "recipe is not valid TOML"),
    ],
)
def test_bad_recipes_raise_config_error_naming_the_file(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_recipe(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert why in message


def test_a_missing_recipe_raises_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="cannot read recipe") as info:
        read_recipe(path)
    assert str(info.value).startswith(f"{path}: ")


def test_a_folder_as_recipe_raises_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read recipe") as info:
        read_recipe(tmp_path)
    assert str(info.value).startswith(f"{tmp_path}: ")


def test_an_unreadable_recipe_raises_config_error_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read fails as a file without read permission makes it fail (injected: root ignores permissions)."""
    path = tmp_path / "secret.toml"
    path.write_text(GOOD)
    real = Path.read_text

    def denied(self: Path, *args: Any, **kwargs: Any) -> str:
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(ConfigError, match="cannot read recipe: Permission denied") as info:
        read_recipe(path)
    assert str(info.value).startswith(f"{path}: ")


def test_a_recipe_that_is_not_utf8_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(GOOD.encode() + 'target = "Jetson Orin, caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"not UTF-8|not valid TOML|cannot read") as info:
        read_recipe(path)
    assert str(info.value).startswith(f"{path}: ")


@pytest.mark.parametrize("key", ["low_memory", "version_compatible", "sparse_weights"])
def test_a_boolean_given_as_a_string_is_refused(tmp_path: Path, key: str) -> None:
    path = tmp_path / "r.toml"
    path.write_text(GOOD + f'{key} = "false"\n')
    with pytest.raises(ConfigError, match=key):
        read_recipe(path)


@pytest.mark.parametrize("extra", ['batch = "4:1"\n', '[shapes]\nx = "1x3x480"\ny = "oops"\n'])
def test_bad_ranges_are_refused_when_the_recipe_is_read(tmp_path: Path, extra: str) -> None:
    path = tmp_path / "r.toml"
    path.write_text(GOOD + extra)
    with pytest.raises(ConfigError) as info:
        read_recipe(path)
    assert str(info.value).startswith(f"{path}: ")


@pytest.mark.parametrize("extra", ["opt_level = 6\n", "workspace_mb = 0\n"])
def test_builder_limits_are_checked_like_the_cli_does(tmp_path: Path, extra: str) -> None:
    path = tmp_path / "r.toml"
    path.write_text(GOOD + extra)
    with pytest.raises(ConfigError):
        read_recipe(path)


def test_version_compatible_reaches_the_load_options(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text(GOOD + "version_compatible = true\n")
    recipe = read_recipe(path)
    assert recipe.version_compatible is True
    assert recipe.load_options().get("version_compatible") is True
    assert "version_compatible" in backend.OPTIONS


@pytest.mark.parametrize(
    ("extra", "dynamic"),
    [
        ('batch = "1:1:4"\n', "batch 1:1:4"),
        ("", "no batch or shapes given"),
        ('[shapes]\nx = "1x3x480x480:1x3x480x480:1x3x640x640"\n', "x 1x3x480x480:1x3x480x480:1x3x640x640"),
    ],
)
def test_a_dla_recipe_needs_static_shapes(tmp_path: Path, extra: str, dynamic: str) -> None:
    """DLA runs no layer with a dynamic dimension: a dynamic profile would put the whole model on the GPU."""
    path = tmp_path / "dla.toml"
    path.write_text(GOOD + "dla_core = 0\n" + extra)
    with pytest.raises(ConfigError, match="needs static shapes") as info:
        read_recipe(path)
    assert dynamic in str(info.value)
    assert str(path) in str(info.value)
    path.write_text(GOOD + "dla_core = 0\n" + 'batch = "2"\n')
    assert read_recipe(path).load_options() == {"batch": "2", "dla_core": 0}
    path.write_text(GOOD + 'dla_core = 0\n[shapes]\nx = "1x3x480x480"\n')
    assert read_recipe(path).dla_core == 0


def test_the_dla_recipe_targets_boards_that_have_a_dla() -> None:
    """Orin Nano has no DLA: the recipe names Orin NX / AGX Orin only."""
    recipe = read_recipe(REPO / "engines" / "ppocr-det-orin-dla-lowmem.toml")
    assert "Nano" not in recipe.target
    assert "Orin NX" in recipe.target
    assert "AGX Orin" in recipe.target


def test_all_the_known_keys_are_taken(tmp_path: Path) -> None:
    path = tmp_path / "full.toml"
    path.write_text(
        'model = "ppocr-cls"\nprecision = "int8"\ncalibration = "lines"\nbatch = 4\nworkspace_mb = 512\n'
        'opt_level = 5\ndla_core = 1\nlow_memory = true\nversion_compatible = true\ntarget = "Orin"\n'
        'notes = "for people"\n'
    )
    recipe = read_recipe(path)
    assert recipe.batch == "4"
    assert (recipe.workspace_mb, recipe.opt_level, recipe.dla_core) == (512, 5, 1)
    assert recipe.low_memory is True
    assert recipe.target == "Orin"
    options = recipe.load_options()
    options.pop("version_compatible", None)  # dropped today: see test_version_compatible_reaches_the_load_options
    assert options == {
        "batch": "4",
        "workspace_mb": 512,
        "opt_level": 5,
        "dla_core": 1,
        "low_memory": True,
        "calibration": str(tmp_path / "lines"),
    }


# --- relative paths -----------------------------------------------------------------------------


def test_relative_model_and_calibration_paths_resolve_against_the_recipes_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "fleet" / "engines"
    folder.mkdir(parents=True)
    path = folder / "det.toml"
    path.write_text(
        'model = "../models/det.onnx"\nprecision = "int8"\ncalibration = "../calibration/frames"\n'
        '[shapes]\nx = "1x3x480x480"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for given in (path, Path(os.path.relpath(path, elsewhere))):
        recipe = read_recipe(given)
        assert recipe.model == str(tmp_path / "fleet" / "models" / "det.onnx")
        assert recipe.calibration == tmp_path / "fleet" / "calibration" / "frames"
        assert recipe.shapes == {"x": "1x3x480x480"}


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("ppocr-det", "ppocr-det"),  # a bundled name stays a name
        ("det.onnx", "{folder}/det.onnx"),  # a file beside the recipe
        ("sub/det", "{folder}/sub/det"),
        ("/opt/models/det.onnx", "/opt/models/det.onnx"),  # absolute stays absolute
    ],
)
def test_model_names_and_paths(tmp_path: Path, model: str, expected: str) -> None:
    path = tmp_path / "r.toml"
    path.write_text(f'model = "{model}"\nprecision = "fp32"\n')
    assert read_recipe(path).model == expected.format(folder=tmp_path)
    assert read_recipe(path).calibration is None


def test_sparse_weights_reaches_the_load_options_and_the_builder_flags(tmp_path: Path) -> None:
    """The recipe's sparse_weights becomes load's option, then the SPARSE_WEIGHTS flag, a name every supported
    TensorRT has (tests/fixtures/trt-api); the engine cache key holds it through those flags."""
    import json

    from edgerun.trt.build import BuildSettings

    path = tmp_path / "r.toml"
    path.write_text(GOOD + "sparse_weights = true\n")
    recipe = read_recipe(path)
    assert recipe.load_options().get("sparse_weights") is True
    assert "sparse_weights" in backend.OPTIONS
    dense = BuildSettings(precision="fp16", profile=Profile(()))
    sparse = BuildSettings(precision="fp16", profile=Profile(()), sparse_weights=True)
    surfaces = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "trt-api").glob("trt-*.json"))
    assert surfaces
    for surface in surfaces:
        flags = json.loads(surface.read_text())["enums"]["BuilderFlag"]
        major = int(surface.stem.split("-")[1].split(".")[0])
        assert "SPARSE_WEIGHTS" in sparse.flag_names(major)
        assert "SPARSE_WEIGHTS" not in dense.flag_names(major)
        assert set(sparse.flag_names(major)) <= set(flags), surface.name
    assert dense.key() == sparse.key()  # the engine key holds it through the flags, as cached keys did
