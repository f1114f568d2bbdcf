"""Extract the bundled PP-OCR models from their PyPI package and verify them.

The text-direction classifier (PaddleOCR ``ch_ppocr_mobile_v2.0_cls``) and the text detector
(``ch_PP-OCRv4_det``), Apache-2.0, exported to ONNX by RapidOCR, ship inside the wheel
``rapidocr-onnxruntime``. edgerun does not depend on that package (it pulls GUI OpenCV and
more); this maintainer script downloads the wheel without dependencies, copies the ONNX files
byte for byte and checks their SHA-256, so the bundled files' origin can be re-checked:

    python scripts/fetch_ppocr_cls.py            # verify the bundled copies against the wheel
    python scripts/fetch_ppocr_cls.py --write    # (re)write edgerun/models/ppocr-{cls,det}/model.onnx
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

WHEEL = "rapidocr-onnxruntime==1.4.4"
MODELS = Path(__file__).resolve().parents[1] / "edgerun" / "models"
FILES = {  # wheel member -> (bundled name, SHA-256)
    "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx": (
        "ppocr-cls",
        "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
    ),
    "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx": (
        "ppocr-det",
        "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
    ),
}


def main() -> int:
    from wheel_files import check_member, read_members

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the bundled copy instead of only verifying")
    args = parser.parse_args()
    _, _, contents = read_members(WHEEL, FILES)
    status = 0
    for member, (name, expected) in FILES.items():
        target = MODELS / name / "model.onnx"
        status |= check_member(name, f"{WHEEL}:{member}", contents[member], expected, target, args.write)
    return status


if __name__ == "__main__":
    sys.exit(main())
