"""Activation ranges for INT8: measured with ONNX Runtime's calibrators and cached per model, data and method.

Kept apart from `quantize` so that the ranges, the expensive part, are computed once for every
quantization setting that shares them, and a corrupt cache file is rebuilt, never trusted.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgerun import __version__
from edgerun.errors import ConversionError
from edgerun.storage import cache_dir, digest, writable

if TYPE_CHECKING:
    from edgerun.precision.calibration import CalibrationData
    from edgerun.runtime.modelfile import ModelFile

_log = logging.getLogger("edgerun")

_CALIBRATOR_SETTINGS = "entropy bins 2048/128"
"""Part of calibration cache keys: change it when `calibrate` changes what it computes."""


def range_cache_path(source: ModelFile, data: CalibrationData, method: str, folder: Path | None) -> Path:
    """Where the ranges of ``source`` calibrated on ``data`` with ``method`` are cached (keyed by both hashes)."""
    import onnxruntime

    key = digest(source.sha256, data.sha256, method, _CALIBRATOR_SETTINGS, onnxruntime.__version__, __version__)
    return writable(folder or cache_dir() / "calibration") / f"{source.sha256[:16]}-{method}-{key[:16]}.json"


def cached_ranges_usable(path: Path, method: Any) -> bool:
    """A cache file ORT can load, for this method, with finite ranges; anything else is removed."""
    if path.exists() and not path.is_file():
        raise ConversionError(f"{path} is a folder, not a calibration cache file: remove it or choose another cache")
    if not path.is_file():
        return False
    from edgerun.precision.rangefile import load_ranges

    try:
        ranges = load_ranges(path)
        if ranges.calibration_method != method or not ranges.data:
            raise ValueError("wrong calibration method or no tensors")
        for data in ranges.data.values():
            low, high = data.range_value
            if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
                raise ValueError("non-finite range")
        return True
    except Exception as exc:  # truncated JSON, wrong keys, dtypes or method: all mean "rebuild"
        _log.warning("calibration cache %s is corrupt (%s: %s): rebuilding it", path, type(exc).__name__, exc)
        path.unlink(missing_ok=True)
        return False


def calibrate(prepared: Path, calibration: CalibrationData, method: Any, cache_file: Path, tmp: Path) -> None:
    """Measure activation ranges and store them in ``cache_file`` (ORT's calibration cache format).

    Done here rather than inside ``quantize_static`` so that entropy calibration gets a real
    search: ORT's default of 128 histogram bins for 128 quantized bins leaves one candidate
    threshold, which makes entropy identical to min/max.
    """
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    from edgerun.precision.rangefile import save_ranges

    extra = {"num_bins": 2048, "num_quantized_bins": 128} if method == CalibrationMethod.Entropy else {}
    calibrator = create_calibrator(
        prepared,
        None,
        augmented_model_path=str(tmp / "augmented.onnx"),
        calibrate_method=method,
        extra_options=extra,
    )
    calibration.rewind()
    chatter = io.StringIO()  # ORT prints histogram progress for entropy/percentile: keep stdout clean
    try:
        with contextlib.redirect_stdout(chatter):
            calibrator.collect_data(calibration)
            ranges = calibrator.compute_data()
    except Exception as exc:
        raise ConversionError(f"{prepared.name}: calibration failed: {exc}") from exc
    finally:
        calibration.rewind()
        if chatter.getvalue():
            _log.debug("onnxruntime calibration: %s", chatter.getvalue().strip())
    save_ranges(ranges, cache_file)
