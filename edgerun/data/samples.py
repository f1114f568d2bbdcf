"""Sample sets for calibration and comparison: images through a preprocessing spec, or arrays, with labels.

One loader serves ``edgerun quantize --calib``, ``compare --data`` and ``tune``: an image
folder (sorted file names; ``labels.csv`` with ``file,label`` rows is picked up), a single
image, a ``.npy`` array, or a ``.npz`` with one array per input name (or ``images``) and
optional ``labels``. Sampling is deterministic: ``samples`` items drawn with ``seed``, kept
in their original order.
"""

from __future__ import annotations

import csv
import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgerun.data.preprocess import PreprocessSpec, is_image_path
from edgerun.errors import CalibrationError, EdgerunError
from edgerun.specs import TensorSpec

Progress = Callable[[int, int], None]
"""Called with (done, total) while images are read."""

LABELS_FILE = "labels.csv"


@dataclass(frozen=True)
class SampleSet:
    """Inputs by name (batch axis first), optional integer labels, and where they came from."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    source: str

    @property
    def count(self) -> int:
        return len(next(iter(self.inputs.values())))


def only_input(
    inputs: Sequence[TensorSpec],
    source: str,
    *,
    hint: str = "give data per input (an .npz with one array per input name)",
    error: type[EdgerunError] = CalibrationError,
) -> str:
    """The name of a one-input model's input; for models with several, ``error`` naming them and what to do."""
    if len(inputs) != 1:
        raise error(f"{source}: the model has {len(inputs)} inputs ({', '.join(s.name for s in inputs)}); {hint}")
    return inputs[0].name


def pick(count: int, samples: int | None, seed: int) -> np.ndarray:
    """Indices of ``samples`` items out of ``count``, drawn without replacement, in order."""
    if samples is not None and samples < 1:
        raise CalibrationError(f"samples must be >= 1, got {samples}")
    if samples is None or samples >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=samples, replace=False))


def load_samples(
    source: str | os.PathLike[str],
    inputs: Sequence[TensorSpec],
    *,
    preprocess: PreprocessSpec | None = None,
    samples: int | None = None,
    seed: int = 0,
    labels: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> SampleSet:
    """Read a sample set from an image folder or file, or an array file; labels if there are any."""
    path = Path(source)
    if not path.exists():
        raise CalibrationError(f"{path}: data source not found")
    if path.is_dir() or is_image_path(path):
        files = image_files(path)
        index = pick(len(files), samples, seed)
        chosen = [files[i] for i in index]
        name = only_input(inputs, str(path))
        if preprocess is None:
            raise CalibrationError(f"{path}: images need a preprocessing spec for input '{name}' (--preprocess)")
        arrays = {name: _read_images(chosen, preprocess, progress)}
        found: np.ndarray | None
        if labels is not None and Path(labels).suffix != ".csv":
            # Labels without file names follow the sorted file names of the folder.
            every = read_label_file(Path(labels))
            if len(every) != len(files):
                raise CalibrationError(f"{labels}: {len(every)} labels for {len(files)} images in {path}")
            found = every[index]
        else:
            table = Path(labels) if labels else path / LABELS_FILE
            found = _labels_for_files(chosen, table, required=labels is not None)
    elif path.suffix in (".npy", ".npz"):
        arrays, found = _read_array_file(path, inputs)
        if labels is not None:
            found = read_label_file(Path(labels))
        total = len(next(iter(arrays.values())))
        if found is not None and len(found) != total:
            raise CalibrationError(f"{labels or path}: {len(found)} labels for {total} samples")
        index = pick(total, samples, seed)
        arrays = {k: v[index] for k, v in arrays.items()}
        found = None if found is None else found[index]
    else:
        raise CalibrationError(f"{path}: not an image folder, an image, or a .npy/.npz array file")
    return SampleSet(arrays, found, str(path))


def image_files(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise CalibrationError(f"{path}: folder is empty")
    images = [p for p in files if is_image_path(p)]
    if not images:
        raise CalibrationError(
            f"{path}: folder holds {len(files)} file(s) but no images (.png, .jpg, .jpeg, .bmp, .tif, .webp)"
        )
    return images


def _read_images(files: Sequence[Path], spec: PreprocessSpec, progress: Progress | None) -> np.ndarray:
    loaded = []
    for done, image in enumerate(files, start=1):
        try:
            loaded.append(spec.load(image))
        except EdgerunError as exc:
            raise CalibrationError(f"image {exc}") from exc
        if progress is not None:
            progress(done, len(files))
    return np.stack(loaded)


def _labels_for_files(files: Sequence[Path], labels_path: Path, *, required: bool) -> np.ndarray | None:
    """Labels of ``files`` from a ``file,label`` CSV; None if there is none and none was asked for."""
    if not labels_path.is_file():
        if required:
            raise CalibrationError(f"{labels_path}: labels file not found")
        return None
    table = _read_csv_labels(labels_path)
    missing = [f.name for f in files if f.name not in table]
    if missing:
        raise CalibrationError(f"{labels_path}: no label for {len(missing)} image(s), e.g. {', '.join(missing[:3])}")
    return np.asarray([table[f.name] for f in files], dtype=np.int64)


def _read_csv_labels(path: Path) -> dict[str, int]:
    try:
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"{path}: cannot read labels: {exc}") from exc
    table: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        if len(row) < 2 or (number == 1 and not row[1].strip().lstrip("-").isdigit()):
            continue  # header or blank line
        try:
            table[row[0].strip()] = int(row[1])
        except ValueError:
            raise CalibrationError(f"{path}:{number}: label {row[1]!r} is not an integer") from None
    return table


def read_label_file(path: Path) -> np.ndarray:
    """Integer labels from ``.npy``, a one-per-line text file, or the second column of a CSV."""
    if not path.is_file():
        raise CalibrationError(f"{path}: labels file not found")
    if path.suffix == ".npy":
        try:
            return np.asarray(np.load(path, allow_pickle=False), dtype=np.int64).reshape(-1)
        except (ValueError, OSError) as exc:
            raise CalibrationError(f"{path}: not a readable .npy label array ({exc})") from exc
    if path.suffix == ".csv":
        return np.asarray(list(_read_csv_labels(path).values()), dtype=np.int64)
    try:
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        return np.asarray([int(line) for line in lines], dtype=np.int64)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CalibrationError(f"{path}: labels must be one integer per line ({exc})") from exc


def _read_array_file(path: Path, inputs: Sequence[TensorSpec]) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise CalibrationError(f"{path}: not a readable .npy/.npz file ({exc})") from exc
    if isinstance(loaded, np.ndarray):
        return {only_input(inputs, str(path)): loaded}, None
    with loaded:
        keys = list(loaded.files)
        labels = np.asarray(loaded["labels"], dtype=np.int64) if "labels" in keys else None
        arrays = [k for k in keys if k not in ("labels", "index")]
        names = [s.name for s in inputs]
        if set(names) <= set(arrays):
            return {n: loaded[n] for n in names}, labels
        if len(names) == 1 and len(arrays) == 1:
            return {names[0]: loaded[arrays[0]]}, labels
        if len(names) == 1 and "images" in arrays:
            return {names[0]: loaded["images"]}, labels
        raise CalibrationError(f"{path}: arrays {', '.join(keys)} do not name the model's inputs {', '.join(names)}")
