"""``edgerun build | cache | selftest``: TensorRT engines and checking what a device can run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from edgerun.cli.common import emit_json, err, out
from edgerun.trt.recipes import PRECISIONS as ENGINE_PRECISIONS


@click.command("build")
@click.argument("model", required=False)
@click.option("--recipe", type=click.Path(path_type=Path), default=None, help="Build what this engines/*.toml says.")
@click.option("--precision", type=click.Choice(ENGINE_PRECISIONS), default=None, help="Default fp16.")
@click.option("--calib", default=None, help="INT8 calibration data (image folder, .npy/.npz).")
@click.option("--batch", default=None, metavar="MIN:OPT:MAX", help="Batch range of the optimization profile.")
@click.option("--shapes", multiple=True, metavar="NAME=MIN:OPT:MAX", help="Per-input shape ranges.")
@click.option("--workspace", "workspace_mb", type=click.IntRange(min=1), default=None, help="Workspace in MiB.")
@click.option("--opt-level", type=click.IntRange(0, 5), default=None, help="Builder optimisation level.")
@click.option("--timing-cache", type=click.Path(path_type=Path), default=None, help="Persistent timing cache.")
@click.option(
    "--dla",
    "dla_core",
    type=click.IntRange(min=0),
    default=None,
    help="DLA core (Jetson Xavier, Orin NX / AGX); static shapes.",
)
@click.option("--low-memory", is_flag=True, help="Cap builder memory for 4-8 GB Jetsons.")
@click.option(
    "--version-compatible", is_flag=True, help="Engine file loadable by later TensorRT of the same major (slower)."
)
@click.option(
    "--sparse-weights", is_flag=True, help="Let TensorRT use 2:4 sparse tactics (Ampere+; 2:4-pruned weights)."
)
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="Engine cache folder.")
def build_cmd(
    model: str | None,
    recipe: Path | None,
    precision: str | None,
    calib: str | None,
    batch: str | None,
    shapes: tuple[str, ...],
    workspace_mb: int | None,
    opt_level: int | None,
    timing_cache: Path | None,
    dla_core: int | None,
    low_memory: bool,
    version_compatible: bool,
    sparse_weights: bool,
    cache_dir: Path | None,
) -> None:
    """Build (or find in the cache) the TensorRT engine for MODEL on this GPU."""
    from edgerun.loading import load
    from edgerun.runtime.backends.base import CachedEngineBackend
    from edgerun.runtime.plan import as_precision
    from edgerun.trt.recipes import read_recipe

    options: dict[str, Any] = {}
    if recipe is not None:
        parsed = read_recipe(recipe)
        model = model or parsed.model
        precision = precision or parsed.precision
        options |= parsed.load_options()
    if model is None:
        raise click.UsageError("give MODEL or --recipe")
    for key, value in {
        "batch": batch,
        "workspace_mb": workspace_mb,
        "opt_level": opt_level,
        "timing_cache": timing_cache,
        "dla_core": dla_core,
        "engine_cache": cache_dir,
        "calibration": calib,
    }.items():
        if value is not None:
            options[key] = value
    if shapes:
        options["shapes"] = {s.partition("=")[0]: s.partition("=")[2] for s in shapes}
    if low_memory:
        options["low_memory"] = True
    if version_compatible:
        options["version_compatible"] = True
    if sparse_weights:
        options["sparse_weights"] = True
    started = time.perf_counter()
    with load(model, backend="tensorrt", precision=as_precision(precision or "fp16"), **options) as session:
        backend = session.opened_backend
        seconds = time.perf_counter() - started
        state, where = "built", "?"
        if isinstance(backend, CachedEngineBackend):
            state = "found in the cache" if backend.cache_hit else "built"
            where = str(backend.engine_path)
        out.print(f"engine {state} in {seconds:.1f} s: {escape(str(where))}")
        out.print(escape(session.plan.describe()))


@click.group("cache")
def cache_cmd() -> None:
    """List, verify or clear the TensorRT engine cache."""


def _cache(cache_dir: Path | None) -> Any:
    from edgerun.trt.cache import EngineCache

    return EngineCache(cache_dir)


_cache_dir_option = click.option("--cache-dir", type=click.Path(path_type=Path), default=None)


@cache_cmd.command("list")
@_cache_dir_option
@click.option("--json", "as_json", is_flag=True)
def cache_list(cache_dir: Path | None, as_json: bool) -> None:
    """Show every cached engine with its key."""
    cache = _cache(cache_dir)
    entries = cache.entries()
    if as_json:
        emit_json([{"path": str(e.path), "size_bytes": e.size_bytes, **e.manifest} for e in entries])
        return
    out.print(f"{len(entries)} engine(s) in {escape(str(cache.root))}")
    for entry in entries:
        key = entry.manifest.get("key", {})
        out.print(
            f"  {entry.path.name}  {entry.size_bytes / 2**20:.1f} MiB  {key.get('precision', '?')}  "
            f"TensorRT {key.get('tensorrt', '?')}  {key.get('gpu', '?')}  {key.get('profile', '')}"
        )


@cache_cmd.command("verify")
@_cache_dir_option
def cache_verify(cache_dir: Path | None) -> None:
    """Check the engines this device can judge (its GPU and TensorRT version) and remove bad ones.

    Engines built for another GPU or TensorRT version are listed as skipped and kept: only the
    device that built them can tell whether they load. Without TensorRT every engine is checked
    against its manifest (bytes and key) only.
    """
    cache = _cache(cache_dir)
    checker = _deserializer()
    if checker is None:
        err.print("TensorRT is not importable here: checking files against manifests only")
        results, skipped = cache.verify(None), []
    else:
        check_key, device = checker
        results, skipped = cache.verify(device=device, check_key=check_key), cache.skipped(device)
    for path, problem in results.items():
        out.print(
            escape(f"  {'ok' if problem is None else 'REMOVED'}  {path.name}" + (f"  ({problem})" if problem else ""))
        )
    for entry in skipped:
        key = entry.manifest.get("key", {})
        built_for = f"TensorRT {key.get('tensorrt', '?')}, {key.get('gpu', '?')}"
        out.print(escape(f"  skipped  {entry.path.name}  (built for {built_for}: not judged here)"))
    sound = sum(p is None for p in results.values())
    summary = f"{sound} sound, {len(results) - sound} removed"
    out.print(summary + (f", {len(skipped)} skipped (other GPU or TensorRT version)" if skipped else ""))


@cache_cmd.command("clear")
@_cache_dir_option
def cache_clear(cache_dir: Path | None) -> None:
    """Remove every cached engine."""
    out.print(f"removed {_cache(cache_dir).clear()} engine(s)")


def _deserializer() -> tuple[Any, dict[str, Any]] | None:
    """A check that deserializes an engine as its key says (version-compatible, DLA core), and this
    device's identity; None where TensorRT or CUDA is not usable."""
    from edgerun.errors import BackendUnavailableError, CudaError
    from edgerun.trt import api, cuda
    from edgerun.trt.cache import EngineKey, device_fields

    try:
        trt = api.tensorrt()
    except BackendUnavailableError:
        return None
    try:
        device = {"tensorrt": str(trt.__version__), **device_fields(cuda.device_info(0))}
    except (BackendUnavailableError, CudaError) as exc:  # TensorRT without a usable GPU
        err.print(escape(f"TensorRT {trt.__version__} is here, but no CUDA device to judge engines on: {exc}"))
        return None
    logger = api.make_logger(trt)

    def check_key(key: EngineKey, data: bytes) -> None:
        settings = key.settings  # a runtime per entry: host code and the DLA core follow the engine's key
        runtime = api.make_runtime(
            trt,
            logger,
            version_compatible=bool(settings.get("version_compatible")),
            dla_core=settings.get("dla_core"),
        )
        with api.collect_errors(trt) as errors:
            engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise ValueError(f"deserialize_cuda_engine returned None: {errors.detail()}")
        del engine

    return check_key, device


@click.command("selftest")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Also write JSON here.")
def selftest_cmd(json_path: Path | None) -> None:
    """Check what this device can run (ONNX Runtime, CUDA, TensorRT) on the bundled models."""
    from edgerun.bench.selftest import run_selftest
    from edgerun.errors import ThresholdError

    with err.status("selftest") as status:
        report = run_selftest(progress=lambda name: status.update(name))
    colours = {"pass": "green", "fail": "red", "skip": "yellow"}
    for check in report.checks:
        figures = ", ".join(f"{k} {v:.4g}" for k, v in check.figures.items())
        text = check.name + (f": {check.detail}" if check.detail else "") + (f" [{figures}]" if figures else "")
        out.print(f"[{colours[check.status]}]{check.status.upper():4}[/] {escape(text)}")
    if json_path is not None:
        emit_json(report.to_dict(), json_path)
    if not report.ok:
        raise ThresholdError("selftest: " + ", ".join(c.name for c in report.checks if c.status == "fail"))
