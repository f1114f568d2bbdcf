"""Synthetic model outputs for the quality tests: YOLO-style detector tensors with known detections."""

from __future__ import annotations

import numpy as np

SIZE = 320.0
"""Image side in pixels: boxes are (cx, cy, w, h) within it."""


def yolo_output(
    rng: np.random.Generator, *, samples: int = 1, classes: int = 3, anchors: int = 100, objects: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """[samples, 4 + classes, anchors] float32 like a YOLOv8 export, and the anchors of the objects [samples, k].

    Every anchor has a box in pixels and background scores below 0.1; ``objects`` anchors per sample get one
    class scored 0.5..1 and boxes on a grid of 40-pixel cells (30 pixels wide), so no two objects overlap:
    after threshold and NMS every object is one detection.
    """
    cells = int(SIZE // 40)
    if objects > min(anchors, cells * cells):
        raise ValueError("too many objects for the grid or the anchors")
    out = np.empty((samples, 4 + classes, anchors), np.float32)
    chosen = np.empty((samples, objects), np.int64)
    for n in range(samples):
        out[n, 0:2] = rng.uniform(20, SIZE - 20, (2, anchors))
        out[n, 2:4] = rng.uniform(4, 12, (2, anchors))  # background boxes: small
        out[n, 4:] = rng.uniform(0, 0.1, (classes, anchors))
        picks = rng.choice(anchors, objects, replace=False)
        grid = rng.choice(cells * cells, objects, replace=False)
        out[n, 0, picks] = (grid % cells) * 40 + 20
        out[n, 1, picks] = (grid // cells) * 40 + 20
        out[n, 2:4, picks] = 30
        out[n, 4 + rng.integers(0, classes, objects), picks] = rng.uniform(0.5, 1.0, objects)
        chosen[n] = picks
    return out, chosen
