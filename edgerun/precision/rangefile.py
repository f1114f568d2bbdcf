"""Calibration ranges on disk, and handing cached ranges to ONNX Runtime's ``quantize_static``, on every ORT.

Newer onnxruntime releases read and write the range cache themselves (``save_tensors_data``,
``load_tensors_data`` and ``quantize_static(calibration_cache_path=...)``). Older ones (1.20,
what JetPack 6 users get) have none of the three: there edgerun writes the ranges as JSON of its
own and gives them to ``quantize_static`` through a calibrator that returns them instead of
measuring, swapped in for ``create_calibrator`` for the duration of the call (one call at a time).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgerun.errors import ConversionError
from edgerun.storage import write_json

FORMAT = "edgerun-ranges-1"
"""The ``format`` field of edgerun's own range files (older ORT only)."""
_swap_lock = threading.Lock()


def native_cache() -> bool:
    """Whether this onnxruntime's ``quantize_static`` reads and writes the range cache itself."""
    from onnxruntime.quantization import quantize_static

    return "calibration_cache_path" in inspect.signature(quantize_static).parameters


def save_ranges(ranges: Any, path: Path) -> None:
    """Write ``ranges`` (ORT's ``TensorsData``) to ``path``: ORT's format where it has one, else ours (written
    all or nothing by `storage.write_json`, so a full or read-only disk raises `StorageWriteError`)."""
    if native_cache():
        from onnxruntime.quantization.calibrate import save_tensors_data

        save_tensors_data(ranges, path)
        return
    payload = {
        "format": FORMAT,
        "calibration_method": ranges.calibration_method.name,
        "data": {
            name: {"lowest": _floats(data.range_value[0]), "highest": _floats(data.range_value[1])}
            for name, data in ranges.data.items()
        },
    }
    write_json(path, payload)


def load_ranges(path: Path) -> Any:
    """The ``TensorsData`` in ``path``; any error (ValueError, KeyError, ...) means the file is unusable."""
    if native_cache():
        from onnxruntime.quantization.calibrate import load_tensors_data

        return load_tensors_data(path)
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData

    payload = json.loads(path.read_text())
    if payload.get("format") != FORMAT:
        raise ValueError(f"not an edgerun range file (format {payload.get('format')!r})")
    method = CalibrationMethod[payload["calibration_method"]]
    data = {
        str(name): TensorData(lowest=_array(entry["lowest"]), highest=_array(entry["highest"]))
        for name, entry in payload["data"].items()
    }
    return TensorsData(method, data)


@contextlib.contextmanager
def fixed_ranges(ranges: Any) -> Iterator[None]:
    """Within the block, ``quantize_static`` (older ORT) takes ``ranges`` instead of calibrating."""
    from onnxruntime.quantization import quantize_static

    namespace = quantize_static.__globals__
    if "create_calibrator" not in namespace:
        raise ConversionError(
            "this onnxruntime's quantize_static neither reads a calibration cache nor calibrates through "
            "create_calibrator: edgerun cannot hand it cached ranges (onnxruntime 1.20 and 1.32 are tested)"
        )

    def create_calibrator(*args: Any, **kwargs: Any) -> _FixedCalibrator:
        return _FixedCalibrator(ranges)

    with _swap_lock:
        real = namespace["create_calibrator"]
        namespace["create_calibrator"] = create_calibrator
        try:
            yield
        finally:
            namespace["create_calibrator"] = real


class _FixedCalibrator:
    """A calibrator that has already measured: ``collect_data`` reads nothing, ``compute_data`` returns the ranges."""

    def __init__(self, ranges: Any) -> None:
        self.ranges = ranges

    def collect_data(self, reader: Any) -> None:
        return None

    def compute_data(self) -> Any:
        return self.ranges


def _floats(value: Any) -> Any:
    """A range as JSON numbers, nested like the array (per-channel ranges keep their shape)."""
    return np.asarray(value, dtype=np.float32).tolist()


def _array(value: Any) -> np.ndarray:
    array = np.asarray(value, dtype=np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError("non-finite range")
    return array
