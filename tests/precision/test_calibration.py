"""Calibration and comparison data: image folders, arrays, labels, sampling, and every bad input.

`datasets.load_samples` reads the sets, `calibration.CalibrationData` serves them to ONNX
Runtime; bad data must end in one `CalibrationError` (or `ConfigError` for a preprocessing
spec) that names the file and what the model expects.
"""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgerun
from edgerun import models
from edgerun.data.preprocess import PreprocessSpec
from edgerun.data.samples import load_samples, pick, read_label_file
from edgerun.errors import CalibrationError, ConfigError, ImageError, InputError
from edgerun.precision.calibration import CalibrationData, open_calibration
from edgerun.precision.quantize import quantize
from edgerun.runtime.modelfile import ModelFile

from .. import onnx_factory
from ..precision_helpers import DIGITS_CALIB, DIGITS_FOLDER, DIGITS_TEST

DIGIT_NAME = re.compile(r"digit_(\d)_\d+\.png")
FUNCTION_FIXTURES = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def digits_model() -> ModelFile:
    return ModelFile.open(models.path("digits-teacher"))


@pytest.fixture(scope="module")
def digits_spec() -> PreprocessSpec:
    return PreprocessSpec.from_dict(models.card("digits-teacher").preprocessing)


def copy_digits(folder: Path, count: int) -> list[Path]:
    """The first ``count`` digit images (and a labels.csv for them) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    files = sorted(DIGITS_FOLDER.glob("*.png"))[:count]
    for path in files:
        shutil.copy(path, folder / path.name)
    with (folder / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label"])
        for path in files:
            writer.writerow([path.name, DIGIT_NAME.fullmatch(path.name).group(1)])  # type: ignore[union-attr]
    return [folder / p.name for p in files]


# --- good data ---------------------------------------------------------------------------------


def test_npz_set_gives_images_and_labels(digits_model: ModelFile) -> None:
    loaded = load_samples(DIGITS_CALIB, digits_model.inputs)
    with np.load(DIGITS_CALIB) as raw:
        assert np.array_equal(loaded.inputs["image"], raw["images"])
        assert np.array_equal(loaded.labels, raw["labels"])
    assert loaded.count == 256
    assert loaded.inputs["image"].dtype == np.float32
    assert loaded.source == str(DIGITS_CALIB)


def test_image_folder_goes_through_the_spec_and_picks_up_labels_csv(
    digits_model: ModelFile, digits_spec: PreprocessSpec
) -> None:
    loaded = load_samples(DIGITS_FOLDER, digits_model.inputs, preprocess=digits_spec)
    files = sorted(DIGITS_FOLDER.glob("*.png"))
    assert loaded.count == len(files) == 200
    assert loaded.inputs["image"].shape == (200, 1, 8, 8)
    assert np.array_equal(loaded.inputs["image"][17], digits_spec.load(files[17]))
    expected = [int(DIGIT_NAME.fullmatch(p.name).group(1)) for p in files]  # type: ignore[union-attr]
    assert loaded.labels is not None
    assert loaded.labels.tolist() == expected


def test_sampling_a_folder_keeps_images_and_labels_together(
    digits_model: ModelFile, digits_spec: PreprocessSpec
) -> None:
    first = load_samples(DIGITS_FOLDER, digits_model.inputs, preprocess=digits_spec, samples=20, seed=3)
    again = load_samples(DIGITS_FOLDER, digits_model.inputs, preprocess=digits_spec, samples=20, seed=3)
    other = load_samples(DIGITS_FOLDER, digits_model.inputs, preprocess=digits_spec, samples=20, seed=4)
    assert first.count == 20
    assert np.array_equal(first.inputs["image"], again.inputs["image"])
    assert not np.array_equal(first.inputs["image"], other.inputs["image"])
    files = sorted(DIGITS_FOLDER.glob("*.png"))
    chosen = [files[i] for i in pick(len(files), 20, 3)]
    assert np.array_equal(first.inputs["image"], np.stack([digits_spec.load(p) for p in chosen]))
    assert first.labels is not None
    assert first.labels.tolist() == [int(DIGIT_NAME.fullmatch(p.name).group(1)) for p in chosen]  # type: ignore[union-attr]


def test_sampling_an_array_set_keeps_labels_aligned(digits_model: ModelFile) -> None:
    loaded = load_samples(DIGITS_TEST, digits_model.inputs, samples=50, seed=1)
    with np.load(DIGITS_TEST) as raw:
        index = pick(360, 50, 1)
        assert np.array_equal(loaded.inputs["image"], raw["images"][index])
        assert np.array_equal(loaded.labels, raw["labels"][index])


def test_single_image_and_npy_sources(tmp_path: Path, digits_model: ModelFile, digits_spec: PreprocessSpec) -> None:
    image = sorted(DIGITS_FOLDER.glob("*.png"))[0]
    one = load_samples(image, digits_model.inputs, preprocess=digits_spec)
    assert one.count == 1
    assert one.labels is None
    array = np.random.default_rng(0).random((7, 1, 8, 8), dtype=np.float32)
    np.save(tmp_path / "set.npy", array)
    loaded = load_samples(tmp_path / "set.npy", digits_model.inputs)
    assert np.array_equal(loaded.inputs["image"], array)
    assert loaded.labels is None


def test_labels_from_npy_and_text_files_for_array_data(tmp_path: Path, digits_model: ModelFile) -> None:
    array = np.zeros((4, 1, 8, 8), np.float32)
    np.save(tmp_path / "x.npy", array)
    np.save(tmp_path / "y.npy", np.array([3, 1, 4, 1]))
    (tmp_path / "y.txt").write_text("3\n1\n\n4\n1\n")
    for labels in ("y.npy", "y.txt"):
        loaded = load_samples(tmp_path / "x.npy", digits_model.inputs, labels=tmp_path / labels)
        assert loaded.labels is not None
        assert loaded.labels.tolist() == [3, 1, 4, 1], labels


@settings(max_examples=60, deadline=None)
@given(count=st.integers(1, 300), samples=st.one_of(st.none(), st.integers(1, 400)), seed=st.integers(0, 2**32 - 1))
def test_pick_is_a_sorted_deterministic_draw_without_replacement(count: int, samples: int | None, seed: int) -> None:
    index = pick(count, samples, seed)
    assert len(index) == (count if samples is None else min(samples, count))
    assert len(set(index.tolist())) == len(index)
    assert np.all(np.diff(index) > 0)
    assert index.min() >= 0
    assert index.max() < count
    assert np.array_equal(index, pick(count, samples, seed))


@pytest.mark.parametrize("samples", [0, -3])
def test_pick_refuses_non_positive_sample_counts(samples: int) -> None:
    with pytest.raises(CalibrationError, match=f"samples must be >= 1, got {samples}"):
        pick(10, samples, 0)


@settings(max_examples=50, deadline=None)
@given(count=st.integers(1, 40), batch_size=st.integers(1, 12))
def test_calibration_data_serves_every_sample_once_in_order(count: int, batch_size: int) -> None:
    samples = np.arange(count * 4, dtype=np.float32).reshape(count, 4)
    data = CalibrationData({"x": samples}, batch_size=batch_size)
    assert len(data) == -(-count // batch_size)
    assert data.count == count
    served = []
    while (batch := data.get_next()) is not None:
        assert set(batch) == {"x"}
        assert 1 <= len(batch["x"]) <= batch_size
        served.append(batch["x"])
    assert len(served) == len(data)
    assert np.array_equal(np.concatenate(served), samples)
    assert data.get_next() is None
    data.rewind()
    assert np.array_equal(data.get_next()["x"], samples[:batch_size])  # type: ignore[index]
    assert np.array_equal(np.concatenate([b["x"] for b in data]), samples)
    assert data.get_next() is not None, "iteration leaves the reader rewound for ONNX Runtime"


@settings(max_examples=50, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 5), st.integers(1, 4), st.integers(1, 4)),
    position=st.integers(0, 10**6),
    delta=st.floats(0.5, 100),
)
def test_data_fingerprint_follows_content_not_identity(
    shape: tuple[int, int, int], position: int, delta: float
) -> None:
    array = np.random.default_rng(position).random(shape, dtype=np.float32)
    same = CalibrationData({"x": array.copy()})
    assert CalibrationData({"x": array}).sha256 == same.sha256
    changed = array.copy()
    changed.flat[position % array.size] += np.float32(delta)
    assert CalibrationData({"x": changed}).sha256 != same.sha256
    assert CalibrationData({"y": array}).sha256 != same.sha256, "the input name is part of the identity"
    assert CalibrationData({"x": array.astype(np.float64)}).sha256 != same.sha256


def test_open_calibration_from_arrays_mappings_and_iterables(digits_model: ModelFile) -> None:
    images = np.random.default_rng(1).random((6, 1, 8, 8), dtype=np.float32)
    from_array = open_calibration(images, digits_model.inputs, samples=4, seed=2)
    assert from_array.count == 4
    assert np.array_equal(from_array.samples["image"], images[pick(6, 4, 2)])
    from_mapping = open_calibration({"image": images}, digits_model.inputs, batch_size=4)
    assert len(from_mapping) == 2
    singles = open_calibration(iter(list(images)), digits_model.inputs)  # one sample each: batch axis added
    assert np.array_equal(singles.samples["image"], images)
    dicts = open_calibration([{"image": images[:2]}, {"image": images[2:]}], digits_model.inputs)
    assert np.array_equal(dicts.samples["image"], images)
    assert from_array.sha256 != from_mapping.sha256
    assert from_mapping.sha256 == singles.sha256 == dicts.sha256


# --- bad data ----------------------------------------------------------------------------------


def test_missing_source_names_the_path(tmp_path: Path, digits_model: ModelFile) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(CalibrationError, match=rf"{re.escape(str(missing))}: data source not found"):
        open_calibration(missing, digits_model.inputs)


def test_empty_folder(tmp_path: Path, digits_model: ModelFile, digits_spec: PreprocessSpec) -> None:
    (tmp_path / ".DS_Store").write_bytes(b"hidden files do not count")
    with pytest.raises(CalibrationError, match=rf"{re.escape(str(tmp_path))}: folder is empty"):
        open_calibration(tmp_path, digits_model.inputs, preprocess=digits_spec)


def test_folder_of_non_images(tmp_path: Path, digits_model: ModelFile, digits_spec: PreprocessSpec) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(CalibrationError, match=r"holds 2 file\(s\) but no images \(\.png"):
        open_calibration(tmp_path, digits_model.inputs, preprocess=digits_spec)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"\x89PNG not really", "OpenCV cannot decode"), (b"", "image file is empty")],
)
def test_unreadable_image_names_the_file(
    tmp_path: Path, digits_model: ModelFile, digits_spec: PreprocessSpec, content: bytes, message: str
) -> None:
    copy_digits(tmp_path, 3)
    (tmp_path / "zz_broken.png").write_bytes(content)
    with pytest.raises(CalibrationError, match=rf"zz_broken\.png: {message}") as info:
        open_calibration(tmp_path, digits_model.inputs, preprocess=digits_spec)
    assert isinstance(info.value.__cause__, ImageError)


def test_images_need_a_preprocessing_spec(digits_model: ModelFile) -> None:
    with pytest.raises(CalibrationError, match=r"images need a preprocessing spec for input 'image' \(--preprocess\)"):
        open_calibration(DIGITS_FOLDER, digits_model.inputs)


def test_unknown_file_kind(tmp_path: Path, digits_model: ModelFile) -> None:
    (tmp_path / "data.txt").write_text("1 2 3")
    with pytest.raises(CalibrationError, match=r"data\.txt: not an image folder, an image, or a \.npy/\.npz"):
        open_calibration(tmp_path / "data.txt", digits_model.inputs)


@pytest.mark.parametrize("name", ["garbage.npy", "garbage.npz"])
def test_unreadable_array_file(tmp_path: Path, digits_model: ModelFile, name: str) -> None:
    (tmp_path / name).write_bytes(b"\x00not numpy at all")
    with pytest.raises(CalibrationError, match=rf"{re.escape(name)}: not a readable \.npy/\.npz file"):
        open_calibration(tmp_path / name, digits_model.inputs)


def test_npz_whose_arrays_do_not_name_the_inputs(tmp_path: Path, digits_model: ModelFile) -> None:
    np.savez(tmp_path / "set.npz", a=np.zeros((2, 1, 8, 8), np.float32), b=np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(CalibrationError, match=r"set\.npz: arrays a, b do not name the model's inputs image"):
        open_calibration(tmp_path / "set.npz", digits_model.inputs)


def test_images_for_a_multi_input_model(tmp_path: Path, digits_spec: PreprocessSpec) -> None:
    path = onnx_factory.save(onnx_factory.two_input_add(), tmp_path / "two.onnx")
    with pytest.raises(CalibrationError, match=r"the model has 3 inputs \(a, b, c\); give data per input"):
        open_calibration(DIGITS_FOLDER, ModelFile.open(path).inputs, preprocess=digits_spec)


@FUNCTION_FIXTURES
@given(
    dims=st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 12)).filter(lambda d: d != (1, 8, 8)),
    count=st.integers(1, 4),
)
def test_arrays_of_the_wrong_size_name_the_file_and_the_expected_shape(
    tmp_path: Path, digits_model: ModelFile, dims: tuple[int, int, int], count: int
) -> None:
    path = tmp_path / "wrong.npy"
    np.save(path, np.zeros((count, *dims), np.float32))
    data = open_calibration(path, digits_model.inputs)
    with pytest.raises(CalibrationError) as info:
        data.check_fits(digits_model.inputs, "model.onnx")
    message = str(info.value)
    assert message.startswith(f"{path}: samples for input 'image' have size ")
    assert "model.onnx expects" in message
    assert "['batch', 1, 8, 8]" in message


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (
            np.zeros((3, 8, 8), np.float32),
            r"input 'image' has shape \[3, 8, 8\], the model expects \['batch', 1, 8, 8\] \(samples along axis 0\)",
        ),
        (np.zeros((3, 1, 8, 8), np.float64), r"samples for input 'image' are float64, model\.onnx expects float32"),
    ],
)
def test_arrays_of_the_wrong_rank_or_dtype(
    tmp_path: Path, digits_model: ModelFile, array: np.ndarray, message: str
) -> None:
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(CalibrationError, match=rf"bad\.npy: {message}"):
        open_calibration(tmp_path / "bad.npy", digits_model.inputs).check_fits(digits_model.inputs, "model.onnx")


def test_quantize_refuses_wrong_size_data_before_doing_anything(tmp_path: Path) -> None:
    np.save(tmp_path / "wide.npy", np.zeros((4, 1, 8, 9), np.float32))
    model = ModelFile.open(models.path("digits-teacher"))
    data = open_calibration(tmp_path / "wide.npy", model.inputs)
    with pytest.raises(CalibrationError, match=r"wide\.npy: .*size 9 at axis 3, model\.onnx expects 8"):
        quantize(model.path, tmp_path / "out.onnx", data)
    assert not (tmp_path / "out.onnx").exists()


def test_samples_missing_for_an_input(tmp_path: Path) -> None:
    path = onnx_factory.save(onnx_factory.two_input_add(), tmp_path / "two.onnx")
    specs = ModelFile.open(path).inputs
    data = CalibrationData({"a": np.zeros((2, 4), np.float32)})
    with pytest.raises(CalibrationError, match=r"no calibration samples for input\(s\) b, c of two\.onnx"):
        data.check_fits(specs, "two.onnx")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: CalibrationData({}), "no calibration inputs"),
        (lambda: CalibrationData({"a": np.zeros((2, 4)), "b": np.zeros((3, 4))}), "different sample counts"),
        (lambda: CalibrationData({"a": np.zeros((0, 4))}), "no calibration samples"),
        (lambda: CalibrationData({"a": np.zeros((2, 4))}, batch_size=0), "batch size must be >= 1, got 0"),
    ],
)
def test_calibration_data_refuses_unusable_sets(build: object, message: str) -> None:
    with pytest.raises(CalibrationError, match=message):
        build()  # type: ignore[operator]


def test_iterables_that_cannot_be_used(digits_model: ModelFile) -> None:
    with pytest.raises(CalibrationError, match="calibration iterable yielded nothing"):
        open_calibration(iter([]), digits_model.inputs)
    with pytest.raises(CalibrationError, match=r"input 'image' have lengths 7, 8 at axis 2, where the model fixes 8"):
        open_calibration([np.zeros((1, 8, 8)), np.zeros((1, 7, 8))], digits_model.inputs)
    with pytest.raises(CalibrationError, match="of type int is not iterable"):
        open_calibration(42, digits_model.inputs)  # type: ignore[arg-type]


# --- labels ------------------------------------------------------------------------------------


@FUNCTION_FIXTURES
@given(samples=st.integers(1, 12), labels=st.integers(0, 15))
def test_label_count_must_match_the_data(tmp_path: Path, digits_model: ModelFile, samples: int, labels: int) -> None:
    np.save(tmp_path / "x.npy", np.zeros((samples, 1, 8, 8), np.float32))
    (tmp_path / "y.txt").write_text("".join(f"{i % 10}\n" for i in range(labels)))
    if labels == samples:
        assert load_samples(tmp_path / "x.npy", digits_model.inputs, labels=tmp_path / "y.txt").labels is not None
        return
    with pytest.raises(CalibrationError, match=rf"y\.txt: {labels} labels for {samples} samples"):
        load_samples(tmp_path / "x.npy", digits_model.inputs, labels=tmp_path / "y.txt")


def test_labels_inside_an_npz_must_match_too(tmp_path: Path, digits_model: ModelFile) -> None:
    np.savez(tmp_path / "set.npz", images=np.zeros((5, 1, 8, 8), np.float32), labels=np.arange(4))
    with pytest.raises(CalibrationError, match=r"set\.npz: 4 labels for 5 samples"):
        load_samples(tmp_path / "set.npz", digits_model.inputs)


def test_labels_csv_missing_a_file(tmp_path: Path, digits_model: ModelFile, digits_spec: PreprocessSpec) -> None:
    copy_digits(tmp_path, 5)
    shutil.copy(sorted(DIGITS_FOLDER.glob("digit_9_*.png"))[0], tmp_path / "extra.png")
    with pytest.raises(CalibrationError, match=r"labels\.csv: no label for 1 image\(s\), e\.g\. extra\.png"):
        load_samples(tmp_path, digits_model.inputs, preprocess=digits_spec)


def test_labels_csv_with_a_bad_label(tmp_path: Path, digits_model: ModelFile, digits_spec: PreprocessSpec) -> None:
    files = copy_digits(tmp_path, 2)
    (tmp_path / "labels.csv").write_text(f"file,label\n{files[0].name},3\n{files[1].name},seven\n")
    with pytest.raises(CalibrationError, match=r"labels\.csv:3: label 'seven' is not an integer"):
        load_samples(tmp_path, digits_model.inputs, preprocess=digits_spec)


def test_an_explicit_labels_file_must_exist(
    tmp_path: Path, digits_model: ModelFile, digits_spec: PreprocessSpec
) -> None:
    with pytest.raises(CalibrationError, match=r"nope\.csv: labels file not found"):
        load_samples(DIGITS_FOLDER, digits_model.inputs, preprocess=digits_spec, labels=tmp_path / "nope.csv")
    with pytest.raises(CalibrationError, match=r"nope\.txt: labels file not found"):
        read_label_file(tmp_path / "nope.txt")
    (tmp_path / "bad.txt").write_text("1\ntwo\n")
    with pytest.raises(CalibrationError, match=r"bad\.txt: labels must be one integer per line"):
        read_label_file(tmp_path / "bad.txt")


@pytest.mark.parametrize("kind", ["txt", "npy"])
def test_image_folder_with_plain_label_files(
    tmp_path: Path, digits_model: ModelFile, digits_spec: PreprocessSpec, kind: str
) -> None:
    files = copy_digits(tmp_path / "images", 6)
    (tmp_path / "images" / "labels.csv").unlink()
    labels = [int(DIGIT_NAME.fullmatch(p.name).group(1)) for p in files]  # type: ignore[union-attr]
    path = tmp_path / f"labels.{kind}"
    if kind == "txt":
        path.write_text("".join(f"{label}\n" for label in labels))
    else:
        np.save(path, np.array(labels))
    loaded = load_samples(tmp_path / "images", digits_model.inputs, preprocess=digits_spec, labels=path)
    assert loaded.labels is not None
    assert loaded.labels.tolist() == labels


# --- preprocessing specs against the model -----------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    color=st.sampled_from(["gray", "rgb", "bgr"]),
    layout=st.sampled_from(["nchw", "nhwc"]),
    dtype=st.sampled_from(["float32", "float16"]),
)
def test_check_fits_accepts_exactly_what_the_input_takes(
    height: int, width: int, color: str, layout: str, dtype: str
) -> None:
    specs = ModelFile.open(models.path("digits-teacher")).inputs
    spec = PreprocessSpec(height=height, width=width, color=color, layout=layout, dtype=dtype)
    fits = spec.sample_shape == (1, 8, 8) and dtype == "float32"
    if fits:
        spec.check_fits(specs)
        return
    with pytest.raises(ConfigError) as info:
        spec.check_fits(specs)
    assert str(info.value) == (
        f"preprocessing makes {dtype} samples of shape {list(spec.sample_shape)}, but input 'image' expects "
        "float32 ['batch', 1, 8, 8] (batch first)"
    )
    assert isinstance(info.value, ValueError)


def test_check_fits_with_free_dims_and_several_inputs(tmp_path: Path) -> None:
    cls_inputs = ModelFile.open(models.path("ppocr-cls")).inputs
    PreprocessSpec.from_dict(models.card("ppocr-cls").preprocessing).check_fits(cls_inputs)
    PreprocessSpec(height=32, width=100, color="rgb").check_fits(cls_inputs)  # H and W are free
    with pytest.raises(ConfigError, match=r"shape \[1, 48, 192\], but input 'x' expects float32 \['\?', 3"):
        PreprocessSpec(height=48, width=192, color="gray").check_fits(cls_inputs)
    two = ModelFile.open(onnx_factory.save(onnx_factory.two_input_add(), tmp_path / "two.onnx")).inputs
    with pytest.raises(ConfigError, match=r"feeds a one-input model; this one has 3 inputs \(a, b, c\)"):
        PreprocessSpec(height=8, width=8).check_fits(two)


def test_errors_are_edgerun_and_value_errors() -> None:
    assert issubclass(CalibrationError, InputError)
    assert issubclass(CalibrationError, edgerun.EdgerunError)
    assert issubclass(CalibrationError, ValueError)
