"""edgerun.distill.prune: sparsity reached, zeros kept through fine-tuning, channels removed consistently.

Structured pruning is checked where it is easy to get wrong: a residual add (both branches must keep
the same channels) and a concatenation (the next layer's inputs follow both halves), on the exported
ONNX file, whose outputs must match the pruned PyTorch model.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch", reason="edgerun.distill needs PyTorch: pip install 'edgerun[distill]'")
pytest.importorskip("torch_pruning", reason="structured pruning needs Torch-Pruning: pip install 'edgerun[distill]'")

from torch import nn  # noqa: E402

from edgerun.distill import export_onnx, fit_student  # noqa: E402
from edgerun.distill.prune import (  # noqa: E402
    magnitude_prune,
    prune_channels,
    remove_masks,
    semi_structured_prune,
    sparsity_report,
)
from edgerun.errors import ConfigError  # noqa: E402
from edgerun.runtime.macs import count_macs  # noqa: E402

SAMPLE = (1, 3, 8, 8)


class ResidualConcat(nn.Module):
    """conv -> two branches added (a residual) -> a second branch concatenated -> conv -> linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.branch = nn.Conv2d(16, 16, 3, padding=1)
        self.side = nn.Conv2d(16, 8, 1)
        self.mix = nn.Conv2d(24, 32, 3, padding=1)
        self.head = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.stem(x)))
        h = torch.relu(h + self.branch(h))  # residual add: stem and branch share channels
        h = torch.cat([h, torch.relu(self.side(h))], dim=1)  # concatenation: mix reads both
        h = torch.relu(self.mix(h)).mean(dim=(2, 3))
        return self.head(h)


def small() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 10))


@settings(max_examples=20, deadline=None)
@given(st.floats(0.0, 0.95), st.sampled_from(["global", "layer"]))
def test_magnitude_pruning_reaches_the_requested_sparsity(sparsity: float, scope: str) -> None:
    model = small()
    report = magnitude_prune(model, sparsity=sparsity, scope=scope)
    assert report.sparsity == pytest.approx(sparsity, abs=2e-3)
    if scope == "layer":
        for layer_sparsity in report.layers.values():
            assert layer_sparsity == pytest.approx(sparsity, abs=0.01)
    assert remove_masks(model).sparsity == pytest.approx(report.sparsity)
    assert not [n for n, _ in model.named_buffers() if n.endswith("weight_mask")]


def test_a_threshold_zeroes_exactly_the_weights_below_it() -> None:
    model = small()
    before = [m.weight.detach().clone() for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]
    magnitude_prune(model, threshold=0.05)
    remove_masks(model)
    after = [m.weight.detach() for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]
    for old, new in zip(before, after, strict=True):
        small_ones = old.abs() < 0.05
        assert bool(small_ones.any())
        assert torch.equal(new[small_ones], torch.zeros_like(new[small_ones]))
        assert torch.equal(new[~small_ones], old[~small_ones])


def test_fine_tuning_keeps_the_zeros_and_changes_the_rest() -> None:
    model = small()
    teacher = copy.deepcopy(model)
    magnitude_prune(model, sparsity=0.7)
    zeros = {n: m.weight_mask.clone() for n, m in model.named_modules() if hasattr(m, "weight_mask")}
    kept = {n: m.weight.detach().clone() for n, m in model.named_modules() if hasattr(m, "weight_mask")}
    x = torch.randn(64, 3, 8, 8)
    fit_student(model, x, None, teacher=teacher, steps=20, batch_size=16)
    report = remove_masks(model)
    assert report.sparsity >= 0.7 - 1e-3
    modules = dict(model.named_modules())
    for name, mask in zeros.items():
        weight = modules[name].weight.detach()
        assert torch.count_nonzero(weight[mask == 0]) == 0
        assert not torch.equal(weight[mask == 1], kept[name][mask == 1])


def test_two_of_every_four_weights_along_the_input_channels_are_zero() -> None:
    """TensorRT's pattern: for a Conv, groups of four input channels at each kernel position."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 16, 3), nn.Flatten(), nn.Linear(16 * 16, 10))
    dense_before = model[0].weight.detach().clone()
    semi_structured_prune(model)
    remove_masks(model)
    assert torch.equal(model[0].weight.detach(), dense_before)  # 3 input channels: left dense
    conv = model[1].weight.detach().movedim(1, -1)  # [out, kh, kw, in]
    assert bool(((conv.reshape(16, 3, 3, 2, 4) == 0).sum(-1) >= 2).all())
    linear = model[3].weight.detach()
    assert bool(((linear.reshape(10, -1, 4) == 0).sum(-1) >= 2).all())


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.cls = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(8, 4)
        self.box = nn.Conv2d(16, 6, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.bn(self.body(x)))
        return self.fc(torch.relu(self.cls(h)).mean(dim=(2, 3))), self.box(h)


def test_every_head_keeps_its_outputs_and_the_mode_is_restored() -> None:
    model = TwoHeads().train()
    sample = torch.randn(*SAMPLE)
    before = [t.shape for t in model(sample)]
    prune_channels(model, sample, ratio=0.5)
    assert model.training
    assert [t.shape for t in model.eval()(sample)] == before
    assert (model.fc.out_features, model.box.out_channels) == (4, 6)
    assert model.body.out_channels < 16


def test_a_mac_target_already_met_prunes_nothing() -> None:
    model = ResidualConcat()
    shapes = [p.shape for p in model.parameters()]
    report = prune_channels(model, torch.randn(*SAMPLE), target_macs=10**12)
    assert (report.steps, report.macs_after) == (0, report.macs_before)
    assert [p.shape for p in model.parameters()] == shapes


@pytest.mark.parametrize("ratio", [0.25, 0.5])
def test_structured_pruning_shrinks_the_onnx_file_and_it_matches_pytorch(tmp_path: Path, ratio: float) -> None:
    model = ResidualConcat().eval()
    sample = torch.randn(*SAMPLE)
    full = export_onnx(model, sample, tmp_path / "full.onnx", input_names=["x"], output_names=["y"])
    report = prune_channels(model, sample, ratio=ratio)
    pruned = export_onnx(model, sample, tmp_path / "pruned.onnx", input_names=["x"], output_names=["y"])
    assert pruned.max_abs_error < 1e-4  # export_onnx ran the file against the pruned PyTorch model
    assert report.parameters_after < report.parameters_before
    assert pruned.parameters == sum(p.numel() for p in model.parameters())
    assert pruned.size_bytes < full.size_bytes
    macs = {name: count_macs(tmp_path / f"{name}.onnx", {"x": SAMPLE}) for name in ("full", "pruned")}
    assert macs["pruned"] < macs["full"] * (1 - ratio / 2)
    assert model.head.out_features == 5  # the outputs keep their size
    assert model.stem.out_channels == model.branch.out_channels  # the residual's two sides agree
    assert model.mix.in_channels == model.stem.out_channels + model.side.out_channels  # the concatenation's reader


def test_structured_pruning_to_a_mac_target_stops_at_or_below_it() -> None:
    model = ResidualConcat()
    sample = torch.randn(*SAMPLE)
    import torch_pruning as tp

    start = int(tp.utils.count_ops_and_params(model, sample)[0])
    report = prune_channels(model, sample, target_macs=start // 3)
    assert report.macs_before == start
    assert report.macs_after <= start // 3
    assert model(torch.randn(2, *SAMPLE[1:])).shape == (2, 5)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: magnitude_prune(m, sparsity=1.0), r"sparsity must be a fraction in \[0, 1\)"),
        (lambda m: magnitude_prune(m, sparsity=-0.1), "sparsity must be a fraction"),
        (lambda m: magnitude_prune(m, sparsity=0.5, threshold=0.1), "exactly one of"),
        (lambda m: magnitude_prune(m), "exactly one of"),
        (lambda m: magnitude_prune(m, sparsity=0.5, scope="model"), "scope must be"),
        (lambda m: magnitude_prune(m, threshold=-1.0), "threshold must be"),
        (lambda m: magnitude_prune(m, sparsity=0.5, layers=["stemm"]), "did you mean 'stem'"),
        (lambda m: semi_structured_prune(m, layers=["hed"]), "did you mean 'head'"),
        (lambda m: prune_channels(m, torch.randn(*SAMPLE), ratio=1.5), "ratio must be a fraction"),
        (lambda m: prune_channels(m, torch.randn(*SAMPLE)), "exactly one of"),
        (lambda m: prune_channels(m, torch.randn(*SAMPLE), target_macs=0), "target_macs must be"),
        (lambda m: prune_channels(m, torch.randn(*SAMPLE), ratio=0.5, keep=["mixx"]), "did you mean 'mix'"),
    ],
)
def test_bad_arguments_are_typed_errors_with_hints(call: object, message: str) -> None:
    model = ResidualConcat()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ConfigError, match=message):
        call(model)  # type: ignore[operator]
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, model.parameters(), strict=True))


def test_unstructured_sparsity_leaves_shapes_and_macs_alone(tmp_path: Path) -> None:
    """The trap the module docstring names: zeros, but every tensor (and so every MAC) is still there."""
    model = ResidualConcat().eval()
    sample = torch.randn(*SAMPLE)
    dense = export_onnx(model, sample, tmp_path / "dense.onnx", input_names=["x"], output_names=["y"])
    magnitude_prune(model, sparsity=0.8)
    assert sparsity_report(model).sparsity == pytest.approx(0.8, abs=2e-3)
    remove_masks(model)
    sparse = export_onnx(model, sample, tmp_path / "sparse.onnx", input_names=["x"], output_names=["y"])
    assert sparse.size_bytes == pytest.approx(dense.size_bytes, rel=0.01)
    assert count_macs(sparse.path, {"x": SAMPLE}) == count_macs(dense.path, {"x": SAMPLE})
    assert np.isfinite(sparse.max_abs_error)


def test_a_mac_target_below_what_pruning_can_reach_is_said(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    model = ResidualConcat()
    with caplog.at_level(logging.WARNING, logger="edgerun"):
        report = prune_channels(model, torch.randn(*SAMPLE), target_macs=1, max_steps=3)
    assert report.macs_after > 1
    assert report.steps == 3
    assert any("above the target 1" in r.getMessage() for r in caplog.records)
