"""The distill extra is optional: `import edgerun` never loads torch, and a missing torch names the extra.

These run whether or not torch is installed (each case runs in a fresh interpreter).
"""

from __future__ import annotations

import subprocess
import sys


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)


def test_import_edgerun_does_not_import_torch() -> None:
    done = run("import sys, edgerun\nprint('torch' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_missing_torch_raises_missing_extra_error_naming_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # what an environment without torch looks like to `import torch`\n"
        "import edgerun\n"
        "try:\n"
        "    import edgerun.distill\n"
        "except edgerun.MissingExtraError as exc:\n"
        "    print(type(exc).__name__, isinstance(exc, ImportError), exc)\n"
    )
    done = run(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("MissingExtraError True edgerun.distill needs PyTorch")
    assert "pip install 'edgerun[distill]'" in done.stdout
