"""Feeds from files (``.npy``, ``.npz``, images) and readable summaries of outputs, for ``edgerun run``."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgerun.data.preprocess import PreprocessSpec, is_image_path
from edgerun.data.samples import only_input
from edgerun.errors import InputError
from edgerun.specs import TensorSpec

_NAME_IT = "name the input as NAME=FILE"
"""What to do when a file is given for a model with several inputs."""


def feeds_from_files(
    specs: Sequence[TensorSpec],
    files: Sequence[str],
    preprocess: PreprocessSpec | None,
) -> dict[str, np.ndarray]:
    """Build feeds from ``[NAME=]FILE`` arguments.

    ``.npy`` gives one input (named, or the only one); an array one rank short of the input
    gets a batch axis. ``.npz`` gives inputs by key. Images go through ``preprocess`` and
    are stacked into one batch for the (only) input.
    """
    if not files:
        raise InputError("no input files given")
    by_name = {s.name: s for s in specs}
    feeds: dict[str, np.ndarray] = {}
    images: list[Path] = []
    for argument in files:
        name, path = _split(argument, by_name)
        if is_image_path(path):
            images.append(path)
        elif path.suffix == ".npz":
            for key, array in _load_npz(path).items():
                feeds[key] = _with_batch_axis(array, by_name.get(key))
        else:
            target = name or only_input(specs, str(path), hint=_NAME_IT, error=InputError)
            feeds[target] = _with_batch_axis(_load_npy(path), by_name.get(target))
    if images:
        if preprocess is None:
            raise InputError(
                f"{images[0]}: this model has no preprocessing spec; pass --preprocess spec.json "
                "or give the input as a .npy array"
            )
        feeds[only_input(specs, str(images[0]), hint=_NAME_IT, error=InputError)] = preprocess.load_batch(images)
    return feeds


def _split(argument: str, names: Mapping[str, TensorSpec]) -> tuple[str | None, Path]:
    name, sep, rest = argument.partition("=")
    if sep and name in names:
        return name, Path(rest)
    if sep and not Path(argument).exists():
        raise InputError(f"{argument}: '{name}' is not an input of this model (inputs: {', '.join(names)})")
    return None, Path(argument)


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"{path}: input file not found")


def _load_npy(path: Path) -> np.ndarray:
    _check_file(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy array ({exc})") from exc
    if not isinstance(array, np.ndarray):
        raise InputError(f"{path}: expected one array in a .npy file")
    return array


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    _check_file(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: not a readable .npz archive ({exc})") from exc


def _with_batch_axis(array: np.ndarray, spec: TensorSpec | None) -> np.ndarray:
    if spec is not None and array.ndim == spec.rank - 1:
        return array[None]
    return array


def summarize_outputs(
    outputs: Mapping[str, np.ndarray],
    top: int,
    labels: Sequence[str] = (),
    axes: Mapping[str, int | None] | None = None,
) -> list[dict[str, Any]]:
    """Per output: shape, dtype and, per sample along its batch axis (``axes``, default 0; None: one
    sample), the ``top`` largest values with labels; ``index`` is flat over the other axes."""
    summary = []
    for name, array in outputs.items():
        entry: dict[str, Any] = {"name": name, "shape": list(array.shape), "dtype": str(array.dtype), "top": []}
        if array.size and array.dtype.kind in "fiub":
            rows = _per_sample(array, (axes or {}).get(name, 0))
            label_fits = len(labels) == rows.shape[1]
            for row in rows:
                order = np.argsort(-row.astype(np.float64), kind="stable")[:top]
                entry["top"].append(
                    [
                        {
                            "index": int(i),
                            "label": labels[i] if label_fits else None,
                            "value": float(row[i]),
                        }
                        for i in order
                    ]
                )
        summary.append(entry)
    return summary


def _per_sample(array: np.ndarray, axis: int | None) -> np.ndarray:
    """``array`` as [samples, values]: one row per index of the batch ``axis`` (one row if None or 1-D)."""
    if array.ndim <= 1 or axis is None or not -array.ndim <= axis < array.ndim:
        return array.reshape(1, -1)
    return np.moveaxis(array, axis, 0).reshape(array.shape[axis], -1)


def parse_preprocess(path: str | os.PathLike[str] | None, card_spec: Mapping[str, Any] | None) -> PreprocessSpec | None:
    """The ``--preprocess`` JSON file if given, else the bundled model card's spec, else None."""
    if path is not None:
        return PreprocessSpec.from_json_file(path)
    if card_spec:
        return PreprocessSpec.from_dict(card_spec)
    return None
