"""Render the labelled text-line set and measure the bundled PP-OCR classifier on it.

No labelled text-line images ship in any package edgerun may depend on, so this script
renders them: 120 upright lines of words, numbers and prices with OpenCV's built-in Hershey
fonts, random sizes, stroke widths, ink and paper shades and a little blur and noise,
written to ``calibration/textlines/`` (fixed seed). The evaluation feeds every line upright
(label ``0``) and turned by 180 degrees (label ``180``), and writes the measured accuracy into
``edgerun/models/ppocr-cls/card.json``; ``tests/test_models.py`` re-measures it. Another 32
lines (seed 1, so disjoint) go to ``edgerun/models/ppocr-cls/calibration/``: the model's own
INT8 calibration set, shipped in the package. Another 16 (seed 2) go to
``edgerun/models/ppocr-cls/check/``: the samples the precision guard checks converted models on,
held apart from calibration.

    python scripts/make_textlines.py
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edgerun  # noqa: E402
from edgerun.compare.accuracy import classification_accuracy, text_direction_set  # noqa: E402

OUT = ROOT / "calibration" / "textlines"
COUNT = 120
SEED = 0
# A disjoint set (another seed) ships inside the package: ppocr-cls's own INT8 calibration data.
PACKAGED = ROOT / "edgerun" / "models" / "ppocr-cls" / "calibration"
PACKAGED_COUNT = 32
PACKAGED_SEED = 1
# A third disjoint set: what the precision guard checks FP16/INT8 models on (never calibrated on).
CHECK = ROOT / "edgerun" / "models" / "ppocr-cls" / "check"
CHECK_COUNT = 16
CHECK_SEED = 2
WORDS = (
    "total amount date invoice order number street camera stream latency frame model edge device "
    "runtime tensor student teacher quick brown fox jumps over lazy dog receipt price station exit "
    "warning speed limit parking open closed monday friday coffee milk bread apple orange"
).split()
FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_HERSHEY_COMPLEX_SMALL,
)


def text(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        if roll < 0.15:
            parts.append(f"{rng.randint(1, 999)}.{rng.randint(0, 99):02d}")
        elif roll < 0.25:
            parts.append(f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/20{rng.randint(10, 30)}")
        else:
            word = rng.choice(WORDS)
            style = rng.random()
            parts.append(word.upper() if style < 0.25 else word.capitalize() if style < 0.5 else word)
    return " ".join(parts)


def render(rng: random.Random) -> np.ndarray:
    line = text(rng)
    font = rng.choice(FONTS)
    scale = rng.uniform(0.7, 1.6)
    thickness = rng.choice((1, 1, 2))
    (w, h), baseline = cv2.getTextSize(line, font, scale, thickness)
    margin = rng.randint(3, 10)
    paper = rng.randint(170, 255)
    image = np.full((h + baseline + 2 * margin, w + 2 * margin, 3), paper, np.uint8)
    ink = tuple(int(rng.randint(0, 90)) for _ in range(3))
    cv2.putText(image, line, (margin, margin + h), font, scale, ink, thickness, cv2.LINE_AA)
    if rng.random() < 0.5:
        image = cv2.GaussianBlur(image, (3, 3), 0)
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, rng.uniform(0, 8), image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def write_set(folder: Path, count: int, seed: int) -> None:
    rng = random.Random(seed)
    if folder.exists():
        for old in [*folder.glob("*.png"), *folder.glob("*.jpg")]:
            old.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"line_{i:03d}.jpg"), render(rng), [cv2.IMWRITE_JPEG_QUALITY, 85])


def main() -> None:
    write_set(OUT, COUNT, SEED)
    shutil.copyfile(ROOT / "LICENSE", OUT / "LICENSE")
    write_set(PACKAGED, PACKAGED_COUNT, PACKAGED_SEED)
    write_set(CHECK, CHECK_COUNT, CHECK_SEED)
    session = edgerun.load("ppocr-cls")
    assert session.card is not None
    spec = edgerun.PreprocessSpec.from_dict(session.card.preprocessing)
    inputs, labels = text_direction_set(sorted(OUT.glob("*.jpg")), spec)
    result = classification_accuracy(session, inputs, labels)
    card_path = ROOT / "edgerun" / "models" / "ppocr-cls" / "card.json"
    card = json.loads(card_path.read_text())
    card["accuracy"] = {
        "metric": "top-1 accuracy (0 vs 180 degrees)",
        "value": result.accuracy,
        "correct": result.correct,
        "samples": result.samples,
        "dataset": (
            f"edgerun synthetic text lines: {COUNT} rendered lines (calibration/textlines), "
            "each upright and turned 180 degrees"
        ),
        "split": "all (the model was not trained on them)",
        "data_file": "calibration/textlines",
        "command": "python scripts/make_textlines.py (renders and measures); pytest tests/test_models.py (re-measures)",
    }
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    print(f"ppocr-cls on {result.samples} text lines: {result.correct} correct, accuracy {result.accuracy:.4f}")


if __name__ == "__main__":
    main()
