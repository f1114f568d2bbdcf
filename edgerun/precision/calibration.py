"""Calibration data: the samples INT8 quantization measures activation ranges on.

`CalibrationData` has the shape of ONNX Runtime's ``CalibrationDataReader`` (``get_next()``
returns a feed dict or None, ``rewind()`` starts over), so it plugs straight into
``onnxruntime.quantization``. It is built from an image folder (through the model's
`PreprocessSpec`), a ``.npy`` / ``.npz`` array set, or a Python iterable; sampling is
deterministic (``samples`` and ``seed``), and ``sha256`` identifies the exact data so that
calibration results can be cached.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from edgerun.data.preprocess import PreprocessSpec
from edgerun.data.samples import Progress, load_samples, only_input, pick
from edgerun.errors import CalibrationError
from edgerun.specs import TensorSpec


class CalibrationData:
    """Samples per model input (batch axis first), served in batches of ``batch_size``."""

    def __init__(self, samples: Mapping[str, np.ndarray], *, batch_size: int = 1, source: str = "<arrays>") -> None:
        if not samples:
            raise CalibrationError(f"{source}: no calibration inputs")
        counts = {name: len(array) for name, array in samples.items()}
        if len(set(counts.values())) != 1:
            raise CalibrationError(f"{source}: inputs have different sample counts {counts}")
        if next(iter(counts.values())) == 0:
            raise CalibrationError(f"{source}: no calibration samples")
        if batch_size < 1:
            raise CalibrationError(f"{source}: batch size must be >= 1, got {batch_size}")
        self.samples = {name: np.ascontiguousarray(array) for name, array in samples.items()}
        self.batch_size = batch_size
        self.source = source
        self._position = 0

    def __len__(self) -> int:
        """Number of batches."""
        return -(-self.count // self.batch_size)

    @property
    def count(self) -> int:
        return len(next(iter(self.samples.values())))

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch, or None when all were served (ONNX Runtime's reader protocol)."""
        if self._position >= self.count:
            return None
        start, self._position = self._position, self._position + self.batch_size
        return {name: array[start : self._position] for name, array in self.samples.items()}

    def rewind(self) -> None:
        self._position = 0

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        self.rewind()
        while (batch := self.get_next()) is not None:
            yield batch
        self.rewind()

    @property
    def sha256(self) -> str:
        """Identity of the data (names, shapes, dtypes, bytes): part of calibration cache keys."""
        digest = hashlib.sha256()
        for name in sorted(self.samples):
            array = self.samples[name]
            digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()

    def check_fits(self, specs: Sequence[TensorSpec], model_name: str) -> None:
        """Every model input has samples of the right dtype and fixed dims; raise CalibrationError if not."""
        missing = [s.name for s in specs if s.name not in self.samples]
        if missing:
            raise CalibrationError(
                f"{self.source}: no calibration samples for input(s) {', '.join(missing)} of {model_name} "
                f"(the data has {', '.join(self.samples)})"
            )
        for spec in specs:
            array = self.samples[spec.name]
            if array.dtype != spec.dtype:
                raise CalibrationError(
                    f"{self.source}: samples for input '{spec.name}' are {array.dtype}, {model_name} expects "
                    f"{spec.dtype.name}"
                )
            if array.ndim != spec.rank:
                raise CalibrationError(
                    f"{self.source}: samples for input '{spec.name}' have shape {list(array.shape)} (batch first), "
                    f"{model_name} expects {list(spec.shape)}"
                )
            for axis, want in enumerate(spec.shape):
                if axis > 0 and isinstance(want, int) and array.shape[axis] != want:
                    raise CalibrationError(
                        f"{self.source}: samples for input '{spec.name}' have size {array.shape[axis]} at axis "
                        f"{axis}, {model_name} expects {want} ({list(spec.shape)}); wrong image size or "
                        "preprocessing?"
                    )


def open_calibration(
    source: str | os.PathLike[str] | np.ndarray | Mapping[str, np.ndarray] | Iterable[Any],
    inputs: Sequence[TensorSpec],
    *,
    preprocess: PreprocessSpec | None = None,
    samples: int | None = None,
    seed: int = 0,
    batch_size: int = 1,
    progress: Progress | None = None,
) -> CalibrationData:
    """Calibration data for a model with ``inputs`` from an image folder, array file, arrays or iterable."""
    if isinstance(source, (str, os.PathLike)):
        loaded = load_samples(source, inputs, preprocess=preprocess, samples=samples, seed=seed, progress=progress)
        return CalibrationData(loaded.inputs, batch_size=batch_size, source=loaded.source)
    if isinstance(source, np.ndarray):
        arrays = {only_input(inputs, "<array>"): source}
        label = "<array>"
    elif isinstance(source, Mapping):
        arrays = {str(k): np.asarray(v) for k, v in source.items()}
        label = "<arrays>"
    else:
        arrays = _from_iterable(source, inputs)
        label = "<iterable>"
    if not arrays:
        raise CalibrationError(f"{label}: no calibration arrays")
    index = pick(len(next(iter(arrays.values()))), samples, seed)
    return CalibrationData({k: v[index] for k, v in arrays.items()}, batch_size=batch_size, source=label)


def _from_iterable(source: Iterable[Any], inputs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """Items are arrays (one sample, or a batch with the batch axis) or dicts of them."""
    collected: dict[str, list[np.ndarray]] = {}
    try:
        items = list(source)
    except TypeError as exc:
        raise CalibrationError(f"calibration source of type {type(source).__name__} is not iterable") from exc
    if not items:
        raise CalibrationError("calibration iterable yielded nothing")
    ranks = {s.name: s.rank for s in inputs}
    for item in items:
        feed = dict(item) if isinstance(item, Mapping) else {only_input(inputs, "<iterable>"): item}
        for name, value in feed.items():
            array = np.asarray(value)
            if name in ranks and array.ndim == ranks[name] - 1:
                array = array[None]
            collected.setdefault(str(name), []).append(array)
    try:
        return {name: np.concatenate(parts) for name, parts in collected.items()}
    except ValueError as exc:
        raise CalibrationError(f"calibration samples have inconsistent shapes: {exc}") from exc
