"""PyTorch -> ONNX for edgerun: a dynamic batch axis, outputs checked against PyTorch, a model card beside it.

`export_onnx` runs the model once in eval mode to learn its outputs (a model that returns a
dict, None or other non-tensors is refused before tracing, with what it did return), exports
with every input and output's axis 0 named ``batch`` (TorchScript-based exporter, opset 17:
it needs no extra packages; PyTorch 2.9+'s default dynamo exporter needs onnxscript), then runs
the ONNX file with ONNX Runtime on the sample and on a batch of another size, and compares with
PyTorch: the largest absolute difference is reported and anything above ``tolerance`` raises.
The card (``<name>.card.json``) records what the file is, how it was checked and what the
caller says about it (teacher, student, data, accuracy).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgerun import __version__
from edgerun.errors import ConfigError, ConversionError
from edgerun.storage import atomic_path, file_sha256

DEFAULT_OPSET = 17
CARD_SCHEMA = "edgerun.distill.card/1"


@dataclass(frozen=True)
class ExportResult:
    """Where the model and its card went, and how closely ONNX Runtime reproduces PyTorch."""

    path: Path
    card_path: Path
    max_abs_error: float
    """Largest |ONNX Runtime - PyTorch| over every output, on both checked batch sizes."""
    checked_batches: tuple[int, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    parameters: int
    size_bytes: int


def export_onnx(
    model: nn.Module,
    sample: torch.Tensor | Sequence[torch.Tensor],
    path: str | os.PathLike[str],
    *,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    card: Mapping[str, Any] | None = None,
    opset: int = DEFAULT_OPSET,
    tolerance: float = 1e-4,
) -> ExportResult:
    """Write ``model`` to ``path`` as ONNX with a dynamic batch axis, verified against PyTorch.

    ``sample`` is one input tensor or a sequence (one per ``forward`` argument), batch first.
    ``card``: facts for the model card (``teacher``, ``student``, ``data``, ``accuracy``, ...),
    written with the measured ones to ``path`` with the suffix ``.card.json``.
    """
    target = Path(path)
    samples = (sample,) if isinstance(sample, torch.Tensor) else tuple(sample)
    if not samples or not all(isinstance(s, torch.Tensor) for s in samples):
        raise ConfigError("export_onnx needs a sample input: a tensor, or a sequence of tensors (batch first)")
    inputs = _names(input_names, len(samples), "input")
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            reference = _tensor_outputs(model, model(*samples))
        outputs = _names(output_names, len(reference), "output")
        with atomic_path(target) as temp:
            _export(model, samples, temp, inputs, outputs, opset)
            error, batches = _verify(model, temp, samples, inputs, reference)
            if not error <= tolerance:  # also catches NaN; the target is left as it was
                raise ConversionError(
                    f"{target}: ONNX Runtime's outputs differ from PyTorch's by up to {error:.3g} (tolerance "
                    f"{tolerance:g}); an operator is exported with different semantics, or the model is not "
                    "deterministic in eval mode"
                )
    finally:
        model.train(training)
    parameters = sum(p.numel() for p in model.parameters())
    size = target.stat().st_size
    card_path = target.with_suffix(".card.json")
    facts = {
        "schema": CARD_SCHEMA,
        "file": target.name,
        "sha256": file_sha256(target),
        "bytes": size,
        "parameters": parameters,
        "architecture": type(model).__name__,
        "inputs": {n: ["batch", *s.shape[1:]] for n, s in zip(inputs, samples, strict=True)},
        "outputs": {n: ["batch", *o.shape[1:]] for n, o in zip(outputs, reference, strict=True)},
        "opset": opset,
        "onnx_vs_torch_max_abs_error": error,
        "checked_batch_sizes": list(batches),
        "torch": torch.__version__,
        "edgerun": __version__,
    }
    with atomic_path(card_path) as temp:
        temp.write_text(json.dumps({**dict(card or {}), "export": facts}, indent=2, default=str) + "\n")
    return ExportResult(target, card_path, error, batches, inputs, outputs, parameters, size)


def _export(
    model: nn.Module,
    samples: tuple[torch.Tensor, ...],
    path: Path,
    inputs: tuple[str, ...],
    outputs: tuple[str, ...],
    opset: int,
) -> None:
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo's, which needs onnxscript.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            torch.onnx.export(
                model,
                samples,
                str(path),
                input_names=list(inputs),
                output_names=list(outputs),
                dynamic_axes={name: {0: "batch"} for name in (*inputs, *outputs)},
                opset_version=opset,
                dynamo=False,
            )
        except Exception as exc:  # the exporter raises many types (RuntimeError, SymbolicValueError, ...)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConversionError(f"{path.name}: torch.onnx.export failed: {first}") from exc


def _names(given: Sequence[str] | None, count: int, stem: str) -> tuple[str, ...]:
    if given is None:
        return (stem,) if count == 1 else tuple(f"{stem}_{i}" for i in range(count))
    names = tuple(str(n) for n in given)
    if len(names) != count or len(set(names)) != count:
        raise ConfigError(
            f"{len(names)} {stem} name(s) {list(names)} for {count} {stem}(s) of the model: give one distinct name each"
        )
    return names


def _tensor_outputs(model: nn.Module, produced: Any) -> tuple[torch.Tensor, ...]:
    """The model's outputs as a tuple of tensors; anything else is refused, saying what it was."""
    if isinstance(produced, torch.Tensor):
        return (produced,)
    if isinstance(produced, (tuple, list)) and produced and all(isinstance(p, torch.Tensor) for p in produced):
        return tuple(produced)
    if isinstance(produced, Mapping):
        found = f"a {type(produced).__name__} with keys {list(produced)[:8]}"
    elif isinstance(produced, (tuple, list)):
        found = f"a {type(produced).__name__} of {[type(p).__name__ for p in produced][:8]}"
    else:
        found = type(produced).__name__
    raise ConversionError(
        f"{type(model).__name__}.forward returns {found}; ONNX export needs a tensor or a tuple of tensors: "
        "wrap the model so that forward returns tensors"
    )


def _verify(
    model: nn.Module,
    path: Path,
    samples: tuple[torch.Tensor, ...],
    inputs: tuple[str, ...],
    reference: tuple[torch.Tensor, ...],
) -> tuple[float, tuple[int, ...]]:
    """Max |ORT - PyTorch| on the sample and on a batch of another size (proves the batch axis is free)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    bigger = tuple(torch.cat([s, s.flip(0)]) for s in samples)
    with torch.no_grad():
        bigger_reference = _tensor_outputs(model, model(*bigger))
    worst: list[float] = []
    for feeds, expected in ((samples, reference), (bigger, bigger_reference)):
        got = session.run(None, {n: s.detach().cpu().numpy() for n, s in zip(inputs, feeds, strict=True)})
        for onnx_out, torch_out in zip(got, expected, strict=True):
            want = torch_out.detach().cpu().numpy()
            diff = np.abs(np.asarray(onnx_out, dtype=np.float64) - want.astype(np.float64))
            worst.append(float(diff.max()) if diff.size else 0.0)
    return float(np.max(worst)), (len(samples[0]), len(bigger[0]))  # np.max keeps a NaN
