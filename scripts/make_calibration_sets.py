"""Write the real-image calibration sets ``calibration/digits/`` and ``calibration/photos/``.

``digits/``: 200 handwritten digits (20 per class, picked with seed 0) from scikit-learn's
``load_digits``, taken only from the *training* part of the split the bundled ``digits-*``
models use (``train_test_split(..., test_size=0.2, stratify=target, random_state=0)``), so the
held-out test split in ``edgerun/models/digits-student/digits-test.npz`` never appears here.
Each is an 8x8 8-bit grey PNG with dark ink on light paper, ``255 - round(value * 255 / 16)``,
the convention the digits cards' preprocessing expects (it inverts and scales by 1/255), plus
``labels.csv`` (``file,label``) so the set doubles as a labelled set.

``photos/``: natural photos from scikit-learn (``china.jpg``, ``flower.jpg``, CC BY 2.0) and
scikit-image (``skimage.data`` images whose docstrings state public domain or CC0), stored as
JPEG quality 90 with the long side at most 640 px, listed with author and license in
``SOURCES.md``.

Both folders get their license/attribution files. Deterministic: a rerun with the same
library versions writes byte-identical files. Needs the maintainer tools (not edgerun's
dependencies):

    pip install scikit-learn scikit-image
    python scripts/make_calibration_sets.py
"""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
import skimage.data
import sklearn.datasets
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edgerun  # noqa: E402
from edgerun.compare.accuracy import classification_accuracy  # noqa: E402

CALIBRATION = ROOT / "calibration"
DIGITS = CALIBRATION / "digits"
PHOTOS = CALIBRATION / "photos"
SEED = 0
PER_CLASS = 20
JPEG_QUALITY = 90
LONG_SIDE = 640

# --- digits --------------------------------------------------------------------------------

DIGITS_LICENSE = """\
# calibration/digits: license and attribution

The 200 images in this folder are taken from the **Optical Recognition of Handwritten Digits**
data set:

> E. Alpaydin and C. Kaynak (1998). Optical Recognition of Handwritten Digits.
> UCI Machine Learning Repository. https://doi.org/10.24432/C50P49

licensed under the **Creative Commons Attribution 4.0 International** license (CC BY 4.0),
https://creativecommons.org/licenses/by/4.0/, as distributed by scikit-learn
(`sklearn.datasets.load_digits`, the 1,797 8x8 images of the UCI test part).

## Changes made

- 200 of the 1,797 images were selected: 20 per digit, drawn with a fixed seed from the
  training part of edgerun's 80/20 stratified split (`random_state=0`); none of the held-out
  test split is included.
- Each image's values (integers 0-16, bright ink on a dark background) were scaled to 8 bits
  and inverted to dark ink on light paper: `pixel = 255 - round(value * 255 / 16)`, and
  written as an 8x8 8-bit grey PNG.
- `labels.csv` lists each file with its digit label as given by the data set.

The file names are `digit_<label>_<index>.png`, where `<index>` is the image's position in
`load_digits()`.

Made by `python scripts/make_calibration_sets.py`. This folder is not covered by edgerun's
Apache-2.0 license; the images remain under CC BY 4.0 and the changes above are offered under
the same license.
"""


def digits_training_choice() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The chosen load_digits indices (sorted by label, then index), their labels and all images."""
    digits = load_digits()
    train, _test = train_test_split(
        np.arange(len(digits.target)), test_size=0.2, stratify=digits.target, random_state=SEED
    )
    rng = np.random.default_rng(SEED)
    chosen = []
    for label in range(10):
        pool = np.sort(train[digits.target[train] == label])
        chosen.append(np.sort(rng.choice(pool, size=PER_CLASS, replace=False)))
    index = np.concatenate(chosen)
    return index, digits.target[index], digits.images


def to_ink_on_paper(values: np.ndarray) -> np.ndarray:
    """load_digits values (0-16, bright ink) to 8-bit dark ink on light paper."""
    return (255 - np.rint(values * 255 / 16)).astype(np.uint8)


def make_digits() -> list[tuple[str, int]]:
    index, labels, images = digits_training_choice()
    DIGITS.mkdir(parents=True, exist_ok=True)
    for old in DIGITS.glob("*.png"):
        old.unlink()
    rows = []
    for i, label in zip(index.tolist(), labels.tolist(), strict=True):
        name = f"digit_{label}_{i}.png"
        ok, encoded = cv2.imencode(".png", to_ink_on_paper(images[i]), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        assert ok, name
        (DIGITS / name).write_bytes(encoded.tobytes())
        rows.append((name, label))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("file", "label"))
    writer.writerows(rows)
    (DIGITS / "labels.csv").write_text(buffer.getvalue())
    (DIGITS / "LICENSE.md").write_text(DIGITS_LICENSE)
    return rows


# --- photos --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Photo:
    file: str
    package: str
    path: str
    """Path of the source file inside the installed package."""
    author: str
    license: str
    verified: str
    """Where the license statement was read."""


SKLEARN_README = "sklearn/datasets/images/README.txt"
CC_BY_2 = "CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/)"
PHOTOS_LIST = (
    Photo(
        "china.jpg",
        "scikit-learn",
        "sklearn/datasets/images/china.jpg",
        "danielbuechele (https://www.flickr.com/photos/danielbuechele/), "
        "https://www.flickr.com/photos/danielbuechele/6061409035/; retrieved 21 Aug 2011 by Robert Layton",
        CC_BY_2,
        SKLEARN_README,
    ),
    Photo(
        "flower.jpg",
        "scikit-learn",
        "sklearn/datasets/images/flower.jpg",
        "attributed by scikit-learn to danielbuechele; source link is Flickr user vultilion "
        "(https://www.flickr.com/photos/vultilion/), https://www.flickr.com/photos/vultilion/6056698931/; "
        "retrieved 21 Aug 2011 by Robert Layton",
        CC_BY_2,
        SKLEARN_README,
    ),
    Photo(
        "astronaut.jpg",
        "scikit-image",
        "skimage/data/astronaut.png",
        "NASA (astronaut Eileen Collins), NASA Great Images database, https://flic.kr/p/r9qvLn",
        "Public domain (\u201cNo known copyright restrictions, released into the public domain.\u201d)",
        "docstring of skimage.data.astronaut (skimage/data/_fetchers.py)",
    ),
    Photo(
        "camera.jpg",
        "scikit-image",
        "skimage/data/camera.png",
        "Lav Varshney (photographer)",
        "CC0 (\u201cNo copyright restrictions. CC0 by the photographer (Lav Varshney).\u201d)",
        "docstring of skimage.data.camera (skimage/data/_fetchers.py)",
    ),
    Photo(
        "chelsea.jpg",
        "scikit-image",
        "skimage/data/chelsea.png",
        "Stefan van der Walt (photographer)",
        "CC0 (\u201cNo copyright restrictions. CC0 by the photographer (Stefan van der Walt).\u201d)",
        "docstring of skimage.data.chelsea (skimage/data/_fetchers.py)",
    ),
    Photo(
        "coffee.jpg",
        "scikit-image",
        "skimage/data/coffee.png",
        "Rachel Michetti (photographer), courtesy of Pikolo Espresso Bar",
        "CC0 (\u201cNo copyright restrictions. CC0 by the photographer (Rachel Michetti).\u201d)",
        "docstring of skimage.data.coffee (skimage/data/_fetchers.py)",
    ),
    Photo(
        "rocket.jpg",
        "scikit-image",
        "skimage/data/rocket.jpg",
        "SpaceX (launch of DSCOVR on Falcon 9), https://www.flickr.com/photos/spacexphotos/16511594820/in/photostream/",
        "Public domain (released by SpaceX, "
        "http://arstechnica.com/tech-policy/2015/03/elon-musk-puts-spacex-photos-into-the-public-domain/)",
        "docstring of skimage.data.rocket (skimage/data/_fetchers.py)",
    ),
)

PHOTOS_LICENSE = """\
# calibration/photos: license

The photos in this folder are not covered by edgerun's Apache-2.0 license. Each keeps the
license of its source, listed per file in `SOURCES.md`:

- `china.jpg`, `flower.jpg`: Creative Commons Attribution 2.0 Generic (CC BY 2.0),
  https://creativecommons.org/licenses/by/2.0/ (attribution in `SOURCES.md`, copied exactly
  from scikit-learn's `sklearn/datasets/images/README.txt`).
- `astronaut.jpg` (NASA) and `rocket.jpg` (SpaceX): public domain.
- `camera.jpg`, `chelsea.jpg`, `coffee.jpg`: CC0 1.0 (public domain dedication by the
  photographers), https://creativecommons.org/publicdomain/zero/1.0/.

All were re-encoded by `python scripts/make_calibration_sets.py` as described in `SOURCES.md`.
"""


def package_file(photo: Photo) -> Path:
    module = sklearn if photo.package == "scikit-learn" else skimage
    return Path(module.__file__).resolve().parent.joinpath(*photo.path.split("/")[1:])


def shrink(image: np.ndarray) -> tuple[np.ndarray, str]:
    h, w = image.shape[:2]
    if max(h, w) <= LONG_SIDE:
        return image, f"not resized ({w}x{h})"
    ratio = LONG_SIDE / max(h, w)
    size = (max(1, round(w * ratio)), max(1, round(h * ratio)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), f"resized {w}x{h} -> {size[0]}x{size[1]} (area)"


def make_photos() -> list[Photo]:
    PHOTOS.mkdir(parents=True, exist_ok=True)
    for old in PHOTOS.glob("*.jpg"):
        old.unlink()
    versions = {p: metadata.version(p) for p in ("scikit-learn", "scikit-image")}
    rows = []
    for photo in PHOTOS_LIST:
        source = package_file(photo)
        image = cv2.imread(str(source), cv2.IMREAD_UNCHANGED)
        assert image is not None, source
        if image.ndim == 3 and image.shape[2] == 4:
            image = image[:, :, :3]
        image, resized = shrink(image)
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        assert ok, photo.file
        (PHOTOS / photo.file).write_bytes(encoded.tobytes())
        kind = "grey" if image.ndim == 2 else "colour"
        changes = f"{resized}; re-encoded as {kind} JPEG quality {JPEG_QUALITY}"
        rows.append(
            f"| `{photo.file}` | {photo.package} {versions[photo.package]}, `{photo.path}` | {photo.author} "
            f"| {photo.license} | {changes} | {photo.verified} |"
        )
    readme = (package_file(PHOTOS_LIST[0]).parent / "README.txt").read_text().strip("\n")
    sources = "\n".join(
        [
            "# calibration/photos: sources",
            "",
            "Natural photos for calibrating and smoke-testing image models, written by",
            "`python scripts/make_calibration_sets.py` from image files that ship inside the",
            "scikit-learn and scikit-image wheels. Only images whose stated license allows",
            "redistribution (public domain, CC0, CC BY) are included; the license column quotes",
            "the statement read in the source named in the last column.",
            "",
            "| file | origin (package, path) | author / source | license | changes made | license read in |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            "## Attribution for `china.jpg` and `flower.jpg`, exactly as in scikit-learn's",
            "## `sklearn/datasets/images/README.txt`",
            "",
            "```",
            readme,
            "```",
            "",
            "Note: that README attributes `flower.jpg` to danielbuechele while its links point to",
            "Flickr user vultilion; both are kept as written.",
            "",
        ]
    )
    (PHOTOS / "SOURCES.md").write_text(sources)
    (PHOTOS / "LICENSE.md").write_text(PHOTOS_LICENSE)
    return list(PHOTOS_LIST)


def main() -> None:
    rows = make_digits()
    photos = make_photos()
    teacher = edgerun.load("digits-teacher")
    assert teacher.card is not None
    spec = edgerun.PreprocessSpec.from_dict(teacher.card.preprocessing)
    inputs = spec.load_batch(DIGITS / name for name, _ in rows)
    result = classification_accuracy(teacher, inputs, np.array([label for _, label in rows]))
    print(f"calibration/digits: {len(rows)} images; digits-teacher accuracy {result.accuracy:.4f}")
    print(f"calibration/photos: {len(photos)} photos")


if __name__ == "__main__":
    main()
