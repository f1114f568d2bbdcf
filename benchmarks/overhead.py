"""edgerun's cost over raw ONNX Runtime: per-call latency and import time.

For each bundled model (and batch 8 of the default one) this times
``edgerun.load(model, threads=1).run(x)`` against a plain
``onnxruntime.InferenceSession(path, so, providers=["CPUExecutionProvider"]).run(None, {name: x})``
with the same SessionOptions (intra-op 1, inter-op 1) and the same input array.

The two run in interleaved rounds (A B, B A, A B, ...) so that clock, thermal and neighbour
drift hits both alike, and each side opens ``--instances`` sessions used in turn, because two
identical ORT sessions can differ by ~2% (see `compare`). One round is a block of calls of
about ``--block-ms`` per side; its per-call time is the block's wall time / calls. Reported
per case: the median per-call time of each side over rounds, the median of the per-round
ratios edgerun/raw with a bootstrap 95% interval, and the ratio of the fastest rounds
(min / min) as a second estimate.

Import time is measured in fresh interpreters: ``python -c "import edgerun"`` minus
``python -c "pass"`` (medians over ``--import-runs`` interleaved runs), next to
``import onnxruntime``. Cold start to the first inference (import, load, one run) is shown
for both too.

    python benchmarks/overhead.py [--rounds N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    IMPORT_TARGET_S,
    OVERHEAD_CASES,
    RATIO_TARGETS,
    Case,
    block_seconds,
    bootstrap_median,
    interleaved_blocks,
    machine,
    python_seconds,
    raw_session,
)
from rich.console import Console
from rich.table import Table

import edgerun


def compare(case: Case, rounds: int, block_s: float, instances: int) -> dict[str, Any]:
    """Interleaved A/B rounds of edgerun against raw ORT on one case.

    Two identical ORT sessions in one process can differ by about 2% on the same input (where
    their buffers land), as much as the target. So each side opens ``instances`` sessions,
    created alternately, and consecutive round pairs (A B, B A) move on to the next pair of
    sessions: the instance effect then averages out instead of deciding the ratio.
    """
    x = case.feed()
    feeds = {case.input_name: x}
    sessions, raws = [], []
    for _ in range(instances):
        sessions.append(edgerun.load(case.model, threads=1))
        raws.append(raw_session(case.model, threads=1))

    for session, raw in zip(sessions, raws, strict=True):
        for got, want in zip(session.run(x).values(), raw.run(None, feeds), strict=True):
            if not np.array_equal(got, want):
                raise SystemExit(f"{case.label}: edgerun and raw ONNX Runtime disagree; the comparison is void")

    def sides(k: int) -> dict[str, Callable[[], object]]:
        session, raw = sessions[k], raws[k]
        return {"edgerun": lambda: session.run(x), "raw": lambda: raw.run(None, feeds)}

    # Warm every session up, then size blocks from the slower side so each block lasts about block_s.
    for k in range(instances):
        for fn in sides(k).values():
            block_seconds(fn, 5)
    one_call = max(block_seconds(fn, 5) for fn in sides(0).values())
    calls = max(3, round(block_s / one_call))

    per_call: dict[str, list[float]] = {"edgerun": [], "raw": []}
    for i in range(rounds):
        pair = sides((i // 2) % instances)
        order = ("edgerun", "raw") if i % 2 == 0 else ("raw", "edgerun")
        for side in order:
            per_call[side].append(block_seconds(pair[side], calls))
    for session in sessions:
        session.close()

    ours_s = np.asarray(per_call["edgerun"])
    raw_s = np.asarray(per_call["raw"])
    ratios = ours_s / raw_s
    low, high = bootstrap_median(ratios)
    ratio = float(np.median(ratios))
    target = RATIO_TARGETS[case.model]
    return {
        "case": case.label,
        "model": case.model,
        "batch": case.batch,
        "shape": list(case.shape),
        "rounds": rounds,
        "instances": instances,
        "calls_per_round": calls,
        "edgerun_us": float(np.median(ours_s) * 1e6),
        "raw_us": float(np.median(raw_s) * 1e6),
        "edgerun_min_us": float(ours_s.min() * 1e6),
        "raw_min_us": float(raw_s.min() * 1e6),
        "overhead_us": float(np.median(ours_s - raw_s) * 1e6),
        "ratio_median": ratio,
        "ratio_ci95": [low, high],
        "ratio_min_of_rounds": float(ours_s.min() / raw_s.min()),
        "target": target,
        "meets_target": ratio <= target,
        "per_round_edgerun_us": (ours_s * 1e6).round(3).tolist(),
        "per_round_raw_us": (raw_s * 1e6).round(3).tolist(),
    }


def compare_same_session(case: Case, rounds: int, block_s: float) -> dict[str, Any]:
    """edgerun's ``Session.run`` against ``InferenceSession.run`` on the very ORT session edgerun opened.

    With one ORT session behind both sides, the instance effect (about 2% between identical
    sessions) is gone and the difference is edgerun's own per-call cost: feed validation,
    dispatch and the output dict, against ORT's Python wrapper.
    """
    x = case.feed()
    feeds = {case.input_name: x}
    session = edgerun.load(case.model, threads=1)
    inner = session._backend._session  # type: ignore[union-attr]
    sides: dict[str, Callable[[], object]] = {"edgerun": lambda: session.run(x), "raw": lambda: inner.run(None, feeds)}
    per_call, calls = interleaved_blocks(sides, rounds, block_s)
    session.close()
    ours_s, raw_s = np.asarray(per_call["edgerun"]), np.asarray(per_call["raw"])
    ratios = ours_s / raw_s
    low, high = bootstrap_median(ratios)
    return {
        "case": case.label,
        "rounds": rounds,
        "calls_per_round": calls,
        "edgerun_us": float(np.median(ours_s) * 1e6),
        "raw_us": float(np.median(raw_s) * 1e6),
        "overhead_us": float(np.median(ours_s - raw_s) * 1e6),
        "ratio_median": float(np.median(ratios)),
        "ratio_ci95": [low, high],
    }


_COLD_RAW = """
import numpy as np, onnxruntime as ort
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
s = ort.InferenceSession({path!r}, so, providers=["CPUExecutionProvider"])
s.run(None, {{{name!r}: np.zeros({shape!r}, np.float32)}})
"""
_COLD_EDGERUN = """
import numpy as np, edgerun
edgerun.load({model!r}, threads=1).run(np.zeros({shape!r}, np.float32))
"""


def import_times(runs: int) -> dict[str, Any]:
    """Fresh-interpreter import and cold-start times, interleaved, medians in seconds."""
    case = OVERHEAD_CASES[1]  # the default model at batch 1
    codes = {
        "baseline": "pass",
        "edgerun": "import edgerun",
        "onnxruntime": "import onnxruntime",
        "cold_edgerun": _COLD_EDGERUN.format(model=case.model, shape=case.shape),
        "cold_raw": _COLD_RAW.format(path=str(edgerun.models.path(case.model)), name=case.input_name, shape=case.shape),
    }
    cold_runs = max(3, runs // 3)
    samples: dict[str, list[float]] = {key: [] for key in codes}
    python_seconds("pass")  # warm the file cache
    for i in range(runs):
        for key, code in codes.items():
            if key.startswith("cold") and i >= cold_runs:
                continue
            samples[key].append(python_seconds(code))
    median = {key: statistics.median(values) for key, values in samples.items()}
    base = median["baseline"]
    edgerun_s = median["edgerun"] - base
    ort_s = median["onnxruntime"] - base
    return {
        "runs": runs,
        "python_startup_s": base,
        "import_edgerun_s": edgerun_s,
        "import_onnxruntime_s": ort_s,
        "ratio_edgerun_to_onnxruntime": edgerun_s / ort_s if ort_s > 0 else None,
        "target_s": IMPORT_TARGET_S,
        "meets_target": edgerun_s <= IMPORT_TARGET_S,
        "cold_start_model": case.label,
        "cold_start_runs": cold_runs,
        "cold_start_edgerun_s": median["cold_edgerun"] - base,
        "cold_start_raw_s": median["cold_raw"] - base,
        "samples_s": {key: [round(v, 4) for v in values] for key, values in samples.items()},
    }


def _verdict(ok: bool) -> str:
    return "[green]yes[/]" if ok else "[red]no[/]"


def render_same_session(console: Console, results: list[dict[str, Any]]) -> None:
    table = Table(title="edgerun's own per-call cost: the same ORT session behind both sides")
    for column in ("case", "edgerun µs", "ORT run µs", "Δ µs", "ratio (median)", "95% CI"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for r in results:
        low, high = r["ratio_ci95"]
        table.add_row(
            r["case"],
            f"{r['edgerun_us']:.2f}",
            f"{r['raw_us']:.2f}",
            f"{r['overhead_us']:+.2f}",
            f"{r['ratio_median']:.3f}",
            f"{low:.3f}-{high:.3f}",
        )
    console.print(table)


def render(console: Console, results: list[dict[str, Any]], imports: dict[str, Any] | None) -> None:
    table = Table(title="edgerun vs raw ONNX Runtime, per call (1 intra-op thread)")
    for column in ("case", "edgerun µs", "raw µs", "Δ µs", "ratio (median)", "95% CI", "ratio (min/min)", "target"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for r in results:
        low, high = r["ratio_ci95"]
        table.add_row(
            r["case"],
            f"{r['edgerun_us']:.1f}",
            f"{r['raw_us']:.1f}",
            f"{r['overhead_us']:+.1f}",
            f"{r['ratio_median']:.3f}",
            f"{low:.3f}-{high:.3f}",
            f"{r['ratio_min_of_rounds']:.3f}",
            f"<= {r['target']:.2f} {_verdict(r['meets_target'])}",
        )
    console.print(table)
    rounds = {r["rounds"] for r in results}
    console.print(
        f"[dim]{'/'.join(map(str, sorted(rounds)))} interleaved rounds per case over {results[0]['instances']} "
        "session pairs; "
        "calls per round: " + ", ".join(f"{r['case']} {r['calls_per_round']}" for r in results) + "[/]"
    )
    if imports is None:
        return
    table = Table(title=f"Import time in a fresh interpreter (median of {imports['runs']}, python startup subtracted)")
    table.add_column("what")
    table.add_column("seconds", justify="right")
    table.add_column("note", justify="left")
    table.add_row("python -c pass", f"{imports['python_startup_s']:.3f}", "baseline, subtracted below")
    table.add_row(
        "import edgerun",
        f"{imports['import_edgerun_s']:.3f}",
        f"target <= {imports['target_s']:.1f} s {_verdict(imports['meets_target'])}",
    )
    table.add_row("import onnxruntime", f"{imports['import_onnxruntime_s']:.3f}", "")
    ratio = imports["ratio_edgerun_to_onnxruntime"]
    table.add_row("ratio edgerun / onnxruntime", f"{ratio:.2f}x" if ratio is not None else "n/a", "")
    table.add_row(
        f"cold start edgerun ({imports['cold_start_model']})",
        f"{imports['cold_start_edgerun_s']:.3f}",
        f"import + load + first run, median of {imports['cold_start_runs']}",
    )
    table.add_row(f"cold start raw ORT ({imports['cold_start_model']})", f"{imports['cold_start_raw_s']:.3f}", "")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=36, help="interleaved A/B rounds per case (default 36)")
    parser.add_argument("--instances", type=int, default=3, help="sessions per side, used in turn (default 3)")
    parser.add_argument("--block-ms", type=float, default=100.0, help="length of one side's block in a round")
    parser.add_argument("--import-runs", type=int, default=15, help="fresh interpreters per import measurement")
    parser.add_argument("--no-import", action="store_true", help="skip the import-time measurement")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.rounds < 2 or args.instances < 1:
        parser.error("--rounds must be >= 2 and --instances >= 1")

    # Wide enough for the tables when piped to a file or CI log (rich assumes 80 columns there).
    console = Console() if sys.stdout.isatty() else Console(width=132)
    info = machine()
    console.print(
        f"[bold]{info['cpu']}[/], {info['cores']} cores, onnxruntime {info['onnxruntime']}, "
        f"numpy {info['numpy']}, Python {info['python']}"
    )
    results = []
    for case in OVERHEAD_CASES:
        with console.status(f"{case.label}: {args.rounds} rounds"):
            results.append(compare(case, args.rounds, args.block_ms / 1e3, args.instances))
    same = []
    for case in OVERHEAD_CASES:
        with console.status(f"{case.label}: same-session rounds"):
            same.append(compare_same_session(case, args.rounds, args.block_ms / 1e3))
    imports = None
    if not args.no_import:
        with console.status(f"import times: {args.import_runs} fresh interpreters each"):
            imports = import_times(args.import_runs)
    render(console, results, imports)
    render_same_session(console, same)

    if args.json is not None:
        data = {"machine": info, "cases": results, "same_session": same, "imports": imports}
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
