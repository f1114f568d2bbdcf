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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgerun import __version__
from edgerun.errors import UnsupportedPrecisionError
from edgerun.precision.checks import CheckSamples
from edgerun.precision.guard import QualityCheckError
from edgerun.runtime.modelfile import ModelFile
from edgerun.storage import ManifestStore, cache_dir, digest, read_json, writable

if TYPE_CHECKING:
    from edgerun.models import ModelCard
    from edgerun.precision.quantize import QuantizeOptions
    from edgerun.quality import QualityBudget
    from edgerun.roles import ModelRoles

_log = logging.getLogger("edgerun")


@dataclass(frozen=True)
class Artifact:
    path: Path
    precision: str
    built: bool
    """True when this call built it; False when it came from the cache."""
    detail: str
    check: dict[str, Any] | None = None
    """The precision guard's report (`GuardResult.to_dict`), recorded in the manifest; None when not checked."""


def precision_artifact(
    model: ModelFile,
    precision: str,
    *,
    card: ModelCard | None = None,
    calibration: Any = None,
    quantization: QuantizeOptions | None = None,
    folder: Path | None = None,
    budget: QualityBudget | Mapping[str, float] | None = None,
    check_data: Any = None,
    roles: ModelRoles | None = None,
) -> Artifact:
    """The cached ``precision`` version of ``model``, built and checked against FP32 first if needed.

    The check (`edgerun.precision.guard`) holds the model to ``budget`` (defaults per precision;
    a mapping overrides single metrics) on ``check_data``, else the card's check set, else data
    held apart from calibration, else random inputs. A model that misses it is mixed (nodes kept
    in FP32); if no mix meets it, `QualityCheckError` says why, and that verdict is cached too. ``roles``
    (default the model's) shape random check inputs: token ids within the vocabulary, constants at their value.
    """
    spot = _locate(model, precision, card, calibration, quantization, folder, budget, check_data, roles)
    store, entry, verdict, expected = spot.store, spot.entry, spot.entry.with_suffix(".verdict"), spot.expected
    source, samples, quantization, budget, check_data = (
        spot.source, spot.samples, spot.quantization, spot.budget, spot.check_data
    )  # fmt: skip
    warning = f"cached {precision} model %s is stale or corrupt: rebuilding it (%s)"
    with store.lock(entry):  # a second process converting this model waits here, then finds it cached
        found = store.lookup(entry, expected, _opens, warning=warning)
        if found is not None:
            return Artifact(
                entry, precision, False, f"{precision} model from the cache ({entry})", found.manifest.get("check")
            )
        refused = store.lookup(
            verdict, expected, warning=f"cached {precision} verdict %s is stale: checking again (%s)"
        )
        if refused is not None:
            raise QualityCheckError(str(refused.manifest.get("message")), dict(refused.manifest.get("check") or {}))
        # about the size of the result, for a full disk's message: fp16 halves the weights, int8 quarters them
        try:
            with store.writing(entry, size=model.path.stat().st_size // (4 if precision == "int8" else 2)) as temp:
                if precision == "int8":
                    detail, check = _build_int8(
                        model, temp, card, source, samples, quantization, budget, check_data, roles
                    )
                else:
                    detail, check = _build_fp16(model, temp, card, budget, check_data, roles)
        except QualityCheckError as exc:
            store.store(verdict, b"refused", {**expected, "message": str(exc), "check": exc.report})
            raise
        store.seal(entry, {**expected, "source_path": str(model.path), "detail": detail, "check": check})
    return Artifact(entry, precision, True, f"{detail}; cached at {entry}", check)


def cached_check(
    model: ModelFile,
    precision: str,
    *,
    card: ModelCard | None = None,
    quantization: QuantizeOptions | None = None,
    folder: Path | None = None,
    roles: ModelRoles | None = None,
) -> dict[str, Any] | None:
    """The guard's recorded check of the cached ``precision`` version (default settings), without building one.

    None when no such version was made yet (the first ``load`` makes and checks it); `edgerun info` shows it.
    """
    try:
        spot = _locate(model, precision, card, None, quantization, folder, None, None, roles)
    except UnsupportedPrecisionError:  # INT8 without calibration data: nothing to look up
        return None
    for path in (spot.entry, spot.entry.with_suffix(".verdict")):
        if spot.store.problem(path, spot.expected) is None:  # looks only: a bad entry is the next load's to rebuild
            manifest = read_json(spot.store.manifest_path(path))
            check = manifest.get("check") if isinstance(manifest, dict) else None
            return dict(check) if isinstance(check, dict) else None
    return None


@dataclass(frozen=True)
class _Spot:
    """Where a precision version of a model lives in the cache, and the settings that name it."""

    store: ManifestStore
    entry: Path
    expected: dict[str, Any]
    source: Any
    samples: int | None
    quantization: QuantizeOptions
    budget: QualityBudget
    check_data: Any


def _locate(
    model: ModelFile,
    precision: str,
    card: ModelCard | None,
    calibration: Any,
    quantization: QuantizeOptions | None,
    folder: Path | None,
    budget: QualityBudget | Mapping[str, float] | None,
    check_data: Any,
    roles: ModelRoles | None = None,
) -> _Spot:
    """The cache entry for these settings (the key covers every setting that changes the result)."""
    import onnxruntime

    from edgerun.precision.quantize import QuantizeOptions

    quantization = quantization or QuantizeOptions()
    resolved = resolve_budget(precision, budget)
    settings: dict[str, Any] = {"precision": precision, "onnxruntime": onnxruntime.__version__, "edgerun": __version__}
    source: Any = None
    samples: int | None = None
    if precision == "int8":
        if quantization.mode != "dynamic" or calibration is not None or (card is not None and card.calibration):
            source, samples = _calibration_source(model, card, calibration, roles)
        fingerprint = _fingerprint(source) if source is not None else None  # None: dynamic, no calibration
        settings.update(quantization.key(), calibration=fingerprint, samples=samples)
    elif precision == "fp16":
        if check_data is None and calibration is not None:  # FP16 needs no calibration: the data checks it
            check_data = calibration
    else:
        raise UnsupportedPrecisionError(
            f"{model.path}: edgerun cannot convert an {model.precision} model to {precision}"
        )
    check_data = _check_data_once(check_data, model, roles)
    settings["check"] = {"budget": resolved.to_dict(), "data": _check_fingerprint(card, check_data)}
    if roles is not None and roles != model.roles and isinstance(settings["check"]["data"], str):
        settings["check"]["roles"] = [role.describe() for role in roles.inputs]  # they shape random check inputs
    key = digest(model.sha256, settings)
    store = ManifestStore(writable(folder or cache_dir() / "models"))
    entry = store.root / model.sha256[:16] / f"{precision}-{key[:16]}.onnx"
    expected = {"source_sha256": model.sha256, "settings": settings}
    return _Spot(store, entry, expected, source, samples, quantization, resolved, check_data)


def resolve_budget(precision: str, budget: QualityBudget | Mapping[str, float] | None) -> QualityBudget:
    """The budget for ``precision``: the defaults, with a mapping's metrics overriding them, or ``budget`` itself."""
    from edgerun.quality import QualityBudget

    if isinstance(budget, QualityBudget):
        return budget
    defaults = QualityBudget.for_precision(precision if precision in ("fp16", "int8") else "fp16")
    return defaults.with_overrides(**dict(budget)) if budget else defaults


def _check_data_once(check_data: Any, model: ModelFile, roles: ModelRoles | None = None) -> Any:
    """In-memory check data (arrays, a dict, feed dicts) read once, along each input's batch axis: it is both
    hashed for the key and checked on. Paths, `CalibrationData` and `CheckSamples` stay as they are; a dict
    with ``stream_<input>`` arrays (check streams of a stateful model) becomes `CheckSamples` with streams."""
    from edgerun.precision.calibration import CalibrationData, open_calibration
    from edgerun.precision.checks import STREAM_PREFIX, stream_samples

    if check_data is None or isinstance(check_data, (str, os.PathLike, CalibrationData, CheckSamples)):
        return check_data
    roles = roles or model.roles
    if isinstance(check_data, Mapping) and any(str(k).startswith(STREAM_PREFIX) for k in check_data):
        rest = {k: v for k, v in check_data.items() if not str(k).startswith(STREAM_PREFIX)}
        given = {k[len(STREAM_PREFIX) :]: v for k, v in check_data.items() if str(k).startswith(STREAM_PREFIX)}
        opened = open_calibration(rest, model.inputs, roles=roles)
        single = CheckSamples(dict(opened.samples), opened.source, False, dict(opened.batch_axes))
        return single.with_streams(stream_samples(given, model, roles, "the given check streams", single))
    return open_calibration(check_data, model.inputs, roles=roles)


def _check_fingerprint(card: ModelCard | None, check_data: Any) -> Any:
    """Identity of the check data (part of the key: other check data, another verdict)."""
    if check_data is not None:
        if isinstance(check_data, (str, os.PathLike)):
            return _fingerprint(check_data)
        return check_data.fingerprint() if isinstance(check_data, CheckSamples) else check_data.sha256
    if card is not None and card.check:
        found = ["card", card.check, _fingerprint(card.folder / card.check["source"])]
        if card.check.get("streams"):  # the stateful model's check streams (a second file)
            found.append(_fingerprint(card.folder / card.check["streams"]))
        return found
    return "held out from calibration, or random"


def _opens(path: Path) -> None:
    """Reject a cached model that does not open as a model (raises the `ModelError` saying why)."""
    ModelFile.open(path)


def _calibration_source(
    model: ModelFile, card: ModelCard | None, calibration: Any, roles: ModelRoles | None = None
) -> tuple[Any, int | None]:
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
        return open_calibration(calibration, model.inputs, roles=roles or model.roles), None
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
    budget: QualityBudget,
    check_data: Any,
    roles: ModelRoles | None = None,
) -> tuple[str, dict[str, Any]]:
    """Quantize ``model`` into ``target`` (a cache's temporary path), checked; returns what was done and the check."""
    from edgerun.data.files import parse_preprocess
    from edgerun.precision.calibration import CalibrationData, open_calibration
    from edgerun.precision.checks import check_samples, hold_out
    from edgerun.precision.guard import guard_int8

    data: CalibrationData | None
    if source is None:  # dynamic INT8 without calibration data: activation ranges are computed per call
        data = None
    elif isinstance(source, CalibrationData):
        data = source
    else:
        spec = parse_preprocess(None, card.preprocessing if card is not None else None)  # {}: not an image model
        data = open_calibration(source, model.inputs, preprocess=spec, samples=samples)
    if data is None or check_data is not None or (card is not None and card.check):
        check = check_samples(model, card, check_data, roles=roles)
    else:
        data, held = hold_out(data)
        check = held or check_samples(model, card, data, roles=roles)
    result = guard_int8(model, target, data, check, options, budget, declared=_declared(card))
    if options.mode == "dynamic" or data is None:  # no data: dynamic, as _locate allows only then
        how = f"int8 dynamic (weights INT8, activation ranges per call; {options.why or 'as asked'})"
    else:
        how = (
            f"int8 Q/DQ ({options.method}, {'per-channel' if options.per_channel else 'per-tensor'}) "
            f"calibrated on {data.count} samples of {data.source}"
        )
    return (
        f"{how}; {result.summary()}",
        result.to_dict(),
    )


def _build_fp16(
    model: ModelFile,
    target: Path,
    card: ModelCard | None,
    budget: QualityBudget,
    check_data: Any,
    roles: ModelRoles | None = None,
) -> tuple[str, dict[str, Any]]:
    """Convert ``model`` to FP16 at ``target`` (a cache's temporary path), checked; returns what was done, the check."""
    from edgerun.precision.checks import check_samples
    from edgerun.precision.guard import guard_fp16

    samples = check_samples(model, card, check_data, roles=roles)
    result = guard_fp16(model, target, samples, budget, declared=_declared(card))
    return f"fp16 weights with fp32 inputs/outputs; {result.summary()}", result.to_dict()


def _declared(card: ModelCard | None) -> dict[str, Any] | None:
    """What the card declares about its outputs (detector layouts), for the quality metrics."""
    return getattr(card, "outputs", None) or None
