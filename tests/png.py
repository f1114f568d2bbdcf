"""`assert_png`: the one check that a plot the code wrote is a real, drawn PNG of the documented size."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgerun.bench.plots import PNG_SIZE_PX

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    """A PNG file (by signature), readable, of `PNG_SIZE_PX`, and drawn on (not a blank canvas)."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{path} is not a PNG file"
    image = cv2.imread(str(path))
    assert image is not None, f"{path} is not a readable image"
    assert (image.shape[1], image.shape[0]) == PNG_SIZE_PX
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 10, f"{path} is a blank canvas"
