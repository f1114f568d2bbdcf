"""The distillation loss: T^2 * KL(teacher_T || student_T) mixed with the hard-label cross-entropy.

Hinton et al. (2015): soften both distributions with a temperature T and make the student's
match the teacher's. The gradient of the KL term with respect to the student's logits shrinks
as 1/T^2 for large T, so the term is multiplied by T^2; without that, raising T silently turns
the distillation term off against the label term (tests/test_distill.py checks the scaling).
Both sides go through ``log_softmax`` (never ``log(softmax(...))``) and ``kl_div`` with a
log-space target, so very confident teachers cannot produce ``log(0)``; ``batchmean`` divides
by the batch size, which is the KL divergence per sample that the maths defines (``mean``
would also divide by the number of classes).

Labels may mark unlabelled rows with `IGNORE_INDEX` (-100, PyTorch's convention): those rows
contribute only the distillation term, which is how a teacher labels unlabelled or augmented
inputs for a student that has few labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional

from edgerun.distill.checks import check_alpha, check_teachers, check_temperature
from edgerun.distill.teachers import normalized_weights, soft_targets, teacher_list
from edgerun.errors import InputError

IGNORE_INDEX = -100
"""A label that marks a row as unlabelled: it gets only the distillation term."""


class LossTerms(NamedTuple):
    """The two terms before mixing: ``soft`` already includes the T^2 factor."""

    soft: torch.Tensor
    hard: torch.Tensor


class DistillationLoss(nn.Module):
    """``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, labels)``.

    ``teacher_logits`` may be one tensor or a sequence (several teachers, averaged as
    probabilities with ``teacher_weights``). ``labels=None``, or every label `IGNORE_INDEX`,
    leaves the label term at 0. Pass ``temperature=`` to `forward` to follow a
    `TemperatureSchedule`; the constructor's temperature is the default.
    """

    def __init__(
        self,
        temperature: float = 4.0,
        alpha: float = 0.7,
        *,
        teacher_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.alpha = check_alpha(alpha)
        self.teacher_weights = None if teacher_weights is None else [float(w) for w in teacher_weights]
        if self.teacher_weights is not None:
            normalized_weights(self.teacher_weights, len(self.teacher_weights))  # validate now, not mid-training

    def terms(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor | Sequence[torch.Tensor],
        labels: torch.Tensor | None = None,
        *,
        temperature: float | None = None,
    ) -> LossTerms:
        """The distillation term (with T^2) and the label term, unmixed: for logging or custom mixes."""
        t = self.temperature if temperature is None else check_temperature(temperature)
        teachers = teacher_list(teacher_logits)
        check_teachers(student_logits, teachers)
        log_target = soft_targets(teachers, t, self.teacher_weights)
        log_student = functional.log_softmax(student_logits / t, dim=1)
        soft = functional.kl_div(log_student, log_target, reduction="batchmean", log_target=True) * (t * t)
        return LossTerms(soft, self._hard(student_logits, labels))

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor | Sequence[torch.Tensor],
        labels: torch.Tensor | None = None,
        *,
        temperature: float | None = None,
    ) -> torch.Tensor:
        soft, hard = self.terms(student_logits, teacher_logits, labels, temperature=temperature)
        return self.alpha * soft + (1.0 - self.alpha) * hard

    @staticmethod
    def _hard(student_logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Cross-entropy over the labelled rows only; 0 (still differentiable) when there are none."""
        if labels is None:
            return student_logits.sum() * 0.0
        if labels.dim() != 1 or labels.shape[0] != student_logits.shape[0]:
            raise InputError(
                f"labels must be [batch] class indices for {student_logits.shape[0]} rows, got shape "
                f"{list(labels.shape)}",
                tensor="labels",
                expected=f"[{student_logits.shape[0]}]",
                got=str(list(labels.shape)),
            )
        labelled = labels != IGNORE_INDEX
        if not bool(labelled.any()):
            return student_logits.sum() * 0.0
        return functional.cross_entropy(student_logits[labelled], labels[labelled].long())
