"""A small training loop for the common case: one student, one or more teachers, tensors in memory.

``fit_student`` trains for a fixed number of optimizer steps (not epochs: a student with 100
labels and one with 1,400 then get the same training budget), with Adam, cosine learning-rate
decay, reshuffled mini-batches, an optional augmentation, the `DistillationLoss` at the
temperature a `TemperatureSchedule` gives for each step, and optional feature losses. With
``teacher=None`` it trains on the labels alone, so a from-scratch control runs through exactly
the same loop. Rows labelled `IGNORE_INDEX` are unlabelled: the teacher labels them. Users with
their own loop use the loss, schedule and feature modules directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional

from edgerun.distill.checks import check_teachers
from edgerun.distill.features import FeatureDistillation
from edgerun.distill.loss import IGNORE_INDEX, DistillationLoss
from edgerun.distill.schedule import TemperatureSchedule
from edgerun.errors import ConfigError, InputError

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
"""``augment(batch, generator) -> batch``: random transforms drawn from ``generator`` (reproducible)."""


@dataclass
class FitHistory:
    """Per-step loss and temperature of a `fit_student` run."""

    steps: int
    loss: list[float] = field(default_factory=list)
    temperature: list[float] = field(default_factory=list)
    seconds: float = 0.0


def fit_student(
    student: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    teacher: nn.Module | Sequence[nn.Module] | None = None,
    teacher_weights: Sequence[float] | None = None,
    steps: int = 1000,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    temperature: float | TemperatureSchedule = 4.0,
    alpha: float = 0.7,
    features: Mapping[str, str] | None = None,
    feature_loss: str = "mse",
    feature_weight: float = 1.0,
    augment: Augment | None = None,
    seed: int = 0,
) -> FitHistory:
    """Train ``student`` in place on ``x`` (and labels ``y``, `IGNORE_INDEX` for unlabelled rows).

    ``teacher`` (one model or several, averaged with ``teacher_weights``) is kept in eval mode
    and never updated. ``features`` maps student layer names to teacher layer names for a hint
    loss weighted by ``feature_weight`` (one teacher only). The student ends in eval mode.
    """
    teachers = [] if teacher is None else [teacher] if isinstance(teacher, nn.Module) else list(teacher)
    _check_data(x, y, teachers)
    if steps < 1 or batch_size < 1:
        raise ConfigError(f"steps and batch_size must be >= 1, got steps={steps}, batch_size={batch_size}")
    if features and len(teachers) != 1:
        raise ConfigError(f"feature distillation takes exactly one teacher, got {len(teachers)}")
    schedule = (
        temperature if isinstance(temperature, TemperatureSchedule) else TemperatureSchedule.constant(temperature)
    )
    criterion = DistillationLoss(schedule.start, alpha, teacher_weights=teacher_weights)
    for t in teachers:
        t.eval()
    _check_outputs(student, teachers, x[:2])
    hints = FeatureDistillation(student, teachers[0], features, x[:2], loss=feature_loss) if features else None
    params = list(student.parameters()) + ([] if hints is None else list(hints.parameters()))
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    labels = y.long() if y is not None else None
    history = FitHistory(steps)
    started = time.perf_counter()
    student.train()
    try:
        for step, index in enumerate(_shuffled_batches(len(x), batch_size, steps, generator)):
            batch = x[index] if augment is None else augment(x[index], generator)
            batch_labels = None if labels is None else labels[index]
            logits = student(batch)
            t_now = schedule.at_step(step, steps)
            if teachers:
                with torch.no_grad():
                    teacher_logits = [t(batch) for t in teachers]
                loss = criterion(logits, teacher_logits, batch_labels, temperature=t_now)
                if hints is not None:
                    loss = loss + feature_weight * hints.loss()
            else:
                assert batch_labels is not None  # checked in _check_data
                loss = functional.cross_entropy(logits, batch_labels, ignore_index=IGNORE_INDEX)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            history.loss.append(float(loss.detach()))
            history.temperature.append(t_now)
    finally:
        if hints is not None:
            hints.close()
        student.eval()
    history.seconds = time.perf_counter() - started
    return history


def _shuffled_batches(rows: int, batch_size: int, steps: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """``steps`` index batches that walk a fresh seeded permutation of the rows, epoch after epoch."""
    order = torch.randperm(rows, generator=generator)
    cursor = 0
    for _ in range(steps):
        if cursor >= len(order):
            order, cursor = torch.randperm(rows, generator=generator), 0
        yield order[cursor : cursor + batch_size]
        cursor += batch_size


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` (in eval mode, without gradients) on ``x`` against labels ``y``."""
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            logits = model(x[start : start + batch_size])
            correct += int((logits.argmax(1) == y[start : start + batch_size]).sum())
    model.train(was_training)
    return correct / len(x) if len(x) else 0.0


def _check_data(x: torch.Tensor, y: torch.Tensor | None, teachers: list[nn.Module]) -> None:
    if len(x) == 0:
        raise InputError("no training inputs", tensor="x", expected="at least one row", got="0 rows")
    if y is not None and (y.dim() != 1 or len(y) != len(x)):
        raise InputError(
            f"{len(x)} inputs but labels of shape {list(y.shape)}",
            tensor="y",
            expected=f"[{len(x)}]",
            got=str(list(y.shape)),
        )
    labelled = 0 if y is None else int((y != IGNORE_INDEX).sum())
    if not teachers and labelled == 0:
        raise ConfigError("without a teacher the student learns from labels only, and none were given")


def _check_outputs(student: nn.Module, teachers: list[nn.Module], sample: torch.Tensor) -> None:
    """Fail before training when the student and a teacher disagree on the number of classes."""
    was_training = student.training
    student.eval()
    with torch.no_grad():
        check_teachers(student(sample), [teacher(sample) for teacher in teachers])
    student.train(was_training)
