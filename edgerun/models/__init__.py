"""Bundled models: real ONNX files that ship inside the package, each with a model card.

Every model lives in its own folder (``model.onnx``, ``card.json``, its license) so that
``edgerun bench`` works on a fresh install with nothing downloaded. The card says where the
model came from, its license, what preprocessing its input needs, and the accuracy measured
on labelled data where such data ships with edgerun.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from edgerun.errors import UnknownModelError

DEFAULT = "ppocr-cls"
"""The model ``edgerun bench`` runs when given none (see the README for why)."""


@dataclass(frozen=True)
class ModelCard:
    """What a user needs to know before deploying a bundled model."""

    name: str
    title: str
    task: str
    source: str
    license: str
    summary: str
    input_shapes: dict[str, list[int]]
    """A typical concrete shape per input (batch 1), for benchmarks and free dimensions."""
    preprocessing: dict[str, Any]
    """A `edgerun.data.preprocess.PreprocessSpec` as a dict."""
    labels: list[str] = field(default_factory=list)
    accuracy: dict[str, Any] | None = None
    """Measured accuracy: metric, value, dataset, split, samples, and the command that measures it."""
    size: dict[str, Any] = field(default_factory=dict)
    """Parameters and bytes; for students, the ratio to their teacher."""
    notes: list[str] = field(default_factory=list)
    calibration: dict[str, Any] | None = None
    """INT8 calibration data shipped with the model: ``source`` (relative to its folder), ``samples``."""
    check: dict[str, Any] | None = None
    """Held-out samples the precision guard checks FP16/INT8 versions on: ``source``, ``samples``."""
    outputs: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    """What inputs mean where the graph does not say (`edgerun.roles`): ``{"sr": {"role": "constant",
    "value": 16000}}``."""
    """What each output is, where its shape does not say (`edgerun.quality.output_kind` declarations)."""
    folder: Path = Path()

    @property
    def path(self) -> Path:
        return self.folder / "model.onnx"

    @property
    def license_files(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.name.startswith(("LICENSE", "NOTICE")))

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "folder"}
        data["path"] = str(self.path)
        return data


def _root() -> Path:
    return Path(str(resources.files(__name__)))


@cache
def names() -> tuple[str, ...]:
    """Names of the bundled models, sorted."""
    return tuple(sorted(p.name for p in _root().iterdir() if (p / "card.json").is_file()))


@cache
def card(name: str) -> ModelCard:
    """The model card of bundled model ``name``; `UnknownModelError` lists the known names."""
    if name not in names():
        raise UnknownModelError(name, list(names()))
    folder = _root() / name
    data = json.loads((folder / "card.json").read_text())
    return ModelCard(folder=folder, **data)


def path(name: str) -> Path:
    """Path of the ONNX file of bundled model ``name``."""
    return card(name).path


def resolve(model: str | os.PathLike[str]) -> tuple[Path, ModelCard | None]:
    """A model argument as a file path, and its card when it names (or is) a bundled model.

    An existing path wins over a bundled name; a string that looks like a path but does not
    exist is reported as a missing file rather than an unknown name.
    """
    candidate = Path(model)
    if candidate.exists():
        bundled = {card(n).path.resolve(): n for n in names()}
        name = bundled.get(candidate.resolve())
        return candidate, card(name) if name else None
    text = str(model)
    if text in names():
        found = card(text)
        return found.path, found
    if candidate.suffix or "/" in text or "\\" in text:
        return candidate, None  # ModelFile.open reports the missing file
    raise UnknownModelError(text, list(names()))
