"""What INT8 and FP16 cost and buy on real CNNs, measured in one interleaved run per case.

    python benchmarks/precision.py [--quick] [--out benchmarks/results]

Cases (every model is compared with its FP32 self on inputs it was not calibrated on):

* ``ppocr-det`` (PP-OCRv4 text detector, a real CNN: ~282 M MACs at 224 x 224, MobileNetV2
  size; 1.3 G at 480 x 480) at batch 1 and 8: FP32 vs INT8 in the layout this device's plan
  consumes (``edgerun.registry.int8_layout``: ``cpu`` on a CPU) vs INT8 shaped for TensorRT
  vs FP16 as the precision guard makes it vs FP16 without the guard (what TensorRT would have
  been given before). Calibrated on the card's own calibration set (what ``load(...,
  precision="int8")`` uses: 32 rendered text lines); every guarded model checked on the card's
  check set (text lines and natural photos, none calibrated on); evaluated on
  calibration/textlines (rendered text lines, letterboxed) by mask IoU and per-pixel agreement
  of the maps thresholded at 0.3.
* ``ppocr-cls`` (the small text-direction classifier, 16 M MACs): FP32 vs INT8 (this device's
  layout) vs FP16, both guarded, with accuracy on the labelled text-line set (upright = 0,
  turned 180 degrees = 1).

Writes ``precision.md`` and ``precision.json`` into ``--out``. Latencies are p50 of calls
interleaved across the compared models (``edgerun.compare.comparison``), one ORT intra-op thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import edgerun
from edgerun.compare.accuracy import text_direction_set
from edgerun.compare.comparison import Comparison, compare
from edgerun.data.preprocess import PreprocessSpec
from edgerun.data.samples import load_samples
from edgerun.models import ModelCard
from edgerun.precision.calibration import CalibrationData
from edgerun.precision.checks import CheckSamples
from edgerun.precision.convert import convert_fp16
from edgerun.precision.guard import QualityCheckError, guard_fp16, guard_int8
from edgerun.precision.quantize import QuantizeOptions
from edgerun.registry import int8_layout
from edgerun.runtime.backends.base import QdqLayout
from edgerun.runtime.modelfile import ModelFile

REPO = Path(__file__).resolve().parents[1]
GUARD_NOTES: list[str] = []
"""What the precision guard did to each guarded model (nodes kept in FP32, its figures), for the report."""
MASK_THRESHOLD = 0.3  # PaddleOCR's DB threshold


def detector_case(size: int, batches: tuple[int, ...], iterations: int, tmp: Path) -> dict[str, Any]:
    card = edgerun.models.card("ppocr-det")
    model = ModelFile.open(card.path)
    spec = PreprocessSpec.from_dict({**card.preprocessing, "height": size, "width": size})
    assert card.calibration is not None
    calib = load_samples(card.folder / card.calibration["source"], model.inputs, preprocess=spec)
    test = load_samples(REPO / "calibration/textlines", model.inputs, preprocess=spec, samples=48, seed=0)
    check = _card_check(card, model, spec)
    calibration = CalibrationData(calib.inputs, source=f"ppocr-det's calibration set ({card.calibration['source']})")
    layout = _layout(model)
    variants = {"fp32": str(card.path)}
    for target in dict.fromkeys((layout, "tensorrt")):
        path = tmp / f"det-int8-{target}-{size}.onnx"
        label = f"ppocr-det {size}x{size} int8 ({target})"
        try:
            guarded = guard_int8(model, path, calibration, check, QuantizeOptions(per_channel=True, target=target))
        except QualityCheckError as exc:  # what load() would do: refuse it, and serve FP32
            GUARD_NOTES.append(f"{label}: REFUSED, not measured: {exc.report['summary']}")
            continue
        GUARD_NOTES.append(f"{label}: {guarded.summary()}")
        variants[f"int8 ({target}{', default here' if target == layout else ''})"] = str(path)
    variants["fp16 (guarded)"] = str(tmp / "det-fp16.onnx")
    guarded = guard_fp16(model, tmp / "det-fp16.onnx", check)
    GUARD_NOTES.append(f"ppocr-det {size}x{size} fp16: {guarded.summary()}")
    variants["fp16 without the guard"] = str(tmp / "det-fp16-plain.onnx")
    convert_fp16(card.path, variants["fp16 without the guard"], shapes={"x": [1, 3, size, size]})
    results = {}
    for batch in batches:
        result = compare(
            list(variants.values()),
            test.inputs,
            names=list(variants),
            source=f"{test.count} calibration/textlines images letterboxed to {size}x{size}",
            latency_batch=batch,
            iterations=iterations if batch == 1 else max(5, iterations // 8),
            mask_threshold=MASK_THRESHOLD,
            threads=1,
        )
        results[f"ppocr-det {size}x{size} batch {batch}"] = result
    return results


def classifier_case(iterations: int, tmp: Path) -> dict[str, Comparison]:
    card = edgerun.models.card("ppocr-cls")
    model = ModelFile.open(card.path)
    spec = PreprocessSpec.from_dict(card.preprocessing)
    calib = load_samples(card.folder / "calibration", model.inputs, preprocess=spec)
    inputs, labels = text_direction_set(sorted((REPO / "calibration/textlines").glob("*.jpg")), spec)
    check = _card_check(card, model, spec)
    int8 = tmp / "cls-int8.onnx"
    calibration = CalibrationData(calib.inputs, source="ppocr-cls calibration")
    guarded = guard_int8(model, int8, calibration, check, QuantizeOptions(per_channel=True, target=_layout(model)))
    GUARD_NOTES.append(f"ppocr-cls int8: {guarded.summary()}")
    fp16 = tmp / "cls-fp16.onnx"
    GUARD_NOTES.append(f"ppocr-cls fp16: {guard_fp16(model, fp16, check).summary()}")
    result = compare(
        [str(card.path), str(int8), str(fp16)],
        {"x": inputs},
        labels=labels,
        names=["fp32", f"int8 ({_layout(model)}, default here)", "fp16 (guarded)"],
        source="calibration/textlines, upright and turned 180 degrees",
        iterations=iterations,
        threads=1,
    )
    return {"ppocr-cls 48x192 batch 1": result}


def _layout(model: ModelFile) -> QdqLayout:
    """The INT8 layout ``load(..., precision="int8")`` and ``edgerun quantize`` use on this device."""
    return int8_layout(model, edgerun.current_device())[0]


def _card_check(card: ModelCard, model: ModelFile, spec: PreprocessSpec) -> CheckSamples:
    """The card's held-out check set at this preprocessing (what the guard checks bundled models on)."""
    assert card.check is not None
    source = (card.folder / card.check["source"]).resolve()
    loaded = load_samples(source, model.inputs, preprocess=spec, samples=card.check["samples"])
    return CheckSamples(loaded.inputs, f"{card.name}'s check set ({card.check['source']})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations and only 224x224 (a smoke run)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    iterations = 20 if args.quick else 80
    tables: dict[str, Comparison] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tables |= detector_case(224, (1,) if args.quick else (1, 8), iterations, Path(tmp))
        if not args.quick:
            tables |= detector_case(480, (1,), max(10, iterations // 4), Path(tmp))
        tables |= classifier_case(iterations * 5, Path(tmp))
    profile = edgerun.current_device()
    header = (
        f"Measured {tables[next(iter(tables))].rows[0].latency_ms.count} interleaved calls per model, "
        f"1 intra-op thread, on {profile.cpu} ({profile.cores} cores; {' '.join(profile.cpu_features)}), "
        f"onnxruntime {profile.versions['onnxruntime']}; command: python benchmarks/precision.py\n"
    )
    markdown = [f"# INT8 and FP16 versus FP32\n\n{header}"]
    for name, table in tables.items():
        markdown.append(f"\n## {name}\n\n")
        markdown.append(_with_mask_columns(table))
    markdown.append("\n## What the precision guard did\n\n" + "".join(f"- {note}\n" for note in GUARD_NOTES))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "precision.md").write_text("".join(markdown))
    (args.out / "precision.json").write_text(
        json.dumps({**{name: t.to_dict() for name, t in tables.items()}, "guard": GUARD_NOTES}, indent=2, default=str)
        + "\n"
    )
    print("".join(markdown))
    return 0


def _with_mask_columns(table: Comparison) -> str:
    """The comparison's markdown, plus mask IoU / pixel agreement rows where they exist."""
    text = table.markdown()
    masks = [
        f"- {row.label}: mask IoU {row.outputs[0].mask_iou:.4f}, pixel agreement {row.outputs[0].mask_agreement:.4%}"
        for row in table.rows[1:]
        if row.outputs and row.outputs[0].mask_iou is not None
    ]
    return text + ("\nAgainst FP32, maps thresholded at 0.3:\n\n" + "\n".join(masks) + "\n" if masks else "")


if __name__ == "__main__":
    sys.exit(main())
