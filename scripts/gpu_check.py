"""One-shot GPU check: the device, the versions, `edgerun selftest` and ``pytest -m gpu``, in one summary.

    python scripts/gpu_check.py [--out DIR] [--require-gpu]

Writes ``DIR/gpu_check.json`` and ``DIR/gpu_check.md`` (default DIR: ``gpu-check``): the device, the
versions of everything on the GPU path, and every check with pass, fail or skip, its detail and
figures. The checks are the selftest's (ONNX Runtime CPU on each card's check samples; the CUDA copy
round trip; TensorRT FP32/FP16/INT8 against ONNX Runtime CPU on every output, engine cache hit,
CUDA graph replay versus plain execution) and every test marked ``gpu`` (``tests/trt/test_gpu*.py``,
``tests/trt/test_cuda.py``: the same comparisons on ppocr-det at 224 too, ONNX Runtime's CUDA
provider, a truncated engine rebuilt, two processes building one engine, a shape outside the
profile, 20 open/close cycles giving device memory back).

On one GPU it takes a few minutes (the budget is 10). Without a GPU it runs in a CPU-only mode in
well under a minute: the selftest's CPU checks run, everything else is reported as skipped with the
reason, and it exits 0 -- unless ``--require-gpu`` is given, for a run that must have used a GPU,
which then exits 2 (and on a GPU counts an unusable TensorRT as a failed check). Any failed check
exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PYTEST_TIMEOUT_S = 480
"""``pytest -m gpu`` is stopped after this; with the selftest the whole run stays under 10 minutes."""
PACKAGES = ("edgerun", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "cuda-python", "cuda-bindings")


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def device() -> dict[str, Any]:
    """What edgerun sees: the device profile, CUDA's answer, the GPU, the driver, ORT's providers."""
    import onnxruntime as ort

    from edgerun.runtime.device import current_device
    from edgerun.trt import cuda
    from edgerun.trt import entry as trt_entry

    profile = current_device()
    reason = cuda.unavailable_reason()
    info: dict[str, Any] = {
        "kind": profile.kind,
        "machine": platform.machine(),
        "system": platform.platform(),
        "has_nvidia_gpu": profile.has_nvidia_gpu,
        "cuda_unavailable_reason": reason,
        "onnxruntime_providers": ort.get_available_providers(),
    }
    availability = trt_entry.probe(profile, "auto")
    info.update(tensorrt_available=availability.available, tensorrt_backend=availability.reason)
    if reason is None:
        gpu = cuda.device_info(0)
        info.update(
            gpu=gpu.name,
            compute_capability=gpu.compute_capability,
            memory_gib=round(gpu.total_memory / (1 << 30), 2),
            multiprocessors=gpu.multiprocessors,
            devices=cuda.device_count(),
        )
        rt = cuda.runtime()
        for key, call in (("cuda_driver", "cudaDriverGetVersion"), ("cuda_runtime", "cudaRuntimeGetVersion")):
            encoded = int(cuda.check(call, getattr(rt, call)()))
            info[key] = f"{encoded // 1000}.{encoded % 1000 // 10}"
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        if smi.returncode == 0:
            info["nvidia_smi"] = smi.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return info


def selftest_checks() -> tuple[list[dict[str, Any]], float]:
    from edgerun.bench.selftest import run_selftest

    started = time.perf_counter()
    try:
        report = run_selftest()
        checks = [{"name": f"selftest: {c.name}", **_check_dict(c)} for c in report.checks]
    except Exception as exc:  # a crash is a failed check, with what crashed
        checks = [{"name": "selftest", "status": "fail", "detail": f"{type(exc).__name__}: {exc}", "figures": {}}]
    return checks, time.perf_counter() - started


def _check_dict(check: Any) -> dict[str, Any]:
    return {"status": check.status, "detail": check.detail, "figures": dict(check.figures)}


def pytest_checks(out: Path, timeout_s: float) -> tuple[list[dict[str, Any]], float, dict[str, Any]]:
    """``pytest -m gpu`` in a subprocess; one check per test from its JUnit XML, with recorded figures."""
    junit, figures_file = out / "pytest-gpu.xml", out / "pytest-gpu-figures.jsonl"
    for stale in (junit, figures_file):
        stale.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "tests", "-q", "-rs", "-p", "no:cacheprovider"]
    command += [f"--junitxml={junit}"]
    env = {**os.environ, "EDGERUN_GPU_CHECK_FIGURES": str(figures_file)}
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
        returncode, tail = done.returncode, (done.stdout + done.stderr)[-4000:]
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"") + (exc.stderr or b"")
        text = output.decode(errors="replace") if isinstance(output, bytes) else str(output)
        returncode, tail = None, f"stopped after {timeout_s:.0f} s\n" + text[-4000:]
    elapsed = time.perf_counter() - started
    (out / "pytest-gpu.log").write_text(tail)
    run = {"command": " ".join(command), "returncode": returncode, "seconds": round(elapsed, 1)}
    figures: dict[str, dict[str, float]] = {}
    if figures_file.is_file():
        for line in figures_file.read_text().splitlines():
            record = json.loads(line)
            figures[record["nodeid"]] = record["figures"]
    checks = []
    if junit.is_file():
        for case in ET.parse(junit).getroot().iter("testcase"):
            nodeid = _nodeid(case)
            status, detail = "pass", ""
            for tag, name in (("failure", "fail"), ("error", "fail"), ("skipped", "skip")):
                found = case.find(tag)
                if found is not None:
                    status, detail = name, (found.get("message") or found.text or "").strip()
                    break
            check_figures = {"seconds": round(float(case.get("time", 0)), 3), **figures.get(nodeid, {})}
            checks.append({"name": f"pytest: {nodeid}", "status": status, "detail": detail, "figures": check_figures})
    if returncode not in (0, 5) or not checks:  # 5: nothing collected, as when no test is marked gpu
        failed = any(c["status"] == "fail" for c in checks)
        if not failed:
            checks.append({"name": "pytest -m gpu", "status": "fail", "detail": tail[-1500:], "figures": {}})
    return checks, elapsed, run


def _nodeid(case: ET.Element) -> str:
    classname, name = case.get("classname", ""), case.get("name", "")
    parts = [part for part in classname.split(".") if part]  # Path("").with_suffix raises on Python 3.10
    for cut in range(len(parts), 0, -1):  # module path, then any test classes
        path = Path(*parts[:cut]).with_suffix(".py")
        if (REPO / path).is_file():
            return "::".join([path.as_posix(), *parts[cut:], name])
    return f"{classname}::{name}"


def markdown(summary: dict[str, Any]) -> str:
    dev, counts = summary["device"], summary["counts"]
    mode = "GPU" if summary["gpu"] else "CPU-only (no usable GPU: everything on the GPU path was skipped)"
    lines = [
        "# edgerun GPU check",
        "",
        f"- Result: **{'ok' if summary['ok'] else 'FAILED'}**, {counts['pass']} passed, {counts['fail']} failed, "
        f"{counts['skip']} skipped, in {summary['seconds']:.0f} s",
        f"- Mode: {mode}",
        f"- Started: {summary['started']}",
        f"- Device: {dev.get('gpu') or dev['kind']}"
        + (f", compute capability {dev['compute_capability']}, {dev['memory_gib']} GiB" if dev.get("gpu") else "")
        + (f", CUDA driver {dev['cuda_driver']}, runtime {dev['cuda_runtime']}" if dev.get("cuda_driver") else ""),
    ]
    if dev.get("cuda_unavailable_reason"):
        lines.append(f"- CUDA: {dev['cuda_unavailable_reason']}")
    lines.append(f"- TensorRT backend: {dev['tensorrt_backend']}")
    lines.append(f"- ONNX Runtime providers: {', '.join(dev['onnxruntime_providers'])}")
    lines.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in summary["versions"].items() if v))
    lines += ["", "| check | status | detail | figures |", "|---|---|---|---|"]
    for check in summary["checks"]:
        figures = ", ".join(f"{k} {_number(v)}" for k, v in check["figures"].items())
        detail = " ".join(check["detail"].split()).replace("|", "\\|")
        if len(detail) > 300:
            detail = detail[:297] + "..."
        lines.append(f"| {check['name']} | {check['status']} | {detail} | {figures} |")
    return "\n".join(lines) + "\n"


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("gpu-check"), help="folder for the summaries")
    parser.add_argument(
        "--require-gpu",
        action="store_true",
        help="exit 2 when no usable GPU is here; with a GPU, TensorRT being unusable is a failed check",
    )
    parser.add_argument("--pytest-timeout", type=float, default=PYTEST_TIMEOUT_S, help="seconds for pytest -m gpu")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started_at, started = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter()
    # Engines and converted models go to a fresh cache: first loads really build, the user's cache is untouched.
    cache = tempfile.mkdtemp(prefix="edgerun-gpu-check-")
    os.environ["EDGERUN_CACHE_DIR"] = cache
    dev = device()
    gpu = dev["cuda_unavailable_reason"] is None
    summary: dict[str, Any] = {"started": started_at, "gpu": gpu, "device": dev, "versions": versions()}
    checks: list[dict[str, Any]] = []
    if not gpu:
        checks.append(
            {
                "name": "gpu",
                "status": "fail" if args.require_gpu else "skip",
                "detail": f"CPU-only mode: {dev['cuda_unavailable_reason']}",
                "figures": {},
            }
        )
    if gpu and args.require_gpu and not dev["tensorrt_available"]:
        checks.append({"name": "tensorrt", "status": "fail", "detail": dev["tensorrt_backend"], "figures": {}})
    if gpu or not args.require_gpu:
        found, seconds = selftest_checks()
        checks += found
        summary["selftest_seconds"] = round(seconds, 1)
        found, seconds, run = pytest_checks(out, args.pytest_timeout)
        checks += found
        summary["pytest"] = run
    counts = {s: sum(c["status"] == s for c in checks) for s in ("pass", "fail", "skip")}
    summary.update(
        ok=counts["fail"] == 0,
        counts=counts,
        seconds=round(time.perf_counter() - started, 1),
        checks=checks,
        skipped_because=sorted({c["detail"] for c in checks if c["status"] == "skip"}),
    )
    (out / "gpu_check.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "gpu_check.md").write_text(markdown(summary))
    print(markdown(summary))
    print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    if not gpu and args.require_gpu:
        return 2
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
