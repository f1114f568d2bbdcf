"""OpenCV preprocessing: specs, resize modes, normalisation, layouts and unreadable images."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgerun
from edgerun.data.preprocess import PreprocessSpec, load_image


def write_image(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), image)
    return path


def test_stretch_rgb_normalised_nchw() -> None:
    bgr = np.zeros((10, 20, 3), np.uint8)
    bgr[:, :, 0] = 255  # blue
    spec = PreprocessSpec(height=4, width=6, color="rgb", mean=(0.5,), std=(0.5,))
    out = spec.apply(bgr)
    assert out.shape == (3, 4, 6)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], -1.0)  # red channel empty
    np.testing.assert_allclose(out[2], 1.0)  # blue channel full, moved last by BGR -> RGB


def test_nhwc_and_per_channel_mean() -> None:
    image = np.full((8, 8, 3), 100, np.uint8)
    spec = PreprocessSpec(height=8, width=8, color="bgr", scale=1.0, mean=(0.0, 50.0, 100.0), layout="nhwc")
    out = spec.apply(image)
    assert out.shape == (8, 8, 3)
    np.testing.assert_allclose(out[0, 0], [100.0, 50.0, 0.0])


def test_letterbox_keeps_aspect_and_pads() -> None:
    image = np.full((10, 40, 3), 255, np.uint8)
    spec = PreprocessSpec(height=20, width=20, resize="letterbox", pad_value=-1.0)
    out = spec.apply(image)
    assert out.shape == (3, 20, 20)
    np.testing.assert_allclose(out[:, 7:12, :], 1.0)  # 40x10 -> 20x5, centred: rows 7..11
    np.testing.assert_allclose(out[:, :7, :], -1.0)
    np.testing.assert_allclose(out[:, 12:, :], -1.0)


def test_pad_right_for_text_lines() -> None:
    short = np.full((10, 10, 3), 255, np.uint8)
    spec = PreprocessSpec(height=48, width=192, resize="pad-right", color="bgr", mean=(0.5,), std=(0.5,))
    out = spec.apply(short)
    np.testing.assert_allclose(out[:, :, :48], 1.0)
    np.testing.assert_allclose(out[:, :, 48:], 0.0)
    wide = np.full((10, 500, 3), 255, np.uint8)
    np.testing.assert_allclose(spec.apply(wide), 1.0)  # wider than 4:1 is squeezed to the full width


def test_gray_invert_matches_digits_convention() -> None:
    ink_on_paper = np.full((16, 16), 255, np.uint8)
    ink_on_paper[4:12, 6:10] = 0  # a dark "1", 4 px wide: 2 px after halving
    spec = PreprocessSpec.from_dict(edgerun.models.card("digits-student").preprocessing)
    out = spec.apply(ink_on_paper)
    assert out.shape == (1, 8, 8)
    assert out.max() == pytest.approx(1.0)  # ink is bright after inversion
    assert out[0, 0, 0] == pytest.approx(0.0)  # paper is zero


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 64),
    w=st.integers(1, 64),
    channels=st.sampled_from([1, 3, 4]),
    resize=st.sampled_from(["stretch", "letterbox", "pad-right"]),
    color=st.sampled_from(["rgb", "bgr", "gray"]),
    layout=st.sampled_from(["nchw", "nhwc"]),
)
def test_any_image_gives_the_spec_shape_and_range(
    h: int, w: int, channels: int, resize: str, color: str, layout: str
) -> None:
    image = np.random.default_rng(h * w).integers(0, 256, (h, w, channels), dtype=np.uint8)
    spec = PreprocessSpec(height=12, width=20, resize=resize, color=color, layout=layout)
    out = spec.apply(image)
    assert out.shape == spec.sample_shape
    assert out.dtype == np.float32
    assert out.min() >= 0.0
    assert out.max() <= 1.0


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        ({"height": 8, "width": 8, "resize": "crop"}, "resize 'crop' is not one of"),
        ({"height": 8, "width": 8, "color": "yuv"}, "color 'yuv'"),
        ({"height": 0, "width": 8}, "size must be positive"),
        ({"height": 8, "width": 8, "mean": [1, 2]}, "mean needs 1 or 3 values"),
        ({"height": 8, "width": 8, "std": [0.0]}, "std must not contain 0"),
        ({"height": 8, "width": 8, "size": 3}, "unknown preprocessing keys size"),
    ],
)
def test_invalid_specs(data: dict[str, object], pattern: str) -> None:
    with pytest.raises(edgerun.ConfigError, match=pattern):
        PreprocessSpec.from_dict(data)


def test_spec_round_trips_through_json(tmp_path: Path) -> None:
    spec = PreprocessSpec(height=48, width=192, resize="pad-right", color="bgr", mean=(0.5,), std=(0.5,))
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec.to_dict()))
    assert PreprocessSpec.from_json_file(path) == spec
    path.write_text("{not json")
    with pytest.raises(edgerun.ConfigError, match="not valid JSON"):
        PreprocessSpec.from_json_file(path)


def test_unreadable_images(tmp_path: Path) -> None:
    with pytest.raises(edgerun.ImageError, match=r"missing\.png: image file not found"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(edgerun.ImageError, match=r"empty\.png: image file is empty"):
        load_image(tmp_path / "empty.png")
    (tmp_path / "text.jpg").write_text("this is not a jpeg")
    with pytest.raises(edgerun.ImageError, match=r"text\.jpg: OpenCV cannot decode"):
        load_image(tmp_path / "text.jpg")
    with pytest.raises(edgerun.ImageError, match="is not a file"):
        load_image(tmp_path)
    good = write_image(tmp_path / "ok.png", np.zeros((5, 5, 3), np.uint8))
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good.read_bytes()[:20])
    with pytest.raises(edgerun.ImageError, match=r"cut\.png"):
        load_image(truncated)


def test_load_batch_stacks(tmp_path: Path) -> None:
    paths = [write_image(tmp_path / f"{i}.png", np.full((9, 9, 3), i * 50, np.uint8)) for i in range(3)]
    spec = PreprocessSpec(height=4, width=4)
    batch = spec.load_batch(paths)
    assert batch.shape == (3, 3, 4, 4)
    np.testing.assert_allclose(batch[:, 0, 0, 0], [0, 50 / 255, 100 / 255], atol=1e-6)
