"""`QualityBudget`: per-precision defaults a correct conversion passes and a broken one fails; sentences."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerun.errors import ConfigError
from edgerun.quality import OutputQuality, QualityBudget, output_quality

from .outputs import yolo_output

seeds = st.integers(0, 2**32 - 1)
FP16, INT8 = QualityBudget.for_precision("fp16"), QualityBudget.for_precision("int8")


def _outputs(seed: int) -> dict[str, np.ndarray]:
    """One output of each kind, as a model would give them for 6 samples (the logits of a confident classifier:
    near ties flip under any rounding, and with 6 samples one flip is 17 points of top-1 agreement)."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((6, 10))
    logits[np.arange(6), rng.integers(0, 10, 6)] += 6
    return {
        "logits": (logits * 4).astype(np.float32),
        "map": (1 / (1 + np.exp(-rng.standard_normal((6, 1, 16, 16)) * 4))).astype(np.float32),
        "features": rng.standard_normal((6, 8, 4, 4)).astype(np.float32),
        "output0": yolo_output(rng, samples=6, classes=3, anchors=100, objects=10)[0],
    }


def _judge(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> list[OutputQuality]:
    return [output_quality(name, reference[name], candidate[name]) for name in reference]


def test_defaults() -> None:
    assert QualityBudget(0.999, 0.99, 0.99, 0.95, 0.95, 0.10) == FP16
    assert QualityBudget(0.90, 0.90, 0.95, 0.85, 0.90, 0.25) == INT8
    assert INT8.min_detections_kept == 0.90, "the issue's acceptance: INT8 keeps >= 90% of FP32 detections"
    for field in ("min_cosine", "min_slice_cosine", "min_top1", "min_mask_iou", "min_detections_kept"):
        assert getattr(FP16, field) >= getattr(INT8, field), field
    with pytest.raises(ConfigError, match="no quality budget for precision 'fp32': fp16 or int8"):
        QualityBudget.for_precision("fp32")
    assert FP16.describe().startswith("cosine >= 0.999, slice cosine >= 0.99, top-1 agreement >= 99%")


@settings(max_examples=25, deadline=None)
@given(seed=seeds)
def test_fp16_rounding_passes_the_fp16_budget(seed: int) -> None:
    """Every output rounded to float16 (what FP16 storage alone does) is far inside the FP16 budget."""
    reference = _outputs(seed)
    candidate = {name: value.astype(np.float16).astype(np.float32) for name, value in reference.items()}
    qualities = _judge(reference, candidate)
    assert FP16.violations(qualities) == []
    assert min(q.cosine_mean for q in qualities) > 0.9999


@settings(max_examples=25, deadline=None)
@given(seed=seeds)
def test_int8_steps_pass_the_int8_budget_when_each_part_has_its_own_scale(seed: int) -> None:
    """8-bit rounding per slice (what a float head or per-channel scales give) passes the INT8 budget."""
    reference = _outputs(seed)
    candidate = {}
    for name, value in reference.items():
        axes = tuple(i for i in range(value.ndim) if i != 1) if value.ndim > 2 else None
        step = np.abs(value).max(axis=axes, keepdims=True) / 127
        candidate[name] = (np.round(value / step) * step).astype(np.float32)
    qualities = _judge(reference, candidate)
    assert INT8.violations(qualities) == []


@settings(max_examples=25, deadline=None)
@given(seed=seeds)
def test_a_broken_conversion_fails(seed: int) -> None:
    reference = _outputs(seed)
    rng = np.random.default_rng(seed + 1)
    broken = {name: rng.permutation(value.ravel()).reshape(value.shape) for name, value in reference.items()}
    problems = INT8.violations(_judge(reference, broken))
    for name in reference:
        assert any(p.startswith(f"output '{name}'") for p in problems), name


def test_each_sentence_names_the_output_the_slice_and_the_figures() -> None:
    q = OutputQuality(
        name="output0",
        kind="detections",
        samples=8,
        max_abs=300.0,
        max_rel=0.9,
        cosine_mean=0.98,
        cosine_min=0.5,
        empty_samples=2,
        slices=7,
        slice_axis=1,
        worst_slice=5,
        worst_slice_cosine=0.2,
        worst_slice_max_rel=1.0,
        slice_cosines=(1.0, 1.0, 1.0, 1.0, 0.5, 0.2, 0.999),
        slice_max_rels=(0.0, 0.0, 0.0, 0.0, 0.8, 1.0, 0.01),
        detections=76,
        detections_kept=19 / 76,
        candidate_detections=40,
        detections_spurious=21 / 40,
    )
    assert FP16.violations([q]) == [
        "output 'output0' has a mean cosine similarity of 0.98000 (lowest sample 0.50000 of 8, 2 without signal), "
        "below the budget's 0.999",
        "output 'output0' slice 5 of 7 along axis 1 has a mean cosine similarity of 0.20000, max error 100.0% of "
        "its range, below the budget's 0.99; 2 of 7 slices are below it",
        "output 'output0' keeps 19 of 76 FP32 detections (25.00%), below the budget's 95%",
        "output 'output0' finds 21 of its 40 detections where FP32 has none (52.50%), above the budget's 10%",
    ]
    maps = OutputQuality(
        name="maps",
        kind="map",
        samples=4,
        max_abs=1.0,
        max_rel=1.0,
        cosine_mean=0.9995,
        cosine_min=0.999,
        mask_threshold=0.3,
        mask_iou=0.59,
        mask_agreement=0.968,
    )
    assert FP16.violations([maps]) == [
        "output 'maps' has a mask IoU of 0.5900 at threshold 0.3, pixel agreement 96.80%, below the budget's 0.95"
    ]
    nan = OutputQuality(name="y", kind="values", samples=1, max_abs=float("inf"), max_rel=1, cosine_mean=float("nan"),
                        cosine_min=float("nan"))  # fmt: skip
    assert len(INT8.violations([nan])) == 1, "NaN fails"


def test_overrides_and_dicts() -> None:
    strict = INT8.with_overrides(min_detections_kept=0.99, min_cosine=0.95)
    assert (strict.min_detections_kept, strict.min_cosine, strict.min_top1) == (0.99, 0.95, INT8.min_top1)
    with pytest.raises(ConfigError, match="unknown field min_iou; fields: min_cosine, min_slice_cosine"):
        INT8.with_overrides(min_iou=0.5)
    with pytest.raises(ConfigError, match=r"min_top1 must be a number in \[0, 1\], got 1.5"):
        INT8.with_overrides(min_top1=1.5)
    with pytest.raises(ConfigError, match="min_top1 must be a number"):
        INT8.with_overrides(min_top1=True)
    data = json.loads(json.dumps(FP16.to_dict()))
    assert QualityBudget.from_dict(data) == FP16
    with pytest.raises(ConfigError, match="quality budget: unknown extra; missing min_top1"):
        QualityBudget.from_dict({**{k: v for k, v in data.items() if k != "min_top1"}, "extra": 1})
