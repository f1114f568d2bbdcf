"""`import edgerun` stays light: heavy libraries load on first use, not at import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import edgerun

HEAVY = ("numpy", "onnx", "onnxruntime", "cv2", "rich", "click")


def modules_after(code: str) -> set[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_import_edgerun_loads_no_heavy_module() -> None:
    loaded = modules_after("import edgerun")
    assert not loaded & set(HEAVY), f"imported eagerly: {sorted(loaded & set(HEAVY))}"


def test_errors_are_usable_without_loading_anything_heavy() -> None:
    loaded = modules_after("import edgerun\ntry:\n    raise edgerun.InputError('x')\nexcept edgerun.EdgerunError: pass")
    assert "numpy" not in loaded


def test_lazy_attributes_resolve_and_list() -> None:
    assert callable(edgerun.load)
    assert edgerun.DeviceProfile.__name__ == "DeviceProfile"
    assert edgerun.models.DEFAULT in edgerun.models.names()
    assert "load" in dir(edgerun)
    for name in edgerun.__all__:
        assert getattr(edgerun, name) is not None
    with pytest.raises(AttributeError, match="not_a_thing"):
        edgerun.not_a_thing  # noqa: B018


def test_error_hierarchy() -> None:
    assert issubclass(edgerun.ModelNotFoundError, edgerun.ModelError)
    assert issubclass(edgerun.ModelNotFoundError, FileNotFoundError)
    assert issubclass(edgerun.UnsupportedPrecisionError, edgerun.BackendUnavailableError)
    for error in (edgerun.ModelError, edgerun.InputError, edgerun.BackendUnavailableError, edgerun.ConfigError):
        assert issubclass(error, edgerun.EdgerunError)
