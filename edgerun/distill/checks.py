"""Argument checks shared by the distillation modules, each raising edgerun's typed errors.

Kept in one place so that the loss, the schedules and the training loop word the same mistake
the same way (a temperature of 0, logits of different widths).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from edgerun.errors import ConfigError, InputError

if TYPE_CHECKING:
    import torch


def check_temperature(value: float, what: str = "temperature") -> float:
    """``value`` as a float if it is a finite temperature > 0, else `ConfigError`."""
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be a number > 0, got {value!r}") from exc
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{what} must be > 0 (it divides the logits), got {value!r}")
    return number


def check_alpha(value: float) -> float:
    """The weight of the distillation term: a number in [0, 1]."""
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ConfigError(
            f"alpha must be in [0, 1] (the weight of the distillation term; 1 - alpha weighs the labels), got {value!r}"
        )
    return number


def check_logits(tensor: torch.Tensor, role: str) -> None:
    """Classifier logits are [batch, classes]."""
    if tensor.dim() != 2:
        raise InputError(
            f"{role} logits must be [batch, classes], got shape {list(tensor.shape)}",
            tensor=role,
            expected="[batch, classes]",
            got=str(list(tensor.shape)),
        )


def teacher_role(index: int, count: int) -> str:
    """How messages name a teacher: "teacher" when it is the only one, else "teacher <index>"."""
    return f"teacher {index}" if count > 1 else "teacher"


def check_teachers(student: torch.Tensor, teachers: Sequence[torch.Tensor]) -> None:
    """`check_same_classes` for every teacher's logits, each named by `teacher_role`."""
    for index, teacher in enumerate(teachers):
        check_same_classes(student, teacher, teacher_role(index, len(teachers)))


def check_same_classes(student: torch.Tensor, teacher: torch.Tensor, teacher_role: str = "teacher") -> None:
    """Student and teacher logits agree in batch size and number of classes."""
    check_logits(student, "student")
    check_logits(teacher, teacher_role)
    if student.shape[1] != teacher.shape[1]:
        raise InputError(
            f"the student has {student.shape[1]} outputs and the {teacher_role} {teacher.shape[1]}: distillation "
            "needs the same classes in the same order (check the heads' output sizes)",
            tensor="logits",
            expected=f"{teacher.shape[1]} classes",
            got=f"{student.shape[1]} classes",
        )
    if student.shape[0] != teacher.shape[0]:
        raise InputError(
            f"the student's batch has {student.shape[0]} rows and the {teacher_role}'s {teacher.shape[0]}: "
            "run both on the same inputs",
            tensor="logits",
            expected=f"{teacher.shape[0]} rows",
            got=f"{student.shape[0]} rows",
        )
