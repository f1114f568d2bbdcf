"""Every TensorRT name edgerun uses exists in every supported TensorRT version (10.3, 10.16, 11.4).

No TensorRT can be installed where these tests run, so the adapter's source is checked against
the real API surface of each version (names dumped from the bindings; copies of
``../shared/trt-api`` in ``tests/fixtures/trt-api``).
Attribute chains on the ``trt`` module are checked directly; calls on TensorRT objects are
checked against their class, with types inferred from how each object was made
(``builder = trt.Builder(...)``, ``network = builder.create_network(...)``, ...). Accesses under a
``hasattr``/``getattr(..., default)`` guard or a version check are exempt: they exist to
handle the differences.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SURFACES = sorted((REPO / "tests" / "fixtures" / "trt-api").glob("trt-*.json"))
SHARED = REPO.parent / "shared" / "trt-api"
"""Where the surfaces are regenerated (beside the checkout); the copies above must match it."""
SOURCES = [
    REPO / "edgerun" / "trt" / "api.py",
    REPO / "edgerun" / "trt" / "build.py",
    REPO / "edgerun" / "trt" / "backend.py",
    REPO / "edgerun" / "trt" / "entry.py",
    REPO / "edgerun" / "cli" / "trt.py",
]

# What a call returns, by (class, method): how objects get their TensorRT type.
RETURNS = {
    ("module", "Builder"): "Builder",
    ("module", "Runtime"): "Runtime",
    ("module", "OnnxParser"): "OnnxParser",
    ("Builder", "create_network"): "INetworkDefinition",
    ("Builder", "create_builder_config"): "IBuilderConfig",
    ("Builder", "create_optimization_profile"): "IOptimizationProfile",
    ("Builder", "build_serialized_network"): "IHostMemory",
    ("Runtime", "deserialize_cuda_engine"): "ICudaEngine",
    ("ICudaEngine", "create_execution_context"): "IExecutionContext",
    ("OnnxParser", "get_error"): "ParserError",
    ("IBuilderConfig", "create_timing_cache"): "ITimingCache",
    ("IBuilderConfig", "get_timing_cache"): "ITimingCache",
}
# What edgerun's own helpers return (``api.make_runtime(...)`` or a bare call inside their module).
HELPERS = {"make_runtime": "Runtime", "_timing_cache_from": "ITimingCache"}
# Parameters that hold TensorRT objects wherever they appear in SOURCES.
PARAMETERS = {"config": "IBuilderConfig", "runtime": "Runtime", "timing_cache": "ITimingCache"}
# Attributes of edgerun objects that hold TensorRT objects (set in __init__ through helpers).
SELF_ATTRIBUTES = {"_engine": "ICudaEngine", "_context": "IExecutionContext", "_runtime": "Runtime", "_trt": "module"}


def load_surface(path: Path) -> dict[str, object]:
    return json.loads(path.read_text())


def _guarded_names(tree: ast.AST) -> set[str]:
    """Attribute names that appear as string arguments of hasattr/getattr: used only under a guard."""
    names = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        if node.func.id in ("hasattr", "getattr") and len(node.args) >= 2:
            name = node.args[1]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                names.add(name.value)
    return names


class _Collector(ast.NodeVisitor):
    """(class, member, line) for every attribute access on something of a known TensorRT type."""

    def __init__(self, guarded: set[str]) -> None:
        self.guarded = guarded
        self.uses: list[tuple[str, str, int]] = []
        self.types: dict[str, str] = {}

    def type_of(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return self.types.get(node.id, "module" if node.id == "trt" else None)
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "self" and node.attr in SELF_ATTRIBUTES:
                return SELF_ATTRIBUTES[node.attr]
            owner = self.type_of(node.value)
            if owner == "module":
                return f"trt.{node.attr}"  # a class or enum of the module
        if isinstance(node, ast.Call):
            func = node.func
            helper = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if helper in HELPERS and not (isinstance(func, ast.Attribute) and self.type_of(func.value) is not None):
                return HELPERS[helper]
            if isinstance(func, ast.Attribute):
                owner = self.type_of(func.value)
                if owner is not None:
                    return RETURNS.get((owner.removeprefix("trt.") if owner != "module" else "module", func.attr))
        return None

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        saved = dict(self.types)
        for arg in (*node.args.args, *node.args.kwonlyargs):
            if arg.arg == "trt":
                self.types["trt"] = "module"
            elif arg.arg in PARAMETERS:
                self.types[arg.arg] = PARAMETERS[arg.arg]
        self.generic_visit(node)
        self.types = saved

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                for name, value in zip(target.elts, node.value.elts, strict=False):
                    kind = self.type_of(value)
                    if isinstance(name, ast.Name) and kind is not None:
                        self.types[name.id] = kind
        kind = self.type_of(node.value)
        for target in node.targets:
            if isinstance(target, ast.Name) and kind is not None and not kind.startswith("trt."):
                self.types[target.id] = kind
            elif isinstance(target, ast.Name):
                self.types.pop(target.id, None)
            if isinstance(target, ast.Attribute):
                self.visit(target)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        owner = self.type_of(node.value)
        dunder = node.attr.startswith("__")  # __version__, __init__: not part of the dumped public surface
        if owner is not None and node.attr not in self.guarded and not dunder:
            self.uses.append((owner, node.attr, node.lineno))
        self.generic_visit(node)


def collect(path: Path) -> list[tuple[str, str, int]]:
    tree = ast.parse(path.read_text())
    collector = _Collector(_guarded_names(tree))
    collector.visit(tree)
    return collector.uses


def missing_in(surface: dict[str, object], uses: list[tuple[str, str, int]]) -> list[str]:
    module = surface["module"]
    classes = surface["classes"]
    enums = surface["enums"]
    assert isinstance(module, dict)
    assert isinstance(classes, dict)
    assert isinstance(enums, dict)
    problems = []
    for owner, member, line in uses:
        if owner == "module":
            known = member in module
        elif owner.startswith("trt."):
            name = owner.removeprefix("trt.")
            known = member in classes.get(name, []) or member in enums.get(name, [])
        else:
            known = member in classes.get(owner, [])
        if not known:
            problems.append(f"line {line}: {owner}.{member}")
    return problems


def test_the_surfaces_are_there() -> None:
    versions = {load_surface(p)["version"] for p in SURFACES}
    assert {"10.3.0", "10.16.1.11", "11.4.0.106"} <= versions, f"API surfaces found: {versions}"


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared trt-api folder is not beside this checkout")
def test_the_copies_match_the_shared_surfaces() -> None:
    for shared in sorted(SHARED.glob("trt-*.json")):
        copy = REPO / "tests" / "fixtures" / "trt-api" / shared.name
        assert copy.is_file(), f"{shared.name} was added to the shared folder: copy it into tests/fixtures/trt-api"
        assert load_surface(copy) == load_surface(shared), f"{shared.name} was regenerated: refresh the copy"


@pytest.mark.parametrize("surface_path", SURFACES, ids=lambda p: p.stem)
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_every_tensorrt_name_exists_in_every_supported_version(surface_path: Path, source: Path) -> None:
    uses = collect(source)
    problems = missing_in(load_surface(surface_path), uses)
    assert not problems, f"{source.name} uses names missing from TensorRT {surface_path.stem}: {problems}"


def test_the_checker_sees_the_calls_that_matter() -> None:
    """The inference must actually find the v3 execution API, or the test above proves nothing."""
    found = {(owner, member) for source in SOURCES for owner, member, _ in collect(source)}
    for expected in [
        ("module", "Builder"),
        ("Builder", "create_network"),
        ("Builder", "build_serialized_network"),
        ("OnnxParser", "parse_from_file"),
        ("ParserError", "node_name"),
        ("IBuilderConfig", "set_memory_pool_limit"),
        ("IOptimizationProfile", "set_shape"),
        ("Runtime", "deserialize_cuda_engine"),
        ("ICudaEngine", "num_io_tensors"),
        ("ICudaEngine", "get_tensor_name"),
        ("IExecutionContext", "set_input_shape"),
        ("IExecutionContext", "set_tensor_address"),
        ("IExecutionContext", "execute_async_v3"),
        ("trt.MemoryPoolType", "WORKSPACE"),
        ("trt.NetworkDefinitionCreationFlag", "STRONGLY_TYPED"),
        ("Runtime", "engine_host_code_allowed"),
        ("Runtime", "DLA_core"),
        ("IBuilderConfig", "create_timing_cache"),
        ("IBuilderConfig", "set_timing_cache"),
        ("ITimingCache", "serialize"),
        ("OnnxParser", "set_flag"),
        ("trt.ILogger", "ERROR"),
    ]:
        assert expected in found, f"the checker no longer sees {expected}"


def test_the_checker_catches_a_removed_name(tmp_path: Path) -> None:
    """A call that TensorRT 11 removed (build_engine, FP16 flag, platform_has_fast_fp16) is caught."""
    source = tmp_path / "old.py"
    source.write_text(
        "def f(trt):\n"
        "    builder = trt.Builder(None)\n"
        "    builder.platform_has_fast_fp16\n"
        "    config = builder.create_builder_config()\n"
        "    config.set_flag(trt.BuilderFlag.FP16)\n"
        "    config.int8_calibrator = None\n"
    )
    surfaces = {load_surface(p)["version"]: load_surface(p) for p in SURFACES}
    eleven = next(s for v, s in surfaces.items() if str(v).startswith("11."))
    ten = next(s for v, s in surfaces.items() if str(v).startswith("10.3"))
    problems = missing_in(eleven, collect(source))
    assert any("platform_has_fast_fp16" in p for p in problems)
    assert any("BuilderFlag.FP16" in p for p in problems)
    assert any("int8_calibrator" in p for p in problems)
    assert missing_in(ten, collect(source)) == []


def test_the_checker_follows_helpers_and_parameters(tmp_path: Path) -> None:
    """``api.make_runtime(...)`` gives a Runtime and a ``config`` parameter is a builder config."""
    source = tmp_path / "helpers.py"
    source.write_text(
        "def f(trt, api, data):\n"
        "    runtime = api.make_runtime(trt, None, version_compatible=True, dla_core=None)\n"
        "    runtime.deserialize_plan_v9(data)\n"
        "def g(config):\n"
        "    config.set_timing_cache_v9(None)\n"
    )
    ten = next(load_surface(p) for p in SURFACES if load_surface(p)["version"] == "10.3.0")
    assert missing_in(ten, collect(source)) == [
        "line 3: Runtime.deserialize_plan_v9",
        "line 5: IBuilderConfig.set_timing_cache_v9",
    ]


def test_guarded_names_are_exempt(tmp_path: Path) -> None:
    source = tmp_path / "guarded.py"
    source.write_text("def f(trt):\n    if hasattr(trt, 'IStreamReaderV2'):\n        trt.IStreamReaderV2\n")
    ten = next(load_surface(p) for p in SURFACES if load_surface(p)["version"] == "10.3.0")
    assert missing_in(ten, collect(source)) == []
