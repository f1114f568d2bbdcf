"""Sample sets for calibration and comparison: images through a preprocessing spec, or arrays, with labels.

One loader serves ``edgerun quantize --calib``, ``compare --data`` and ``tune``: an image
folder (sorted file names; ``labels.csv`` with ``file,label`` rows is picked up), a single
image, a ``.npy`` array, or a ``.npz`` with one array per input name (or ``images``) and
optional ``labels``. Sampling is deterministic: ``samples`` items drawn with ``seed``, kept
in their original order.

Arrays keep the model's layout: samples lie along each input's own batch axis (`batch_axis`:
axis 1 of a recurrent ``state [2, batch, 128]``), and constant inputs (a rank-0 sample rate,
or an input with no batch dimension) are given once, as-is, and never stacked or indexed.
"""

from __future__ import annotations

import csv
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgerun.data.preprocess import PreprocessSpec, is_image_path
from edgerun.errors import CalibrationError, EdgerunError
from edgerun.roles import batch_axis_in, batch_symbol, shape_roles
from edgerun.specs import TensorSpec

Progress = Callable[[int, int], None]
"""Called with (done, total) while images are read."""

LABELS_FILE = "labels.csv"


@dataclass(frozen=True)
class SampleSet:
    """Inputs by name (samples along ``batch_axes``), optional integer labels, and where they came from.

    ``batch_axes`` maps an input to the axis its samples lie along, or None for a constant
    given once; inputs it does not name use `default_batch_axis`.
    """

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    source: str
    batch_axes: dict[str, int | None] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sample_count(self.inputs, self.batch_axes, self.source)


def batch_axis(spec: TensorSpec, specs: Sequence[TensorSpec] = ()) -> int | None:
    """The axis of ``spec`` along which samples (the batch) lie, or None for a constant input.

    From the symbol the model's tensors ``specs`` share most (`edgerun.roles.batch_symbol`):
    ``batch`` at axis 1 of ``state [2, batch, 128]``; axis 0 when it is symbolic or 1 (a fixed
    batch of one); None for rank 0 (a sample rate) or no batch dimension at all.
    """
    return batch_axis_in(spec, batch_symbol([spec, *specs]))


def batch_axes(specs: Sequence[TensorSpec], outputs: Sequence[TensorSpec] = ()) -> dict[str, int | None]:
    """`batch_axis` of every input in ``specs``, by name (``outputs`` help find the batch symbol)."""
    return shape_roles(specs, outputs).batch_axes


def default_batch_axis(array: np.ndarray) -> int | None:
    """Batch axis of an array no input spec describes: None (constant) for a scalar, else 0."""
    return None if array.ndim == 0 else 0


def axis_of(name: str, array: np.ndarray, axes: Mapping[str, int | None]) -> int | None:
    """The batch axis of ``name`` from ``axes``, else `default_batch_axis` of its array."""
    return axes[name] if name in axes else default_batch_axis(array)


def sample_count(arrays: Mapping[str, np.ndarray], axes: Mapping[str, int | None], source: str) -> int:
    """Samples along each input's batch axis, equal for all; 1 when every input is a constant.

    Raises CalibrationError naming each input, its batch axis and count when they disagree.
    """
    counts: dict[str, tuple[int, int, tuple[int, ...]]] = {}
    for name, array in arrays.items():
        axis = axis_of(name, array, axes)
        if axis is None:
            continue
        if axis >= array.ndim:
            raise CalibrationError(
                f"{source}: input '{name}' has shape {list(array.shape)}, it needs samples along axis {axis}",
                tensor=name,
                expected=f"samples along axis {axis}",
                got=f"shape {list(array.shape)}",
            )
        counts[name] = (array.shape[axis], axis, array.shape)
    if not counts:
        return 1
    if len({count for count, _, _ in counts.values()}) != 1:
        found = ", ".join(
            f"'{name}' {count} along axis {axis} (shape {list(shape)})" for name, (count, axis, shape) in counts.items()
        )
        raise CalibrationError(f"{source}: inputs have different sample counts: {found}")
    return next(iter(counts.values()))[0]


def take(
    arrays: Mapping[str, np.ndarray], axes: Mapping[str, int | None], index: np.ndarray | slice
) -> dict[str, np.ndarray]:
    """Samples ``index`` (indices or a slice) of every input along its batch axis; constants as they are."""
    picked: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        axis = axis_of(name, array, axes)
        if axis is None:
            picked[name] = array
        elif isinstance(index, slice):
            picked[name] = array[(slice(None),) * axis + (index,)]
        else:
            picked[name] = np.take(array, index, axis=axis)
    return picked


def run_in_chunks(
    run: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]],
    inputs: Mapping[str, np.ndarray],
    axes: Mapping[str, int | None],
    step: int,
    source: str,
    output_axes: Mapping[str, int | None] | None = None,
) -> dict[str, np.ndarray]:
    """Every output of ``run`` over all samples, ``step`` samples per call along each input's batch axis,
    with each output's batch axis (``output_axes``: ``stateN [2, batch, 128]`` keeps it on axis 1) moved
    first and joined there: samples along axis 0, how comparisons line up a reference with a candidate."""
    parts: dict[str, list[np.ndarray]] = {}
    moved = {name: axis for name, axis in (output_axes or {}).items() if axis}
    for start in range(0, sample_count(inputs, axes, source), step):
        for name, value in run(take(inputs, axes, slice(start, start + step))).items():
            array = np.asarray(value)
            axis = moved.get(name)
            parts.setdefault(name, []).append(np.moveaxis(array, axis, 0) if axis and axis < array.ndim else array)
    return {name: np.concatenate(values) for name, values in parts.items()}


def fit_inputs(
    arrays: Mapping[str, np.ndarray], inputs: Sequence[TensorSpec], source: str
) -> tuple[dict[str, np.ndarray], dict[str, int | None]]:
    """``arrays`` laid out for ``inputs``: every input present and of its rank, constants as one value.

    Returns the arrays (a rank-0 constant given as a 1-element array becomes a scalar) and the
    batch axis of each. Arrays no input names are kept, with `default_batch_axis`. Raises
    CalibrationError naming the input, its expected shape and what was found; sample counts are
    checked with `sample_count`.
    """
    axes = batch_axes(inputs)
    missing = [spec for spec in inputs if spec.name not in arrays]
    if missing:
        raise CalibrationError(
            f"{source}: no data for input(s) {', '.join(_expected(s, axes[s.name]) for s in missing)}; "
            f"the data has {', '.join(arrays) or 'no arrays'}",
            tensor=missing[0].name,
            expected=_expected(missing[0], axes[missing[0].name]),
            got=f"arrays {', '.join(arrays)}",
        )
    fitted = {name: np.asarray(array) for name, array in arrays.items()}
    for spec in inputs:
        array = fitted[spec.name]
        axis = axes[spec.name]
        if axis is None and spec.rank == 0:
            if array.size != 1:
                raise CalibrationError(
                    f"{source}: input '{spec.name}' is a constant (a scalar, e.g. a sample rate): give one value, "
                    f"not one per sample; got shape {list(array.shape)}",
                    tensor=spec.name,
                    expected="one value (shape [])",
                    got=f"shape {list(array.shape)}",
                )
            fitted[spec.name] = array.reshape(())
        elif array.ndim != spec.rank or (axis is None and not _fixed_dims_match(spec, array.shape, None)):
            where = "a constant given once" if axis is None else f"samples along axis {axis}"
            raise CalibrationError(
                f"{source}: input '{spec.name}' has shape {list(array.shape)}, the model expects "
                f"{list(spec.shape)} ({where})",
                tensor=spec.name,
                expected=_expected(spec, axis),
                got=f"shape {list(array.shape)}",
            )
    for name, array in fitted.items():
        axes.setdefault(name, default_batch_axis(array))
    sample_count(fitted, axes, source)
    return fitted, axes


def _fixed_dims_match(spec: TensorSpec, shape: Sequence[int], axis: int | None) -> bool:
    return all(
        not isinstance(want, int) or want == have or i == axis
        for i, (want, have) in enumerate(zip(spec.shape, shape, strict=True))
    )


def _expected(spec: TensorSpec, axis: int | None) -> str:
    if axis is None:
        return f"'{spec.name}' {spec.dtype.name} {list(spec.shape)} (a constant, given once)"
    return f"'{spec.name}' {spec.dtype.name} {list(spec.shape)} (samples along axis {axis})"


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
        axes: dict[str, int | None] = {name: 0}
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
        arrays, axes = fit_inputs(arrays, inputs, str(path))
        if labels is not None:
            found = read_label_file(Path(labels))
        total = sample_count(arrays, axes, str(path))
        if found is not None and len(found) != total:
            raise CalibrationError(f"{labels or path}: {len(found)} labels for {total} samples")
        index = pick(total, samples, seed)
        arrays = take(arrays, axes, index)
        found = None if found is None else found[index]
    else:
        raise CalibrationError(f"{path}: not an image folder, an image, or a .npy/.npz array file")
    return SampleSet(arrays, found, str(path), axes)


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
        if len(names) > 1:
            # fit_inputs names each missing input with its expected shape.
            return {k: loaded[k] for k in arrays}, labels
        raise CalibrationError(f"{path}: arrays {', '.join(keys)} do not name the model's inputs {', '.join(names)}")
