"""Knowledge distillation for edgerun's users: make the small student that edgerun then deploys.

The pieces that are easy to get wrong, each in its own module: the distillation loss with its
T^2 scaling (`loss`), several teachers averaged in probability space (`teachers`), temperature
schedules for progressive distillation (`schedule`), intermediate-layer feature losses with
forward hooks that are always removed (`features`), ONNX export verified against PyTorch with a
model card beside it (`export`), a small training loop for the common case (`fit`), and pruning:
magnitude, 2:4 and structured channel pruning through Torch-Pruning (`prune`).

PyTorch is an optional extra: ``pip install 'edgerun[distill]'``. ``import edgerun`` never
imports torch; ``import edgerun.distill`` does, and raises `MissingExtraError` naming the extra
when torch is not installed.
"""

from __future__ import annotations

from edgerun.errors import MissingExtraError

try:
    import torch as _torch  # noqa: F401  (fail here, once, with the install hint)
except ImportError as _exc:
    raise MissingExtraError(
        f"edgerun.distill needs PyTorch, which is not installed ({_exc}): pip install 'edgerun[distill]'"
    ) from _exc

from edgerun.distill.export import ExportResult, export_onnx
from edgerun.distill.features import FeatureDistillation, FeatureTaps
from edgerun.distill.fit import FitHistory, accuracy, fit_student
from edgerun.distill.loss import IGNORE_INDEX, DistillationLoss, LossTerms
from edgerun.distill.prune import (
    ChannelReport,
    SparsityReport,
    magnitude_prune,
    prune_channels,
    remove_masks,
    semi_structured_prune,
    sparsity_report,
)
from edgerun.distill.schedule import TemperatureSchedule
from edgerun.distill.teachers import soft_targets

__all__ = [
    "IGNORE_INDEX",
    "ChannelReport",
    "DistillationLoss",
    "ExportResult",
    "FeatureDistillation",
    "FeatureTaps",
    "FitHistory",
    "LossTerms",
    "SparsityReport",
    "TemperatureSchedule",
    "accuracy",
    "export_onnx",
    "fit_student",
    "magnitude_prune",
    "prune_channels",
    "remove_masks",
    "semi_structured_prune",
    "soft_targets",
    "sparsity_report",
]
