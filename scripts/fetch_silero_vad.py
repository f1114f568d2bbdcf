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
import sys
from pathlib import Path

WHEEL = "silero-vad==6.2.3"
WHEEL_SHA256 = "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8"
MEMBER = "silero_vad/data/silero_vad_16k_op15.onnx"
SHA256 = "7ed98ddbad84ccac4cd0aeb3099049280713df825c610a8ed34543318f1b2c49"
TARGET = Path(__file__).resolve().parents[1] / "edgerun" / "models" / "silero-vad" / "model.onnx"


def main() -> int:
    from wheel_files import check_member, read_members

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the bundled copy instead of only verifying")
    args = parser.parse_args()
    wheel, wheel_digest, contents = read_members(WHEEL, [MEMBER])
    if wheel_digest != WHEEL_SHA256:
        print(f"{wheel} has sha256 {wheel_digest}, expected {WHEEL_SHA256}", file=sys.stderr)
        return 1
    return check_member("silero-vad", f"{WHEEL}:{MEMBER}", contents[MEMBER], SHA256, TARGET, args.write)


if __name__ == "__main__":
    sys.exit(main())
