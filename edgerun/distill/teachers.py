"""Soft targets from one teacher or several: the softened distribution a student learns from.

Several teachers are averaged as *probabilities* at the distillation temperature (a weighted
mixture of their softened distributions), not as logits: averaging logits would change the
ensemble whenever the temperature changes. The average is computed in log space
(``logsumexp(log w_i + log_softmax(z_i / T))``), so it stays finite for very confident teachers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.nn import functional

from edgerun.distill.checks import check_logits, check_temperature, teacher_role
from edgerun.errors import ConfigError, InputError


def teacher_list(teacher_logits: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """One tensor or a sequence of them, as a non-empty list."""
    logits = [teacher_logits] if isinstance(teacher_logits, torch.Tensor) else list(teacher_logits)
    if not logits:
        raise InputError("no teacher logits given", tensor="teacher", expected="at least one tensor", got="none")
    return logits


def normalized_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """Teacher weights summing to 1 (equal when None); negative, all-zero or miscounted weights raise."""
    if weights is None:
        return [1.0 / count] * count
    values = [float(w) for w in weights]
    if len(values) != count:
        raise ConfigError(f"{len(values)} teacher weights for {count} teachers: give one weight per teacher")
    if any(not math.isfinite(w) or w < 0 for w in values) or sum(values) <= 0:
        raise ConfigError(f"teacher weights must be >= 0 with a positive sum, got {values}")
    total = sum(values)
    return [w / total for w in values]


def soft_targets(
    teacher_logits: torch.Tensor | Sequence[torch.Tensor],
    temperature: float,
    weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """Log of the (weighted average of the) teachers' distributions ``softmax(logits / T)``, [batch, classes].

    Returned as log-probabilities, the form ``kl_div(..., log_target=True)`` takes without a
    lossy ``log`` of small probabilities.
    """
    temperature = check_temperature(temperature)
    logits = teacher_list(teacher_logits)
    share = normalized_weights(weights, len(logits))
    first = logits[0]
    check_logits(first, teacher_role(0, len(logits)))
    for index, other in enumerate(logits[1:], start=1):
        check_logits(other, f"teacher {index}")
        if other.shape != first.shape:
            raise InputError(
                f"teacher {index} gives logits of shape {list(other.shape)} and teacher 0 {list(first.shape)}: "
                "teachers must score the same batch over the same classes",
                tensor=f"teacher {index}",
                expected=str(list(first.shape)),
                got=str(list(other.shape)),
            )
    if len(logits) == 1:
        return functional.log_softmax(first.detach() / temperature, dim=1)
    stacked = torch.stack([functional.log_softmax(z.detach() / temperature, dim=1) for z in logits])
    log_w = torch.log(torch.tensor(share, dtype=stacked.dtype, device=stacked.device)).view(-1, 1, 1)
    return torch.logsumexp(stacked + log_w, dim=0)
