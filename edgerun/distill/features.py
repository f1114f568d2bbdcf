"""Feature distillation: match intermediate layers of the student to the teacher's, picked by name.

`FeatureTaps` puts a forward hook on each named submodule (names as ``model.named_modules()``
gives them, e.g. ``features.6``) and keeps its latest output; `FeatureDistillation` pairs
student layers with teacher layers, maps the student's features to the teacher's width with a
learned projection where the widths differ (a 1x1 convolution for [N, C, ...] maps, a linear
layer for [N, C] vectors; pooled to the teacher's spatial size where that differs), and returns
the MSE or cosine loss between them (FitNets' hint loss). The projections are parameters of
the `FeatureDistillation` module: give them to the optimizer with the student's.

Hooks outlive the objects that made them unless removed, and a forgotten hook keeps capturing
(and holding graph memory) forever: both classes are context managers, remove every hook on
exit (also on an exception), and `close` may be called more than once.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import torch
from torch import nn
from torch.nn import functional
from torch.utils.hooks import RemovableHandle

from edgerun.errors import ConfigError, InputError

LOSSES = ("mse", "cosine")


def unknown_layer_message(name: str, available: Iterable[str], role: str) -> str:
    """Says which name was not found and lists the closest layer names (difflib)."""
    names = [n for n in available if n]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = f"did you mean: {', '.join(close)}?" if close else f"its layers: {', '.join(names[:20])}"
    if not close and len(names) > 20:
        hint += f", ... ({len(names)} in all)"
    return f"the {role} has no layer named {name!r}; {hint}"


class FeatureTaps:
    """Forward hooks on named submodules of ``model``; ``outputs[name]`` is each one's latest output."""

    def __init__(self, model: nn.Module, names: Sequence[str], role: str = "model") -> None:
        modules = dict(model.named_modules())
        for name in names:
            if name not in modules or not name:
                raise ConfigError(unknown_layer_message(name, modules, role))
        self.role = role
        self.names = list(names)
        self.outputs: dict[str, Any] = {}
        self._handles: list[RemovableHandle] = [
            modules[name].register_forward_hook(self._keeper(name)) for name in dict.fromkeys(names)
        ]

    def _keeper(self, name: str) -> Any:
        def keep(module: nn.Module, inputs: Any, output: Any) -> None:
            self.outputs[name] = output

        return keep

    def tensor(self, name: str) -> torch.Tensor:
        """The latest output of layer ``name``; raises if it has not run or is not one tensor."""
        if name not in self.outputs:
            raise InputError(
                f"layer {name!r} of the {self.role} has not run since the last loss: run the {self.role} forward first",
                tensor=name,
            )
        value = self.outputs[name]
        if not isinstance(value, torch.Tensor):
            raise InputError(
                f"layer {name!r} of the {self.role} returns {type(value).__name__}, not a tensor: pick a layer "
                "whose output is one tensor",
                tensor=name,
                expected="torch.Tensor",
                got=type(value).__name__,
            )
        return value

    @property
    def active(self) -> bool:
        return bool(self._handles)

    def clear(self) -> None:
        self.outputs.clear()

    def close(self) -> None:
        """Remove every hook (idempotent) and drop captured outputs."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.outputs.clear()

    def __enter__(self) -> FeatureTaps:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class FeatureDistillation(nn.Module):
    """Hint losses between student and teacher layers: ``layers`` maps student names to teacher names.

    ``sample`` (one input batch) is run through both models once, without gradients and in eval
    mode, to learn each layer's shape and build the projections; training flags are restored.
    Per step: run the student and the teacher forward, then call `loss` (the mean over pairs).
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        layers: Mapping[str, str] | Sequence[tuple[str, str]],
        sample: torch.Tensor,
        *,
        loss: str = "mse",
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ConfigError(f"unknown feature loss {loss!r}; choose one of: {', '.join(LOSSES)}")
        pairs = list(layers.items()) if isinstance(layers, Mapping) else [tuple(p) for p in layers]
        if not pairs:
            raise ConfigError("feature distillation needs at least one (student layer, teacher layer) pair")
        self.kind = loss
        self.pairs: list[tuple[str, str]] = [(str(s), str(t)) for s, t in pairs]
        self.student_taps = FeatureTaps(student, [s for s, _ in self.pairs], "student")
        try:
            self.teacher_taps = FeatureTaps(teacher, [t for _, t in self.pairs], "teacher")
            shapes = self._probe(student, teacher, sample)
            self.projections = nn.ModuleList(self._projection(pair, *shapes[i]) for i, pair in enumerate(self.pairs))
        except BaseException:
            self.close()
            raise

    def _probe(
        self, student: nn.Module, teacher: nn.Module, sample: torch.Tensor
    ) -> list[tuple[torch.Size, torch.Size]]:
        modes = [(m, m.training) for m in (student, teacher)]
        try:
            with torch.no_grad():
                student.eval()
                teacher.eval()
                student(sample)
                teacher(sample)
            return [(self.student_taps.tensor(s).shape, self.teacher_taps.tensor(t).shape) for s, t in self.pairs]
        finally:
            for model, training in modes:
                model.train(training)
            self.student_taps.clear()
            self.teacher_taps.clear()

    @staticmethod
    def _projection(pair: tuple[str, str], student: torch.Size, teacher: torch.Size) -> nn.Module:
        s_name, t_name = pair
        if len(student) != len(teacher) or len(student) < 2:
            raise ConfigError(
                f"cannot match student layer {s_name!r} {list(student)} to teacher layer {t_name!r} {list(teacher)}: "
                "they need the same rank ([N, C] or [N, C, ...])"
            )
        if len(student) > 5:
            raise ConfigError(f"student layer {s_name!r} has rank {len(student)}; feature losses take rank 2 to 5")
        cs, ct = student[1], teacher[1]
        if cs == ct:
            return nn.Identity()
        if len(student) == 2:
            return nn.Linear(cs, ct)
        conv = {3: nn.Conv1d, 4: nn.Conv2d, 5: nn.Conv3d}[len(student)]
        return conv(cs, ct, kernel_size=1)

    def loss(self) -> torch.Tensor:
        """Mean hint loss over the pairs, from the latest forward passes; clears the captured outputs."""
        total: torch.Tensor | None = None
        try:
            for (s_name, t_name), project in zip(self.pairs, self.projections, strict=True):
                s = project(self.student_taps.tensor(s_name))
                t = self.teacher_taps.tensor(t_name).detach()
                if s.shape[2:] != t.shape[2:]:
                    s = _pool_to(s, t.shape[2:])
                if s.shape != t.shape:
                    raise InputError(
                        f"student layer {s_name!r} gives {list(s.shape)} after projection, teacher layer {t_name!r} "
                        f"{list(t.shape)}: run both on the same batch",
                        tensor=s_name,
                        expected=str(list(t.shape)),
                        got=str(list(s.shape)),
                    )
                term = self._term(s, t)
                total = term if total is None else total + term
        finally:
            self.student_taps.clear()
            self.teacher_taps.clear()
        assert total is not None  # at least one pair, checked in __init__
        return total / len(self.pairs)

    def _term(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.kind == "mse":
            return functional.mse_loss(s, t)
        return (1.0 - functional.cosine_similarity(s.flatten(1), t.flatten(1), dim=1, eps=1e-8)).mean()

    @property
    def active(self) -> bool:
        """Whether hooks are still installed."""
        return self.student_taps.active or getattr(self, "teacher_taps", self.student_taps).active

    def close(self) -> None:
        """Remove all hooks from both models (idempotent)."""
        self.student_taps.close()
        if hasattr(self, "teacher_taps"):
            self.teacher_taps.close()

    def __enter__(self) -> FeatureDistillation:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _pool_to(features: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """Average-pool [N, C, *spatial] features to the teacher's spatial ``size``."""
    if len(size) == 1:
        return functional.adaptive_avg_pool1d(features, size[0])
    if len(size) == 2:
        return functional.adaptive_avg_pool2d(features, (size[0], size[1]))
    return functional.adaptive_avg_pool3d(features, (size[0], size[1], size[2]))
