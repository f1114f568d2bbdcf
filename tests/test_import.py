"""`import edgerun` stays light: heavy libraries load on first use, not at import."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import edgerun

REPO = Path(__file__).resolve().parents[1]
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


def test_the_cpu_path_opens_no_tensorrt_or_cuda_module() -> None:
    """A CPU load and run imports TensorRT's small registry entry and nothing else of edgerun.trt, and no CUDA."""
    loaded = modules_after(
        "import numpy as np, edgerun\n"
        "m = edgerun.load('digits-student')\n"
        "m.run(np.zeros(m.inputs[0].concrete_shape(1), np.float32))"
    )
    assert "edgerun.runtime.session" in loaded, "the probe must have run a real load"
    trt = sorted(name for name in loaded if name.startswith("edgerun.trt"))
    assert trt == ["edgerun.trt", "edgerun.trt.entry"]
    assert not {name for name in loaded if name == "cuda" or name.startswith(("cuda.", "tensorrt"))}


def test_the_package_has_no_import_cycle() -> None:
    """No two modules of edgerun import each other, directly or through others (function-local imports count)."""
    grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter (the test extra)")
    graph = grimp.build_graph("edgerun", exclude_type_checking_imports=True)
    ours = {m for m in graph.modules if m.startswith("edgerun")}
    cycles = [
        (module, imported)
        for module in sorted(ours)
        for imported in sorted(graph.find_modules_directly_imported_by(module) & ours)
        if imported != module and graph.chain_exists(importer=imported, imported=module)
    ]
    assert cycles == []


def test_the_layer_contract_fails_on_an_upward_import(tmp_path: Path) -> None:
    """The import-linter contract in pyproject.toml is live: one upward import breaks it."""
    pytest.importorskip("importlinter", reason="import-linter is in the test extra")
    package = tmp_path / "edgerun"
    shutil.copytree(REPO / "edgerun", package, ignore=shutil.ignore_patterns("models", "__pycache__"))
    (package / "models").mkdir()
    shutil.copy(REPO / "edgerun" / "models" / "__init__.py", package / "models" / "__init__.py")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    command = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    kept = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    session = package / "runtime" / "session.py"
    session.write_text(session.read_text() + "\nfrom edgerun.loading import load as _upward  # noqa: E402\n")
    broken = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert broken.returncode != 0
    assert "edgerun.runtime.session -> edgerun.loading" in broken.stdout
