"""Write the Markdown summary of a ``docker/arm64-check.sh`` run from its log folder.

Reads ``steps.tsv`` (step, exit status, milliseconds, log file), ``platform.txt``, ``info.json``, the
``bench-*.json`` files and ``pytest-arm64.xml``; every figure in the summary comes from those files.
Standard library only: it runs with the host's ``python3``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

MODELS = ("ppocr-cls", "ppocr-det", "digits-teacher", "digits-student")
PRECISIONS = ("fp32", "int8")


def read_steps(logs: Path) -> list[tuple[str, int, float, str]]:
    rows = []
    for line in (logs / "steps.tsv").read_text().splitlines():
        name, rc, ms, log = line.split("\t")
        rows.append((name.strip(), int(rc), int(ms) / 1000.0, log))
    return rows


def junit_report(xml_path: Path) -> ET.Element | None:
    """The JUnit XML pytest wrote (``--junitxml``), or None when the tests did not run."""
    return ET.parse(xml_path).getroot() if xml_path.is_file() else None


def pytest_counts(root: ET.Element) -> dict[str, float] | None:
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return None
    counts = {key: float(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped", "time")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts


def failed_tests(root: ET.Element) -> list[str]:
    names = []
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            names.append(f"{case.get('classname')}::{case.get('name')}")
    return names


def skip_reasons(root: ET.Element) -> list[tuple[str, int]]:
    """Why tests were skipped, most frequent first: a passing run must show what it did not test."""
    counts: dict[str, int] = {}
    for skipped in root.iter("skipped"):
        reason = skipped.get("message", "").strip() or "(no reason given)"
        counts[reason] = counts.get(reason, 0) + 1
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def finished_at(logs: Path) -> dt.datetime:
    """When the run wrote its last log: the summary's date, also when it is rendered again later."""
    stamps = [path.stat().st_mtime for path in logs.iterdir() if path.is_file()]
    when = max(stamps) if stamps else dt.datetime.now(dt.timezone.utc).timestamp()
    return dt.datetime.fromtimestamp(when, dt.timezone.utc)


def last_line(path: Path) -> str:
    if not path.is_file():
        return ""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def bench_rows(logs: Path) -> list[str]:
    rows = []
    for model in MODELS:
        for precision in PRECISIONS:
            path = logs / f"bench-{model}-{precision}.json"
            if not path.is_file():
                rows.append(f"| {model} | {precision} | no result (see bench-{model}-{precision}.log) | | | | |")
                continue
            run = json.loads(path.read_text())
            lat = run.get("latency_ms", {})
            timed = run.get("queries", run.get("iterations", ""))
            plan = run.get("plan", {})
            verdict = "PASS" if run.get("meets_deadline") else "MISS"
            rows.append(
                f"| {model} | {run.get('precision', plan.get('precision', '?'))} | {run.get('backend', '?')} "
                f"({', '.join(plan.get('targets', []))}) | {timed} | {lat.get('p50', float('nan')):.2f} | "
                f"{lat.get('p99', float('nan')):.2f} | {verdict} ({run.get('deadline_ms')} ms) |"
            )
    return rows


def qemu_version() -> str:
    for exe in ("qemu-aarch64-static", "qemu-aarch64"):
        try:
            out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout
        except OSError:
            continue
        if out:
            return out.splitlines()[0]
    return "unknown"


def host_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def render(logs: Path, revision: str, iterations: int, pytest_args: str, qemu_cpu: str = "cortex-a72") -> str:
    steps = read_steps(logs)
    platform_lines = (logs / "platform.txt").read_text().splitlines() if (logs / "platform.txt").is_file() else []
    info = {}
    if (logs / "info.json").is_file():
        try:
            info = json.loads((logs / "info.json").read_text())
        except json.JSONDecodeError:
            info = {}
    device = info.get("device", {})
    versions = device.get("versions", {})
    pins = {line.split("==")[0].lower(): line.split("==")[1] for line in platform_lines if "==" in line}
    failed = [name for name, rc, _, _ in steps if rc != 0]
    total_s = sum(seconds for _, _, seconds, _ in steps)
    out = [
        "# arm64 check: edgerun's Raspberry Pi path, executed under QEMU",
        "",
        f"Written by `docker/arm64-check.sh`, run finished {finished_at(logs):%Y-%m-%d %H:%M} UTC. "
        f"Result: **{'all steps passed' if not failed else f'{len(failed)} step(s) failed'}** "
        f"({len(steps)} steps, {total_s / 60:.1f} min).",
        "",
        f"- Host: {platform.machine()} ({host_cpu()}), {len(os.sched_getaffinity(0))} cores; "
        f"{qemu_version()} (user mode, binfmt_misc), emulating a {qemu_cpu} (`QEMU_CPU`).",
        "- Root: Debian bookworm arm64 made by debootstrap (minbase + passwd), the same apt suites as "
        "`debian:bookworm-slim`; edgerun installed as `rpi.Dockerfile` does (its pinned `python3`/`python3-venv`, "
        "`docker/install.sh`, `docker/constraints.txt`, user uid 10001, cache in `/var/cache/edgerun`).",
        f"- Source: {revision}.",
        f"- Inside the root: `uname -m` {platform_lines[0] if platform_lines else '?'}, "
        f"{platform_lines[1] if len(platform_lines) > 1 else '?'}; onnxruntime {pins.get('onnxruntime', '?')}, "
        f"numpy {pins.get('numpy', '?')}, onnx {pins.get('onnx', '?')}, "
        f"opencv-python-headless {pins.get('opencv-python-headless', '?')}.",
        f"- `edgerun info` saw: device kind {device.get('kind', '?')}, arch {device.get('arch', '?')}, "
        f"CPU {device.get('cpu', '?')!r}, {device.get('cores', '?')} cores, onnxruntime "
        f"{versions.get('onnxruntime', '?')}. The root's /proc/cpuinfo is written by the check to describe the "
        f"emulated {qemu_cpu} (under QEMU user mode it would be the x86 host's, on which onnxruntime's CPU "
        "detection crashes); /proc/device-tree is absent, so the device kind is `cpu`, not `raspberry-pi`.",
        "",
        "**Every time below was measured under QEMU emulation of aarch64 on an x86 host. It proves that the "
        "arm64 wheels install and compute; it says nothing about a Raspberry Pi's speed** (see `docker/README.md` "
        "for the Pi 4B estimate; `edgerun bench` on a Pi is the real measurement).",
        "",
        "## Steps",
        "",
        "| step | exit | seconds |",
        "|---|---|---|",
    ]
    out += [f"| `{name}` | {rc}{' (FAILED)' if rc else ''} | {seconds:.1f} |" for name, rc, seconds, _ in steps]
    out += [
        "",
        f"## edgerun bench on aarch64 ({iterations} timed queries after 2 warm-up, batch 1, emulated)",
        "",
        "| model | precision | backend | queries | p50 ms | p99 ms | deadline verdict (emulated: not a Pi's) |",
        "|---|---|---|---|---|---|---|",
        *bench_rows(logs),
        "",
        "The INT8 models were quantized inside the root, on the cards' calibration data, by these bench runs (the "
        "cache starts empty). The commands, their exit status and their outputs are the result here; the "
        "latencies only show that each model ran, since QEMU translates every Arm instruction.",
        "",
        "## Test suite on aarch64",
        "",
    ]
    report = junit_report(logs / "pytest-arm64.xml")
    counts = pytest_counts(report) if report is not None else None
    if report is None or counts is None:
        out.append("Not run, or no JUnit report (see pytest.log).")
    else:
        args = f"`python -m pytest {pytest_args}`".replace(" `", "`") if pytest_args else "`python -m pytest`"
        out.append(
            f"{args} (the full suite, as CI runs it, unless arguments are shown): "
            f"**{counts['passed']:.0f} passed, {counts['failures'] + counts['errors']:.0f} failed, "
            f"{counts['skipped']:.0f} skipped** of {counts['tests']:.0f}, {counts['time'] / 60:.1f} min. "
            f"pytest's last line: `{last_line(logs / 'pytest.log')}`"
        )
        failures = failed_tests(report)
        if failures:
            out += ["", "Failed:", *[f"- `{name}`" for name in failures]]
        reasons = skip_reasons(report)
        if reasons:
            out += ["", "Skipped, by reason (pytest's words):", *[f"- {n} x {reason}" for reason, n in reasons]]
    out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--logs", type=Path, required=True)
    parser.add_argument("--revision", default="?")
    parser.add_argument("--iterations", type=int, default=0)
    parser.add_argument("--pytest-args", default="")
    parser.add_argument("--qemu-cpu", default="cortex-a72")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    args.output.write_text(render(args.logs, args.revision, args.iterations, args.pytest_args, args.qemu_cpu))


if __name__ == "__main__":
    main()
