"""Converted models (INT8 Q/DQ, FP16) made on demand for ``load(..., precision=...)`` and cached.

An entry is keyed by the source model's SHA-256, the precision and every setting that changes
the result (quantization options, the calibration source's fingerprint, onnxruntime and
edgerun versions). The cache is a `ManifestStore`: beside each model a manifest records its own
SHA-256; an entry whose manifest is missing or corrupt, or whose file does not match it, is
rebuilt (with a warning), never loaded. A build runs under the entry's lock (a second process
converting the same model waits, then finds it) and is written atomically, so an interrupted
build leaves nothing behind; a full or read-only disk raises `CacheWriteError`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgerun import __version__
from edgerun.errors import UnsupportedPrecisionError
from edgerun.runtime.modelfile import ModelFile
from edgerun.storage import ManifestStore, cache_dir, digest, writable

if TYPE_CHECKING:
    from edgerun.models import ModelCard
    from edgerun.precision.quantize import QuantizeOptions

_log = logging.getLogger("edgerun")


@dataclass(frozen=True)
class Artifact:
    path: Path
    precision: str
    built: bool
    """True when this call built it; False when it came from the cache."""
    detail: str


def precision_artifact(
    model: ModelFile,
    precision: str,
    *,
    card: ModelCard | None = None,
    calibration: Any = None,
    quantization: QuantizeOptions | None = None,
    folder: Path | None = None,
) -> Artifact:
    """The cached ``precision`` version of ``model``, built first if needed."""
    import onnxruntime

    from edgerun.precision.quantize import QuantizeOptions

    quantization = quantization or QuantizeOptions()
    settings: dict[str, Any] = {"precision": precision, "onnxruntime": onnxruntime.__version__, "edgerun": __version__}
    if precision == "int8":
        source, samples = _calibration_source(model, card, calibration)
        settings.update(quantization.key(), calibration=_fingerprint(source), samples=samples)
    elif precision != "fp16":
        raise UnsupportedPrecisionError(
            f"{model.path}: edgerun cannot convert an {model.precision} model to {precision}"
        )
    key = digest(model.sha256, settings)
    store = ManifestStore(writable(folder or cache_dir() / "models"))
    entry = store.root / model.sha256[:16] / f"{precision}-{key[:16]}.onnx"
    expected = {"source_sha256": model.sha256, "settings": settings}
    warning = f"cached {precision} model %s is stale or corrupt: rebuilding it (%s)"
    with store.lock(entry):  # a second process converting this model waits here, then finds it cached
        if store.lookup(entry, expected, _opens, warning=warning) is not None:
            return Artifact(entry, precision, False, f"{precision} model from the cache ({entry})")
        # about the size of the result, for a full disk's message: fp16 halves the weights, int8 quarters them
        with store.writing(entry, size=model.path.stat().st_size // (4 if precision == "int8" else 2)) as temp:
            if precision == "int8":
                detail = _build_int8(model, temp, card, source, samples, quantization)
            else:
                detail = _build_fp16(model, temp, card)
        store.seal(entry, {**expected, "source_path": str(model.path), "detail": detail})
    return Artifact(entry, precision, True, f"{detail}; cached at {entry}")


def _opens(path: Path) -> None:
    """Reject a cached model that does not open as a model (raises the `ModelError` saying why)."""
    ModelFile.open(path)


def _calibration_source(model: ModelFile, card: ModelCard | None, calibration: Any) -> tuple[Any, int | None]:
    """The calibration source and its sample count; in-memory data is read once, here.

    Arrays, mappings and iterables become `CalibrationData` at once, so that the cache key is
    the data's own SHA-256 (an iterable can be read only once; a ``repr`` would abbreviate).
    """
    if calibration is not None:
        if isinstance(calibration, (str, os.PathLike)):
            return calibration, None
        from edgerun.precision.calibration import CalibrationData, open_calibration

        if isinstance(calibration, CalibrationData):
            return calibration, None
        return open_calibration(calibration, model.inputs), None
    if card is not None and card.calibration:
        return card.folder / card.calibration["source"], card.calibration.get("samples")
    raise UnsupportedPrecisionError(
        f"{model.path}: precision int8 needs calibration data: load(..., precision='int8', calibration='images/') "
        "with images or arrays like your real inputs, or make the model with `edgerun quantize` first"
    )


def _fingerprint(source: Any) -> Any:
    """A cheap identity of a calibration source: file names, sizes and times, or array bytes."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).resolve()
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        return [str(path)] + [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files if p.exists()]
    from edgerun.precision.calibration import CalibrationData

    if isinstance(source, CalibrationData):
        return source.sha256
    raise TypeError(f"unexpected calibration source {type(source).__name__}")


def _build_int8(
    model: ModelFile,
    target: Path,
    card: ModelCard | None,
    source: Any,
    samples: int | None,
    options: QuantizeOptions,
) -> str:
    from edgerun.data.preprocess import PreprocessSpec
    from edgerun.precision.calibration import CalibrationData, open_calibration
    from edgerun.precision.quantize import quantize

    if isinstance(source, CalibrationData):
        data = source
    else:
        spec = PreprocessSpec.from_dict(card.preprocessing) if card is not None else None
        data = open_calibration(source, model.inputs, preprocess=spec, samples=samples)
    result = quantize(model.path, target, data, options)
    if result.quantized_count == 0:  # raised inside the cache's write: only an accepted model reaches it
        raise UnsupportedPrecisionError(f"{model.path}: INT8 quantization quantized nothing; precision int8 is moot")
    ops = ", ".join(f"{count} {op}" for op, count in sorted(result.quantized.items()))
    return f"int8 Q/DQ ({options.method}, {'per-channel' if options.per_channel else 'per-tensor'}; {ops}) " + (
        f"calibrated on {data.count} samples of {data.source}"
    )


def _build_fp16(model: ModelFile, target: Path, card: ModelCard | None) -> str:
    """Convert ``model`` to FP16 at ``target`` (a temporary path of the cache); returns what was done."""
    from edgerun.precision.convert import convert_fp16

    result = convert_fp16(model.path, target, shapes=card.input_shapes if card else None)
    error = f", max abs error {result.max_abs_error:.2g} vs fp32" if result.max_abs_error is not None else ""
    return f"fp16 weights with fp32 inputs/outputs ({result.fp16_tensors} tensors{error})"
