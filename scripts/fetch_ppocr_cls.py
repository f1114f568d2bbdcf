"""Extract the bundled PP-OCR text-direction classifier from its PyPI package and verify it.

The model (PaddleOCR ``ch_ppocr_mobile_v2.0_cls``, Apache-2.0, exported to ONNX by RapidOCR)
ships inside the wheel ``rapidocr-onnxruntime``. edgerun does not depend on that package (it
pulls GUI OpenCV and more); this maintainer script downloads the wheel without dependencies,
copies the one ONNX file byte for byte and checks its SHA-256, so the bundled file's origin can
be re-checked at any time:

    python scripts/fetch_ppocr_cls.py            # verify the bundled copy against the wheel
    python scripts/fetch_ppocr_cls.py --write    # (re)write edgerun/models/ppocr-cls/model.onnx
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "rapidocr-onnxruntime==1.4.4"
MEMBER = "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"
SHA256 = "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"
TARGET = Path(__file__).resolve().parents[1] / "edgerun" / "models" / "ppocr-cls" / "model.onnx"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the bundled copy instead of only verifying")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, WHEEL], check=True)
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        print(f"{WHEEL}:{MEMBER} has sha256 {digest}, expected {SHA256}", file=sys.stderr)
        return 1
    if args.write:
        TARGET.write_bytes(data)
        print(f"wrote {TARGET} ({len(data)} bytes, sha256 {digest})")
        return 0
    bundled = hashlib.sha256(TARGET.read_bytes()).hexdigest()
    print(f"wheel copy {digest}\nbundled    {bundled}\n{'identical' if bundled == digest else 'DIFFERENT'}")
    return 0 if bundled == digest else 1


if __name__ == "__main__":
    sys.exit(main())
