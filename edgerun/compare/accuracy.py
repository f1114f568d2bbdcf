"""Accuracy of a classifier session on labelled data: how model cards' figures are measured.

Kept apart from benchmarking (speed) on purpose: the same helpers serve the bundled model
cards today and precision/compression comparisons later.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgerun.data.preprocess import PreprocessSpec, load_image
from edgerun.errors import InputError
from edgerun.runtime.session import Session


@dataclass(frozen=True)
class AccuracyResult:
    correct: int
    samples: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.samples if self.samples else 0.0


def predict_classes(session: Session, inputs: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Arg-max class of the first output for every sample of a one-input classifier."""
    if len(session.inputs) != 1:
        raise InputError(f"{session.model.path.name}: classification helpers need a one-input model")
    step = batch_size if session.inputs[0].has_dynamic_batch else 1
    predictions = []
    for start in range(0, len(inputs), step):
        scores = next(iter(session.run(inputs[start : start + step]).values()))
        predictions.append(scores.reshape(scores.shape[0], -1).argmax(axis=1))
    return np.concatenate(predictions) if predictions else np.empty(0, dtype=np.int64)


def classification_accuracy(
    session: Session, inputs: np.ndarray, labels: np.ndarray, batch_size: int = 32
) -> AccuracyResult:
    """Top-1 accuracy of ``session`` on ``inputs`` (batch axis first) against integer ``labels``."""
    if len(inputs) != len(labels):
        raise InputError(f"{len(inputs)} samples but {len(labels)} labels")
    predicted = predict_classes(session, inputs, batch_size)
    return AccuracyResult(int((predicted == np.asarray(labels)).sum()), len(labels))


def text_direction_set(paths: Sequence[str | os.PathLike[str]], spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
    """Upright text-line images as class 0 and the same lines turned 180 degrees as class 1."""
    import cv2

    samples, labels = [], []
    for path in paths:
        image = load_image(path)
        samples += [spec.apply(image, str(path)), spec.apply(cv2.rotate(image, cv2.ROTATE_180), str(path))]
        labels += [0, 1]
    return np.stack(samples), np.asarray(labels, dtype=np.int64)
