"""Pruning: magnitude (unstructured), channel (structured) and 2:4 semi-structured, each reporting what it left.

Unstructured magnitude pruning ("remove connections whose weight magnitude is under a threshold")
zeroes weights but leaves every tensor its shape: dense CPU and GPU kernels then run exactly as
fast, and the file compresses but does not shrink. Only structured pruning, whole channels removed
with every layer that depends on them (BatchNorm, the next layer's inputs, residual adds,
concatenations), cuts the compute. That dependency graph is Torch-Pruning's (`torch_pruning`, a
maintained library built for it), not hand-written graph surgery. 2:4 sparsity (two zeros in every
four weights along the input) is the pattern TensorRT's sparse kernels use on Ampere and newer
GPUs; it is made here, but its speed is not verified (no GPU on this project's machines).

Masks from `magnitude_prune` and `semi_structured_prune` stay attached (``torch.nn.utils.prune``)
so fine-tuning keeps the zeros; `remove_masks` makes them permanent before export.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from edgerun.errors import ConfigError, MissingExtraError

_log = logging.getLogger("edgerun")

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
"""Layers whose weights magnitude and 2:4 pruning act on."""


@dataclass(frozen=True)
class SparsityReport:
    """Weights of the prunable layers: how many, how many non-zero, and each layer's sparsity."""

    parameters: int
    nonzero: int
    layers: dict[str, float] = field(default_factory=dict)

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero / self.parameters if self.parameters else 0.0


@dataclass(frozen=True)
class ChannelReport:
    """A structured pruning: parameters and MACs (PyTorch's count, batch 1) before and after."""

    parameters_before: int
    parameters_after: int
    macs_before: int
    macs_after: int
    steps: int


def magnitude_prune(
    model: nn.Module,
    *,
    sparsity: float | None = None,
    threshold: float | None = None,
    scope: str = "global",
    layers: Sequence[str] | None = None,
) -> SparsityReport:
    """Zero the weights of ``model``'s Conv/Linear layers whose magnitude is lowest, in place.

    Either ``sparsity`` (the fraction zeroed: over all ``layers`` at once with ``scope="global"``,
    within each layer with ``scope="layer"``) or ``threshold`` (every weight with magnitude below
    it). ``layers`` names the modules (default: every Conv and Linear). Biases are kept.
    """
    if (sparsity is None) == (threshold is None):
        raise ConfigError("magnitude_prune takes exactly one of sparsity= or threshold=")
    if sparsity is not None:
        _check_fraction("sparsity", sparsity)
    if threshold is not None and not threshold >= 0:
        raise ConfigError(f"threshold must be a magnitude >= 0, got {threshold!r}")
    if scope not in ("global", "layer"):
        raise ConfigError(f"scope must be 'global' or 'layer', got {scope!r}")
    chosen = _layers(model, layers)
    if threshold is not None:
        for _, module in chosen:
            torch_prune.custom_from_mask(module, "weight", mask=(_weight(module).abs() >= threshold))
    elif scope == "global":
        torch_prune.global_unstructured(
            [(module, "weight") for _, module in chosen], pruning_method=torch_prune.L1Unstructured, amount=sparsity
        )
    else:
        for _, module in chosen:
            torch_prune.l1_unstructured(module, "weight", amount=sparsity)
    return sparsity_report(model)


def semi_structured_prune(model: nn.Module, *, layers: Sequence[str] | None = None) -> SparsityReport:
    """2:4 sparsity: in every group of four weights along each layer's input channels, the two smallest are zeroed.

    For a Conv the groups run along its input channels at each kernel position, the pattern TensorRT's
    sparse kernels read. Layers whose input channels (per group) are not a multiple of 4 are left dense. Unverified
    here: TensorRT's sparse kernels need an Ampere or newer GPU and the builder's sparse-weights flag.
    """
    for _, module in _layers(model, layers):
        weight = _weight(module)
        along_inputs = weight.movedim(1, -1)  # [out, (kernel...), in]: the groups run along input channels
        if along_inputs.shape[-1] % 4:
            continue
        groups = along_inputs.abs().reshape(*along_inputs.shape[:-1], -1, 4)
        keep = groups.argsort(dim=-1, descending=True)[..., :2]
        mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
        torch_prune.custom_from_mask(module, "weight", mask=mask.reshape(along_inputs.shape).movedim(-1, 1))
    return sparsity_report(model)


def remove_masks(model: nn.Module) -> SparsityReport:
    """Make the zeros of ``magnitude_prune``/``semi_structured_prune`` permanent (plain weights again)."""
    for module in model.modules():
        if torch_prune.is_pruned(module) and hasattr(module, "weight_mask"):
            torch_prune.remove(module, "weight")
    return sparsity_report(model)


def sparsity_report(model: nn.Module) -> SparsityReport:
    """Non-zero weights of every Conv/Linear layer (masked weights count as zero)."""
    total = nonzero = 0
    per_layer: dict[str, float] = {}
    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE):
            weight = _weight(module)
            count, kept = weight.numel(), int(torch.count_nonzero(weight))
            total += count
            nonzero += kept
            per_layer[name] = 1.0 - kept / count if count else 0.0
    return SparsityReport(total, nonzero, per_layer)


def prune_channels(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    ratio: float | None = None,
    target_macs: int | None = None,
    keep: Sequence[str] | None = None,
    max_steps: int = 40,
) -> ChannelReport:
    """Remove whole channels of ``model`` in place, those of lowest L1 magnitude, with Torch-Pruning.

    ``ratio``: the fraction of channels removed from every prunable layer; or ``target_macs``:
    prune in ``max_steps`` equal steps until the MACs (batch 1, ``example_input``) are at or below
    it (a warning when even that leaves it above). The layers that make the model's outputs, and
    those named in ``keep``, keep their output channels, so the model's interface does not change.
    """
    try:
        import torch_pruning as tp
    except ImportError as exc:
        raise MissingExtraError(
            f"structured pruning needs Torch-Pruning ({exc}): pip install 'edgerun[distill]'"
        ) from exc
    if (ratio is None) == (target_macs is None):
        raise ConfigError("prune_channels takes exactly one of ratio= or target_macs=")
    if ratio is not None:
        _check_fraction("ratio", ratio)
    if target_macs is not None and not (isinstance(target_macs, int) and target_macs > 0):
        raise ConfigError(f"target_macs must be a positive integer, got {target_macs!r}")
    if max_steps < 1:
        raise ConfigError(f"max_steps must be >= 1, got {max_steps}")
    ignored = [module for _, module in _layers(model, keep)] if keep else []
    was_training = model.training
    model.eval()
    try:
        ignored += output_layers(model, example_input)
        return _prune_channels(tp, model, example_input, ignored, ratio, target_macs, max_steps)
    finally:
        model.train(was_training)


def _prune_channels(
    tp: Any,
    model: nn.Module,
    example_input: torch.Tensor,
    ignored: list[nn.Module],
    ratio: float | None,
    target_macs: int | None,
    max_steps: int,
) -> ChannelReport:
    """`prune_channels` once its arguments are checked, with ``model`` in eval mode."""
    macs_before, params_before = (int(v) for v in tp.utils.count_ops_and_params(model, example_input))
    if target_macs is not None and macs_before <= target_macs:
        return ChannelReport(params_before, params_before, macs_before, macs_before, 0)  # nothing to remove
    steps = 1 if ratio is not None else max_steps
    pruner = tp.pruner.MetaPruner(
        model,
        example_input,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=ratio if ratio is not None else 0.95,
        iterative_steps=steps,
        ignored_layers=ignored,
    )
    done = 0
    macs, params = macs_before, params_before
    for _ in range(steps):
        pruner.step()
        done += 1
        macs, params = (int(v) for v in tp.utils.count_ops_and_params(model, example_input))
        if target_macs is not None and macs <= target_macs:
            break
    if target_macs is not None and macs > target_macs:
        _log.warning(
            "%s: channel pruning stopped at %d MACs, above the target %d, with 95%% of every prunable layer's "
            "channels removed (the output layers and those kept set the floor)",
            type(model).__name__,
            macs,
            target_macs,
        )
    return ChannelReport(params_before, params, macs_before, macs, done)


def output_layers(model: nn.Module, example_input: torch.Tensor) -> list[nn.Module]:
    """The Conv/Linear layers whose outputs reach the model's outputs with no other such layer in between.

    Their channels are the outputs (every head of a multi-head model), so channel pruning leaves them.
    Found from the autograd graph of one forward pass: from each output back to the first layer met.
    """
    made_by: dict[Any, nn.Module] = {}

    def record(module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.grad_fn is not None:
            made_by[output.grad_fn] = module

    layers = [m for m in model.modules() if isinstance(m, PRUNABLE)]
    hooks = [m.register_forward_hook(record) for m in layers]
    try:
        with torch.enable_grad():
            outputs = model(example_input.detach().requires_grad_(False))
    finally:
        for hook in hooks:
            hook.remove()
    found: list[nn.Module] = []
    seen: set[Any] = set()
    frontier: list[Any] = [t.grad_fn for t in _tensors(outputs) if t.grad_fn is not None]
    while frontier:
        node = frontier.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if node in made_by:
            if made_by[node] not in found:
                found.append(made_by[node])
            continue  # the layer ends this path: what feeds it is not an output
        frontier += [parent for parent, _ in node.next_functions]
    return found


def _tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in a model's output: a tensor, or tuples, lists and dicts of them."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


def _layers(model: nn.Module, names: Sequence[str] | None) -> list[tuple[str, nn.Module]]:
    """``model``'s Conv/Linear modules by name (all when ``names`` is None); unknown names get a hint."""
    prunable: dict[str, nn.Module] = {
        name: module for name, module in model.named_modules() if isinstance(module, PRUNABLE)
    }
    if names is None:
        if not prunable:
            raise ConfigError(f"{type(model).__name__} has no Conv or Linear layer to prune")
        return list(prunable.items())
    chosen = []
    for name in names:
        if name not in prunable:
            close = difflib.get_close_matches(name, list(prunable), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"no Conv or Linear layer named {name!r} in {type(model).__name__}{hint}")
        chosen.append((name, prunable[name]))
    return chosen


def _weight(module: nn.Module) -> torch.Tensor:
    """A layer's weight as a plain tensor (masked: what the forward pass uses)."""
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return weight.detach()


def _check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"{name} must be a fraction in [0, 1), got {value!r}")
