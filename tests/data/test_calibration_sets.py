"""The calibration image sets under calibration/: counts, formats, licenses, and that they are what they claim.

``scripts/make_calibration_sets.py`` writes ``digits/`` and ``photos/``. Checks that need
scikit-learn (not an edgerun dependency, absent in CI) skip without it; the rest use only the
committed files and the bundled models.
"""

from __future__ import annotations

import csv
import re
import struct
from pathlib import Path

import numpy as np
import pytest

import edgerun
from edgerun import models
from edgerun.compare.accuracy import classification_accuracy
from edgerun.data.preprocess import load_image

REPO = Path(__file__).resolve().parents[2]
CALIBRATION = REPO / "calibration"
DIGITS = CALIBRATION / "digits"
PHOTOS = CALIBRATION / "photos"
DIGIT_NAME = re.compile(r"digit_(\d)_(\d+)\.png")
LICENSE_WORDS = ("CC BY 2.0", "CC BY 4.0", "CC0", "Public domain")


def digit_files() -> list[Path]:
    return sorted(DIGITS.glob("*.png"))


def digit_index_and_label(path: Path) -> tuple[int, int]:
    match = DIGIT_NAME.fullmatch(path.name)
    assert match, f"unexpected digits file name {path.name}"
    return int(match.group(2)), int(match.group(1))


def digits_spec() -> edgerun.PreprocessSpec:
    return edgerun.PreprocessSpec.from_dict(models.card("digits-student").preprocessing)


def test_total_size_stays_small() -> None:
    total = sum(p.stat().st_size for p in CALIBRATION.rglob("*") if p.is_file())
    assert total < 3_000_000, f"calibration/ holds {total} bytes"


@pytest.mark.parametrize("folder", sorted(p.name for p in CALIBRATION.iterdir() if p.is_dir()))
def test_every_set_has_its_license_and_a_readme_row(folder: str) -> None:
    licenses = [p for p in (CALIBRATION / folder).iterdir() if p.name.startswith(("LICENSE", "NOTICE"))]
    assert licenses, f"calibration/{folder} has no LICENSE or NOTICE file"
    assert all(p.stat().st_size > 100 for p in licenses)
    assert f"| `{folder}/` |" in (CALIBRATION / "README.md").read_text()


def test_new_sets_are_in_the_folder() -> None:
    assert {"digits", "photos", "textlines"} <= {p.name for p in CALIBRATION.iterdir() if p.is_dir()}


# --- digits --------------------------------------------------------------------------------


def test_digits_files_and_labels() -> None:
    files = digit_files()
    assert len(files) == 200
    assert {p.name for p in DIGITS.iterdir()} == {p.name for p in files} | {"labels.csv", "LICENSE.md"}
    with (DIGITS / "labels.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["file", "label"]
    labels = {name: int(label) for name, label in rows[1:]}
    assert len(labels) == len(rows) - 1 == 200
    assert set(labels) == {p.name for p in files}
    for path in files:
        assert labels[path.name] == digit_index_and_label(path)[1]
    assert np.bincount(list(labels.values()), minlength=10).tolist() == [20] * 10


def test_digits_are_8x8_8bit_grey_pngs() -> None:
    for path in digit_files():
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", path.name
        assert data[12:16] == b"IHDR", path.name
        width, height, depth, color_type = struct.unpack(">IIBB", data[16:26])
        assert (width, height, depth, color_type) == (8, 8, 8, 0), f"{path.name}: not 8x8 8-bit greyscale"
        gray = load_image(path, gray=True)
        assert gray.shape == (8, 8)
        assert gray.dtype == np.uint8
        assert load_image(path).shape == (8, 8, 3)


def test_digits_are_dark_ink_on_light_paper_in_16_levels() -> None:
    spec = digits_spec()
    for path in digit_files():
        gray = load_image(path, gray=True)
        assert np.median(gray) > 127, f"{path.name}: paper should be light"
        sample = spec.load(path)
        assert sample.shape == (1, 8, 8)
        assert sample.dtype == np.float32
        levels = sample * 16
        assert levels.min() >= 0
        assert levels.max() <= 16 + 1e-5
        # load_digits holds integers 0-16; 8-bit rounding moves them by at most 16 * 0.5 / 255.
        assert np.abs(levels - np.rint(levels)).max() <= 16 * 0.5 / 255 + 1e-5, path.name


def test_no_digit_comes_from_the_held_out_test_split() -> None:
    test_index = np.load(models.card("digits-student").folder / "digits-test.npz")["index"]
    assert len(test_index) == 360
    index = [digit_index_and_label(p)[0] for p in digit_files()]
    assert len(set(index)) == len(index) == 200
    assert all(0 <= i < 1797 for i in index)
    assert not set(index) & set(test_index.tolist())


def test_digits_reproduce_load_digits_through_the_card_spec() -> None:
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    train, test = train_test_split(np.arange(1797), test_size=0.2, stratify=digits.target, random_state=0)
    committed_test = np.load(models.card("digits-student").folder / "digits-test.npz")["index"]
    assert np.array_equal(test, committed_test), "the split no longer matches the bundled test split"
    spec = digits_spec()
    for path in digit_files():
        index, label = digit_index_and_label(path)
        assert index in set(train.tolist())
        assert digits.target[index] == label
        sample = spec.load(path)[0]
        assert np.abs(sample - digits.images[index] / 16).max() <= 1 / 255, path.name


def test_digits_teacher_classifies_the_set() -> None:
    with (DIGITS / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    spec = digits_spec()
    inputs = spec.load_batch(DIGITS / row["file"] for row in rows)
    labels = np.array([int(row["label"]) for row in rows])
    with edgerun.load("digits-teacher") as session:
        assert [o.name for o in session.outputs] == ["logits"]
        assert session.run(inputs[:4])["logits"].shape == (4, 10)
        result = classification_accuracy(session, inputs, labels)
    assert result.samples == 200
    assert result.accuracy >= 0.97, f"digits-teacher: {result.correct}/200"


# --- photos --------------------------------------------------------------------------------


def photo_files() -> list[Path]:
    return sorted(PHOTOS.glob("*.jpg"))


def sources_rows() -> dict[str, list[str]]:
    rows = {}
    for line in (PHOTOS / "SOURCES.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    return rows


def test_photos_are_jpegs_that_decode() -> None:
    files = photo_files()
    assert len(files) >= 5
    assert {p.name for p in PHOTOS.iterdir()} == {p.name for p in files} | {"SOURCES.md", "LICENSE.md"}
    for path in files:
        assert path.read_bytes()[:3] == b"\xff\xd8\xff", f"{path.name} is not a JPEG"
        image = load_image(path)
        assert image.ndim == 3
        assert image.shape[2] == 3
        assert max(image.shape[:2]) <= 640, path.name
        assert min(image.shape[:2]) >= 200, path.name
        assert image.std() > 10, f"{path.name} looks blank"
    assert {"china.jpg", "flower.jpg"} <= {p.name for p in files}


def test_photos_sources_list_every_photo_with_its_license() -> None:
    rows = sources_rows()
    assert set(rows) == {p.name for p in photo_files()}
    header = "| file | origin (package, path) | author / source | license | changes made | license read in |"
    assert header in (PHOTOS / "SOURCES.md").read_text()
    for name, cells in rows.items():
        assert len(cells) == 6, name
        assert all(cells), f"{name}: empty cell in SOURCES.md"
        assert cells[1].startswith(("scikit-learn", "scikit-image")), name
        assert any(word in cells[3] for word in LICENSE_WORDS), f"{name}: license {cells[3]!r}"
        assert "JPEG quality 90" in cells[4], name


def test_photos_keep_scikit_learns_attribution_verbatim() -> None:
    sources = (PHOTOS / "SOURCES.md").read_text()
    for line in (
        "Image: china.jpg",
        "Image: flower.jpg",
        "Attribution: Some rights reserved by danielbuechele [2]",
        "[1] https://creativecommons.org/licenses/by/2.0/",
        "[3] https://www.flickr.com/photos/danielbuechele/6061409035/sizes/z/in/photostream/",
        "[3] https://www.flickr.com/photos/vultilion/6056698931/sizes/z/in/photostream/",
    ):
        assert line in sources
    for name in ("china.jpg", "flower.jpg"):
        assert "CC BY 2.0" in sources_rows()[name][3]


def test_photos_match_scikit_learns_originals() -> None:
    pytest.importorskip("sklearn")
    import sklearn

    images = Path(sklearn.__file__).parent / "datasets" / "images"
    for name in ("china.jpg", "flower.jpg"):
        original = load_image(images / name).astype(np.float64)
        stored = load_image(PHOTOS / name).astype(np.float64)
        assert stored.shape == original.shape
        psnr = 10 * np.log10(255**2 / np.mean((stored - original) ** 2))
        assert psnr > 30, f"{name} differs from scikit-learn's file (PSNR {psnr:.1f} dB)"
