"""Optimization profiles (edgerun.trt.profiles): range parsing, ordering, planning for the bundled models,
shape checks against a built profile, and CUDA-graph buckets."""

from __future__ import annotations

import random
from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerun import models
from edgerun.errors import ConfigError, EdgerunError, InputError
from edgerun.runtime.modelfile import ModelFile
from edgerun.specs import TensorSpec
from edgerun.trt.profiles import (
    DEFAULT_MAX_BATCH,
    Profile,
    ShapeRange,
    bucket,
    parse_batch_range,
    parse_shape_range,
    plan_profile,
)

F32 = np.dtype("float32")


@cache
def inputs(name: str) -> tuple[TensorSpec, ...]:
    return tuple(ModelFile.open(models.path(name)).inputs)


def typical(name: str) -> dict[str, list[int]]:
    return dict(models.card(name).input_shapes)


# --- parse_batch_range --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("8", (8, 8, 8)), ("1", (1, 1, 1)), ("1:8", (1, 1, 8)), ("2:16", (2, 2, 16)), ("1:4:8", (1, 4, 8))],
)
def test_batch_ranges_in_the_documented_forms(text: str, expected: tuple[int, int, int]) -> None:
    assert parse_batch_range(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "is not N, MIN:MAX or MIN:OPT:MAX"),
        ("x", "is not N, MIN:MAX or MIN:OPT:MAX"),
        ("1.5", "is not N, MIN:MAX or MIN:OPT:MAX"),
        ("1:", "is not N, MIN:MAX or MIN:OPT:MAX"),
        ("1::8", "is not N, MIN:MAX or MIN:OPT:MAX"),
        ("1x8", "is not N, MIN:MAX or MIN:OPT:MAX"),
        ("1:2:4:8", "is not N, MIN:MAX or MIN:OPT:MAX"),
        ("0", "1 <= min <= opt <= max"),
        ("-1:8", "1 <= min <= opt <= max"),
        ("8:1", "1 <= min <= opt <= max"),
        ("1:9:8", "1 <= min <= opt <= max"),
        ("4:2:8", "1 <= min <= opt <= max"),
    ],
)
def test_bad_batch_ranges_raise_config_error(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match="batch range") as info:
        parse_batch_range(text)
    assert why in str(info.value)
    assert repr(text) in str(info.value)


@settings(max_examples=100, deadline=None)
@given(dims=st.lists(st.integers(1, 4096), min_size=3, max_size=3))
def test_batch_ranges_parse_back_whatever_is_ordered(dims: list[int]) -> None:
    low, opt, high = sorted(dims)
    assert parse_batch_range(f"{low}:{opt}:{high}") == (low, opt, high)
    assert parse_batch_range(f"{low}:{high}") == (low, low, high)
    assert parse_batch_range(str(high)) == (high, high, high)
    if low < high:
        with pytest.raises(ConfigError):
            parse_batch_range(f"{high}:{low}")
        with pytest.raises(ConfigError):
            parse_batch_range(f"{high}:{low}:{high}")


# --- parse_shape_range / ShapeRange -------------------------------------------------------------


def test_shape_ranges_in_the_documented_forms() -> None:
    assert parse_shape_range("x=1x3x224x224:4x3x224x224:8x3x224x224") == (
        "x",
        ShapeRange((1, 3, 224, 224), (4, 3, 224, 224), (8, 3, 224, 224)),
    )
    assert parse_shape_range("x=1x3x224x224") == ("x", ShapeRange(*[(1, 3, 224, 224)] * 3))
    assert parse_shape_range("images=1,3,48,192") == ("images", ShapeRange(*[(1, 3, 48, 192)] * 3))


@pytest.mark.parametrize(
    "text",
    [
        "1x3x224x224",  # no name
        "=1x3",  # empty name
        "x=",  # no shape
        "x=1x3:4x3",  # two shapes
        "x=1x3:2x3:3x3:4x3",  # four
        "x=1xax3",  # not an integer
        "x=0x3",  # a dimension below 1
        "x=1x-3",
        "x=1x3:1x3x4:1x3",  # ranks differ
        "x=4x3:1x3:8x3",  # min > opt
        "x=1x3:8x3:4x3",  # opt > max
        "x=1x9:1x3:1x9",  # a later axis out of order
    ],
)
def test_bad_shape_ranges_raise_config_error(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_shape_range(text)
    assert "shape range" in str(info.value)


@pytest.mark.parametrize(
    ("low", "opt", "high", "why"),
    [
        ((1, 3), (1, 3, 4), (1, 3), "mixes ranks"),
        ((0, 3), (1, 3), (1, 3), "below 1"),
        ((2, 3), (1, 3), (4, 3), "not ordered min <= opt <= max"),
        ((1, 3), (4, 3), (2, 3), "not ordered min <= opt <= max"),
        ((1, 5), (1, 4), (1, 6), "not ordered min <= opt <= max"),
    ],
)
def test_shape_range_ordering_is_validated(
    low: tuple[int, ...], opt: tuple[int, ...], high: tuple[int, ...], why: str
) -> None:
    with pytest.raises(ConfigError, match=why):
        ShapeRange(low, opt, high)


ordered_ranges = (
    st.integers(1, 5)
    .flatmap(
        lambda rank: st.lists(
            st.lists(st.integers(1, 64), min_size=3, max_size=3).map(sorted), min_size=rank, max_size=rank
        )
    )
    .map(lambda axes: ShapeRange(*(tuple(axis[i] for axis in axes) for i in range(3))))
)


@settings(max_examples=100, deadline=None)
@given(r=ordered_ranges)
def test_a_described_range_parses_back_to_itself(r: ShapeRange) -> None:
    assert parse_shape_range(f"t={r.describe()}") == ("t", r)
    assert r.contains(r.min)
    assert r.contains(r.opt)
    assert r.contains(r.max)
    assert not r.contains((*r.max[:-1], r.max[-1] + 1))
    assert not r.contains((*r.min, 1)), "another rank is never inside"
    if r.min[0] > 1:
        assert not r.contains((r.min[0] - 1, *r.min[1:]))


# --- plan_profile on the bundled models ----------------------------------------------------------


def test_digits_student_gets_a_dynamic_batch_of_1_1_8() -> None:
    profile = plan_profile(inputs("digits-student"), typical=typical("digits-student"))
    assert DEFAULT_MAX_BATCH == 8
    assert profile.key() == {"image": "1x1x8x8:1x1x8x8:8x1x8x8"}
    assert profile["image"] == ShapeRange((1, 1, 8, 8), (1, 1, 8, 8), (8, 1, 8, 8))
    assert plan_profile(inputs("digits-student")) == profile, "fixed non-batch dims need no card"


def test_a_batch_range_replaces_the_default() -> None:
    profile = plan_profile(inputs("digits-student"), batch=parse_batch_range("2:4:32"))
    assert profile["image"] == ShapeRange((2, 1, 8, 8), (4, 1, 8, 8), (32, 1, 8, 8))


def test_ppocr_cls_takes_height_and_width_from_its_card() -> None:
    assert typical("ppocr-cls") == {"x": [1, 3, 48, 192]}
    profile = plan_profile(inputs("ppocr-cls"), typical=typical("ppocr-cls"))
    assert profile.key() == {"x": "1x3x48x192:1x3x48x192:8x3x48x192"}
    profile = plan_profile(inputs("ppocr-cls"), batch=(1, 8, 16), typical=typical("ppocr-cls"))
    assert profile["x"] == ShapeRange((1, 3, 48, 192), (8, 3, 48, 192), (16, 3, 48, 192))


def test_ppocr_cls_without_typical_shapes_is_an_error_naming_the_input_and_axes() -> None:
    with pytest.raises(EdgerunError) as info:
        plan_profile(inputs("ppocr-cls"))
    assert isinstance(info.value, ConfigError | InputError)
    message = str(info.value)
    assert "'x'" in message
    assert "axes 2, 3" in message


def test_ppocr_cls_without_typical_shapes_points_at_the_shapes_option() -> None:
    with pytest.raises((ConfigError, InputError), match="--shapes"):
        plan_profile(inputs("ppocr-cls"))


def test_explicit_shape_ranges_override_card_and_batch() -> None:
    _, r = parse_shape_range("x=1x3x48x96:4x3x48x320:16x3x64x640")
    profile = plan_profile(inputs("ppocr-cls"), batch=(1, 1, 2), shapes={"x": r}, typical=typical("ppocr-cls"))
    assert profile["x"] is r
    assert profile.key() == {"x": "1x3x48x96:4x3x48x320:16x3x64x640"}
    assert plan_profile(inputs("ppocr-cls"), shapes={"x": r}) == profile, "no card needed then"


def test_fixed_dims_cannot_vary() -> None:
    _, varying_channels = parse_shape_range("x=1x1x48x192:1x3x48x192:1x4x48x192")
    with pytest.raises(ConfigError, match=r"varies axis 1, which the model fixes at 3"):
        plan_profile(inputs("ppocr-cls"), shapes={"x": varying_channels})
    _, bigger_image = parse_shape_range("image=1x1x8x8:1x1x8x8:1x1x16x16")
    with pytest.raises(ConfigError, match=r"'image' varies axis 2, which the model fixes at 8"):
        plan_profile(inputs("digits-student"), shapes={"image": bigger_image})
    _, wrong_fixed = parse_shape_range("image=1x2x8x8")
    with pytest.raises(ConfigError, match="fixes at 1"):
        plan_profile(inputs("digits-student"), shapes={"image": wrong_fixed})


def test_shape_ranges_of_another_rank_or_an_unknown_input_are_refused() -> None:
    _, rank3 = parse_shape_range("image=1x8x8:1x8x8:4x8x8")
    with pytest.raises(ConfigError, match="rank 3, the model expects 4"):
        plan_profile(inputs("digits-student"), shapes={"image": rank3})
    _, good = parse_shape_range("image=1x1x8x8")
    with pytest.raises(ConfigError, match=r"unknown input.*images"):
        plan_profile(inputs("digits-student"), shapes={"images": good})


FIXED_BATCH = (TensorSpec("x", (1, 3, 32, 32), F32),)


def test_a_fixed_batch_cannot_take_a_batch_range() -> None:
    with pytest.raises(ConfigError, match=r"fixed batch of 1; cannot build for batch \(1, 1, 4\)"):
        plan_profile(FIXED_BATCH, batch=(1, 1, 4))
    assert plan_profile(FIXED_BATCH).key() == {"x": "1x3x32x32:1x3x32x32:1x3x32x32"}
    assert plan_profile(FIXED_BATCH, batch=(1, 1, 1)) == plan_profile(FIXED_BATCH)
    four = (TensorSpec("x", (4, 3), F32),)
    assert plan_profile(four).key() == {"x": "4x3:4x3:4x3"}
    with pytest.raises(ConfigError, match="fixed batch of 4"):
        plan_profile(four, batch=(1, 1, 1))


def test_several_inputs_share_the_batch_range_and_are_sorted_by_name() -> None:
    specs = (TensorSpec("mask", ("n", 16), F32), TensorSpec("ids", ("n", 16), np.dtype("int64")))
    profile = plan_profile(specs, batch=(1, 2, 4))
    assert [name for name, _ in profile.ranges] == ["ids", "mask"]
    assert profile["mask"] == profile["ids"] == ShapeRange((1, 16), (2, 16), (4, 16))


def test_a_scalar_input_gets_a_rank_0_range() -> None:
    specs = (TensorSpec("x", ("n", 4), F32), TensorSpec("threshold", (), F32))
    profile = plan_profile(specs)
    assert profile["threshold"] == ShapeRange((), (), ())
    profile.check({"x": (2, 4), "threshold": ()}, "model.onnx")


# --- Profile.check ------------------------------------------------------------------------------


def test_check_accepts_shapes_inside_the_profile() -> None:
    profile = plan_profile(inputs("digits-student"))
    for n in (1, 3, 8):
        profile.check({"image": (n, 1, 8, 8)}, "student.onnx")


@pytest.mark.parametrize("shape", [(9, 1, 8, 8), (16, 1, 8, 8), (1, 1, 8, 9), (1, 1, 8), (1, 1, 8, 8, 1)])
def test_check_names_the_tensor_and_the_profile_bounds(shape: tuple[int, ...]) -> None:
    profile = plan_profile(inputs("digits-student"))
    with pytest.raises(InputError) as info:
        profile.check({"image": shape}, "student.onnx")
    error = info.value
    assert error.tensor == "image"
    assert error.expected == "[1, 1, 8, 8] .. [8, 1, 8, 8]"
    assert error.got == str(list(shape))
    message = str(error)
    assert message.startswith("student.onnx: input 'image' has shape ")
    assert "min [1, 1, 8, 8] .. max [8, 1, 8, 8]" in message
    assert "--batch or --shapes" in message


def test_check_finds_the_input_that_is_out_of_range() -> None:
    specs = (TensorSpec("a", ("n", 2), F32), TensorSpec("b", ("n", 3), F32))
    profile = plan_profile(specs, batch=(2, 2, 4))
    profile.check({"a": (2, 2), "b": (4, 3)}, "m")
    with pytest.raises(InputError) as info:
        profile.check({"a": (2, 2), "b": (1, 3)}, "m")
    assert info.value.tensor == "b"
    assert "min [2, 3] .. max [4, 3]" in str(info.value)


# --- buckets ------------------------------------------------------------------------------------

shape_maps = st.dictionaries(
    st.text("abcdefgxyz_", min_size=1, max_size=6),
    st.lists(st.integers(1, 64), min_size=0, max_size=4).map(tuple),
    min_size=1,
    max_size=4,
)


@settings(max_examples=150, deadline=None)
@given(shapes=shape_maps, seed=st.integers(0, 2**16))
def test_bucket_is_order_independent(shapes: dict[str, tuple[int, ...]], seed: int) -> None:
    items = list(shapes.items())
    random.Random(seed).shuffle(items)
    shuffled = dict(items)
    assert bucket(shuffled) == bucket(shapes)
    as_lists = {k: [np.int64(d) for d in v] for k, v in items}
    assert bucket(as_lists) == bucket(shapes), "list / numpy dims: the same bucket"
    assert hash(bucket(shapes)) == hash(bucket(shuffled))


@settings(max_examples=150, deadline=None)
@given(shapes=shape_maps, data=st.data())
def test_bucket_is_shape_exact(shapes: dict[str, tuple[int, ...]], data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(shapes)))
    shape = shapes[name]
    other = data.draw(
        st.lists(st.integers(1, 64), max_size=4).map(tuple).filter(lambda s: s != shape), label="other shape"
    )
    assert bucket({**shapes, name: other}) != bucket(shapes)
    renamed = {(k + "_" if k == name else k): v for k, v in shapes.items()}
    assert bucket(renamed) != bucket(shapes), "the names are part of the bucket"


def test_profile_key_is_readable_and_sorted() -> None:
    profile = Profile((("a", ShapeRange((1,), (2,), (3,))), ("b", ShapeRange((4, 4), (4, 4), (4, 4)))))
    assert profile.key() == {"a": "1:2:3", "b": "4x4:4x4:4x4"}
    assert profile["b"].max == (4, 4)
    with pytest.raises(KeyError):
        profile["c"]
