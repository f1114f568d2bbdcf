"""Image preprocessing with OpenCV: file -> model input tensor, as a stored, shareable spec.

One `PreprocessSpec` describes what a model expects (size, resize mode, colour order,
scale/mean/std, layout) so that ``edgerun run``, benchmarks with real data and calibration
all feed the model the same way. Bundled models carry theirs in their model card.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgerun.errors import ConfigError, ImageError
from edgerun.specs import TensorSpec

RESIZE_MODES = ("stretch", "letterbox", "pad-right")
COLORS = ("bgr", "rgb", "gray")
LAYOUTS = ("nchw", "nhwc")
INTERPOLATIONS = ("auto", "linear", "area", "nearest", "cubic")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})


@dataclass(frozen=True)
class PreprocessSpec:
    """How an image becomes one sample of a model input (without the batch axis).

    ``resize``: ``stretch`` to ``height`` x ``width``; ``letterbox`` keeps the aspect ratio and
    centres the image; ``pad-right`` fits the height, keeps the ratio and pads on the right
    (PaddleOCR's text-line convention). Pixels are ``value * scale``, then ``(v - mean) / std``
    per channel; padding is ``pad_value`` after normalisation. ``invert`` flips 0..255 first
    (dark ink on light paper to the bright-ink convention of some data sets).
    """

    height: int
    width: int
    resize: str = "stretch"
    color: str = "rgb"
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "nchw"
    invert: bool = False
    pad_value: float = 0.0
    interpolation: str = "auto"
    """``auto``: area when shrinking, linear when enlarging; or a fixed OpenCV mode."""
    dtype: str = "float32"

    def __post_init__(self) -> None:
        for name, value, valid in (
            ("resize", self.resize, RESIZE_MODES),
            ("color", self.color, COLORS),
            ("layout", self.layout, LAYOUTS),
            ("interpolation", self.interpolation, INTERPOLATIONS),
        ):
            if value not in valid:
                raise ConfigError(f"preprocessing {name} {value!r} is not one of {', '.join(valid)}")
        if self.height < 1 or self.width < 1:
            raise ConfigError(f"preprocessing size must be positive, got {self.height}x{self.width}")
        channels = self.channels
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, channels):
                raise ConfigError(f"preprocessing {name} needs 1 or {channels} values, got {len(values)}")
        if any(s == 0 for s in self.std):
            raise ConfigError("preprocessing std must not contain 0")
        try:
            np.dtype(self.dtype)
        except TypeError as exc:
            raise ConfigError(f"preprocessing dtype {self.dtype!r} is not a numpy dtype") from exc

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        if self.layout == "nchw":
            return (self.channels, self.height, self.width)
        return (self.height, self.width, self.channels)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessSpec:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown preprocessing keys {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values = dict(data)
        for key in ("mean", "std"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike[str]) -> PreprocessSpec:
        try:
            data = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read preprocessing spec: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise ConfigError(f"{path}: preprocessing spec is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: preprocessing spec must be a JSON object")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    def check_fits(self, inputs: Sequence[TensorSpec]) -> None:
        """Raise ConfigError if this spec's samples cannot feed the (only) model input."""
        if len(inputs) != 1:
            raise ConfigError(
                f"a preprocessing spec feeds a one-input model; this one has {len(inputs)} inputs "
                f"({', '.join(s.name for s in inputs)})"
            )
        spec = inputs[0]
        if not spec.takes_samples(self.sample_shape, self.dtype):
            raise ConfigError(
                f"preprocessing makes {self.dtype} samples of shape {list(self.sample_shape)}, "
                f"but input '{spec.name}' expects {spec.dtype.name} {list(spec.shape)} (batch first)"
            )

    def load(self, path: str | os.PathLike[str]) -> np.ndarray:
        """Read the image at ``path`` and preprocess it into one sample."""
        return self.apply(load_image(path, gray=self.color == "gray"), source=str(path))

    def load_batch(self, paths: Iterable[str | os.PathLike[str]]) -> np.ndarray:
        """Preprocess several image files into one batch (axis 0)."""
        samples = [self.load(p) for p in paths]
        if not samples:
            raise ImageError("<none>", "no image files given")
        return np.stack(samples)

    def apply(self, image: np.ndarray, source: str = "<array>") -> np.ndarray:
        """Preprocess a decoded image (H x W x 3 BGR as OpenCV reads it, or H x W gray)."""
        import cv2

        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or min(image.shape[:2]) < 1:
            raise ImageError(source, f"expected an H x W (x 1, 3 or 4 channels) image, got shape {image.shape}")
        if image.shape[2] == 4:
            image = image[:, :, :3]
        if self.color == "gray" and image.shape[2] == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[:, :, None]
        elif self.color != "gray" and image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        if self.color == "rgb":
            image = image[:, :, ::-1]
        if self.invert:
            image = 255 - image
        resized, (top, left) = self._resize(np.ascontiguousarray(image), cv2)
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        normalized = (resized.astype(np.float32) * np.float32(self.scale) - mean) / std
        canvas = np.full((self.height, self.width, self.channels), self.pad_value, dtype=np.float32)
        canvas[top : top + normalized.shape[0], left : left + normalized.shape[1]] = normalized
        if self.layout == "nchw":
            canvas = canvas.transpose(2, 0, 1)
        return np.ascontiguousarray(canvas, dtype=self.dtype)

    def _resize(self, image: np.ndarray, cv2: Any) -> tuple[np.ndarray, tuple[int, int]]:
        h, w = image.shape[:2]
        if self.resize == "stretch":
            new_h, new_w, top, left = self.height, self.width, 0, 0
        elif self.resize == "pad-right":
            new_h = self.height
            new_w = min(self.width, max(1, math.ceil(self.height * w / h)))
            top, left = 0, 0
        else:  # letterbox
            ratio = min(self.height / h, self.width / w)
            new_h, new_w = max(1, round(h * ratio)), max(1, round(w * ratio))
            top, left = (self.height - new_h) // 2, (self.width - new_w) // 2
        if self.interpolation == "auto":
            interpolation = cv2.INTER_AREA if new_h < h or new_w < w else cv2.INTER_LINEAR
        else:
            interpolation = getattr(cv2, f"INTER_{self.interpolation.upper()}")
        resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
        if resized.ndim == 2:
            resized = resized[:, :, None]
        return resized, (top, left)


def load_image(path: str | os.PathLike[str], *, gray: bool = False) -> np.ndarray:
    """Decode an image file with OpenCV (BGR, or gray); `ImageError` if it cannot be read."""
    import cv2

    path = Path(path)
    if not path.exists():
        raise ImageError(path, "image file not found")
    if not path.is_file():
        raise ImageError(path, "is not a file")
    data = np.fromfile(path, dtype=np.uint8)  # imdecode: no silent None for odd paths
    if data.size == 0:
        raise ImageError(path, "image file is empty")
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(path, "OpenCV cannot decode this file as an image (corrupt or unsupported format)")
    return np.asarray(image)


def is_image_path(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES
