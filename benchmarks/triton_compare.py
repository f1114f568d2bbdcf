"""edgerun's `DynamicBatcher` against NVIDIA Triton's dynamic batcher (through PyTriton), same models.

Triton side: PyTriton (``nvidia-pytriton``, which ships a ``tritonserver`` binary) in its own
virtual environment serves the tiny 64-256-10 MLP, ppocr-det at 224 x 224 and (``--models mlp``)
the weight-bound 4x2048 MLP with Triton's dynamic batcher (``max_batch_size`` 16,
``max_queue_delay_microseconds`` from ``--delay-ms``, default 2 ms, preferred batch sizes 4, 8
and 16), each instance an ONNX Runtime session with one intra-op thread, bound to 127.0.0.1
only. N client threads in a separate process (one PyTriton ``ModelClient`` each, gRPC unless
``--protocol http``) send batch-1 requests back to back, bounded by ``--seconds`` and
``--max-requests``; Triton's own statistics give the mean batch size.

edgerun side, in this process, N caller threads (the closed loop of ``batching.py``), two ways:

* ``edgerun same``: ``DynamicBatcher(edgerun.load(model), max_batch_size=16, max_queue_delay_ms=
  --delay-ms, preferred_batch_sizes=(4, 8, 16), instances=k)`` calling ``infer``: Triton's settings;
* ``edgerun defaults``: ``edgerun.load(model, batching=True)`` calling ``run``: what edgerun
  chooses for this model on this device (``stats()["chosen"]``; one row per model).

The sides alternate block by block (A B C, C B A) on the same machine. Triton's figures include
what a server costs (gRPC, serialisation, the hop from Triton's Python backend to PyTriton's
process); edgerun's are in process. That is the comparison an app choosing between them faces.

Setup (once; PyTriton may pin an older numpy, hence its own environment):

    python3 -m venv /tmp/pytriton-venv
    /tmp/pytriton-venv/bin/pip install nvidia-pytriton onnxruntime numpy

Run from the repository root with edgerun's environment active:

    python benchmarks/triton_compare.py [--pytriton-python /tmp/pytriton-venv/bin/python] [--json PATH]

The same file is the server (``--serve``) and the load generator (``--client``) when started by
the PyTriton interpreter; those modes import neither edgerun nor rich.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_PYTRITON = Path("/tmp/pytriton-venv/bin/python")
HOST = "127.0.0.1"  # the only address this script ever serves on or sends to
TOKEN_ENV = "EDGERUN_TRITON_TOKEN"
"""The access token of Triton's restricted APIs (statistics), handed to the children by environment."""

MODELS: dict[str, dict[str, Any]] = {
    "tiny": {"label": "MLP 64-256-10 (tiny)", "input": "x", "row_shape": [64], "output_shape": [10]},
    "mlp": {"label": "MLP 4x2048 (weight-bound)", "input": "x", "row_shape": [2048], "output_shape": [2048]},
    "cnn": {
        "label": "ppocr-det 224x224 (CNN)",
        "input": "x",
        "row_shape": [3, 224, 224],
        "output_shape": [1, 224, 224],
    },
}
MAX_BATCH = 16
PREFERRED = [4, 8, 16]
"""Both batchers' settings, as the issue names them."""


def _row(row_shape: list[int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((1, *row_shape), dtype=np.float32)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.asarray(values) * 1e3, q, method="inverted_cdf"))


# --- server (PyTriton interpreter) -----------------------------------------------------------


def serve(spec_json: str, http_port: int, grpc_port: int) -> int:
    """Bind every model in the spec to a local Triton and wait until stdin closes."""
    import sysconfig

    # Triton's Python backend stub links against the interpreter's libpython.
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH")) if p)

    import onnxruntime as ort
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    specs = json.loads(spec_json)

    def make_infer(path: str, input_name: str) -> Any:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # what edgerun uses on this 2-core device
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        output = session.get_outputs()[0].name

        @batch
        def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
            (y,) = session.run([output], {input_name: inputs[input_name]})
            return {"y": y}

        return infer

    config = TritonConfig(
        http_address=HOST,
        http_port=http_port,
        grpc_address=HOST,
        grpc_port=grpc_port,
        allow_metrics=False,
        allow_gpu_metrics=False,
        allow_cpu_metrics=False,
        allow_sagemaker=False,
        allow_vertex_ai=False,
        log_verbose=0,
    )
    security = TritonSecurityConfig(access_token=os.environ[TOKEN_ENV])  # statistics stay restricted
    with Triton(config=config, security_config=security) as triton:
        for spec in specs:
            triton.bind(
                model_name=spec["name"],
                infer_func=[make_infer(spec["path"], spec["input"]) for _ in range(spec["instances"])],
                inputs=[Tensor(name=spec["input"], dtype=np.float32, shape=tuple(spec["row_shape"]))],
                outputs=[Tensor(name="y", dtype=np.float32, shape=tuple(spec["output_shape"]))],
                config=ModelConfig(
                    max_batch_size=MAX_BATCH,
                    batcher=DynamicBatcher(
                        max_queue_delay_microseconds=int(spec["delay_ms"] * 1000), preferred_batch_size=PREFERRED
                    ),
                ),
                strict=False,
            )
        triton.run()
        print("READY", flush=True)
        sys.stdin.read()  # the parent closes stdin to stop the server
    return 0


# --- load generator (PyTriton interpreter) ---------------------------------------------------


def client(
    http_port: int, grpc_port: int | None, model: str, row_shape: list[int], callers: int, seconds: float,
    max_requests: int,
) -> int:  # fmt: skip
    """``callers`` threads, one ModelClient each (gRPC with ``grpc_port``, else HTTP), batch-1 requests back
    to back; JSON on stdout."""
    from pytriton.client import ModelClient
    from tritonclient.http import InferenceServerClient

    url = f"grpc://{HOST}:{grpc_port}" if grpc_port else f"http://{HOST}:{http_port}"
    per_thread_cap = max(1, max_requests // callers)
    latencies: list[list[float]] = [[] for _ in range(callers)]
    last_done = [0.0] * callers
    errors: list[str] = []
    ready = threading.Barrier(callers + 1)
    go = threading.Event()
    window: dict[str, float] = {}

    def caller(i: int) -> None:
        x = _row(row_shape, i)
        try:
            with ModelClient(url, model, init_timeout_s=60, inference_timeout_s=60) as c:
                c.infer_batch(x=x)  # connect and warm up outside the window
                ready.wait()
                go.wait()
                stop, out = window["stop"], latencies[i]
                for _ in range(per_thread_cap):
                    began = time.perf_counter()
                    if began >= stop:
                        break
                    c.infer_batch(x=x)
                    ended = time.perf_counter()
                    out.append(ended - began)
                    last_done[i] = ended
        except threading.BrokenBarrierError:
            pass
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            ready.abort()
            go.set()

    stats_client = InferenceServerClient(f"{HOST}:{http_port}")
    token_header = {"triton-access-token": os.environ[TOKEN_ENV]}

    def counts() -> tuple[int, int, int, int]:
        """Requests, executions (batches), and the queue and compute ns summed over requests so far."""
        stats = stats_client.get_inference_statistics(model, headers=token_header)["model_stats"][0]
        phases = stats["inference_stats"]
        return (
            int(stats["inference_count"]),
            int(stats["execution_count"]),
            int(phases["queue"]["ns"]),
            int(phases["compute_infer"]["ns"]),
        )

    threads = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(callers)]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        ready.wait(timeout=120)
    before = counts()
    window["start"] = time.perf_counter()
    window["stop"] = window["start"] + seconds
    go.set()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    after = counts()
    stats_client.close()
    pooled = [v for per in latencies for v in per]
    wall = (max(last_done) - window["start"]) if pooled else 0.0
    executions = after[1] - before[1]
    result = {
        "requests": len(pooled),
        "wall_s": wall,
        "latencies_s": pooled,
        "inferences": after[0] - before[0],
        "executions": executions,
        "mean_batch": (after[0] - before[0]) / executions if executions else None,
        # Triton's per-request phases: the queue wait, and the compute time of the batch it was in.
        "server_queue_ms": (after[2] - before[2]) / 1e6 / max(1, after[0] - before[0]),
        "server_compute_ms": (after[3] - before[3]) / 1e6 / max(1, after[0] - before[0]),
        "errors": errors[:5],
        "hung_threads": sum(t.is_alive() for t in threads),
    }
    print(json.dumps(result))
    return 0


# --- orchestration (edgerun's interpreter) ---------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class TritonServer:
    """The ``--serve`` child: started, waited for (READY), stopped by closing its stdin."""

    def __init__(
        self, python: Path, specs: list[dict[str, Any]], log_path: Path, start_timeout_s: float, token: str
    ) -> None:
        self.http_port, self.grpc_port = _free_port(), _free_port()
        self.log_path = log_path
        self._log = log_path.open("w")
        env = dict(os.environ)
        env.pop("VIRTUAL_ENV", None)
        env[TOKEN_ENV] = token
        self.proc = subprocess.Popen(
            [
                *(str(python), str(Path(__file__).resolve()), "--serve", json.dumps(specs)),
                *("--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
            start_new_session=True,
        )
        ready = threading.Event()

        def watch() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                if line.strip() == "READY":
                    ready.set()

        threading.Thread(target=watch, daemon=True).start()
        deadline = time.monotonic() + start_timeout_s
        while not ready.is_set() and self.proc.poll() is None and time.monotonic() < deadline:
            ready.wait(0.2)
        if not ready.is_set():
            self.stop()
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
            raise RuntimeError(f"PyTriton server did not start (exit code {self.proc.returncode}); log tail:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (subprocess.TimeoutExpired, BrokenPipeError, OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # our own child's process group only
                self.proc.wait(timeout=10)
        self._log.close()


def triton_block(
    python: Path, server: TritonServer, name: str, row_shape: list[int], callers: int, seconds: float, max_req: int,
    protocol: str,
) -> dict[str, Any]:  # fmt: skip
    command = [str(python), str(Path(__file__).resolve()), "--client", name, "--http-port", str(server.http_port)]
    if protocol == "grpc":
        command += ["--grpc-port", str(server.grpc_port)]
    command += ["--row-shape", *map(str, row_shape), "--callers", str(callers), "--seconds", str(seconds)]
    command += ["--max-requests", str(max_req)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 240, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"Triton client failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["errors"] or not result["requests"]:
        raise RuntimeError(f"Triton client errors: {result['errors']}")
    return result


def edgerun_block(batcher: Any, call: Any, row_shape: list[int], callers: int, seconds: float) -> dict[str, Any]:
    """``callers`` threads calling ``call`` (``batcher.infer``, or a batched session's ``run``) back to back."""
    from batching import closed_loop, histogram_diff

    from edgerun.runtime.batching.stats import mean_batch_size

    inputs = [_row(row_shape, i) for i in range(callers)]
    before = batcher.stats()
    block = closed_loop([call] * callers, inputs, seconds)
    after = batcher.stats()
    hist = histogram_diff(after["batch_size_histogram"], before["batch_size_histogram"])
    batches = sum(hist.values())
    return {
        "requests": block.requests,
        "wall_s": block.wall_s,
        "latencies_s": block.latencies_s,
        "mean_batch": mean_batch_size(hist, batches) if batches else None,
    }


def _pool(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    requests = sum(b["requests"] for b in blocks)
    wall = sum(b["wall_s"] for b in blocks)
    latencies = [v for b in blocks for v in b["latencies_s"]]
    batches = [b["mean_batch"] for b in blocks if b.get("mean_batch")]
    return {
        "requests": requests,
        "req_per_s": requests / wall if wall else 0.0,
        "per_round_req_per_s": [b["requests"] / b["wall_s"] for b in blocks if b["wall_s"]],
        "p50_ms": _percentile(latencies, 50),
        "p99_ms": _percentile(latencies, 99),
        "mean_batch": float(np.mean(batches)) if batches else None,
        **{
            key: float(np.mean([b[key] for b in blocks]))
            for key in ("server_queue_ms", "server_compute_ms")
            if all(key in b for b in blocks)
        },
    }


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs, or None when either side has no figure (a block that served nothing)."""
    return ours / theirs if ours is not None and theirs else None


def compare(args: argparse.Namespace) -> int:
    from _common import machine
    from batching import MLP_PATH, ensure_mlp
    from batching_defaults import TINY_MLP_PATH, TINY_MLP_WIDTHS
    from rich.console import Console
    from rich.table import Table

    import edgerun
    from edgerun.runtime.batching import DynamicBatcher

    console = Console() if sys.stdout.isatty() else Console(width=150)
    info = machine()
    console.print(f"[bold]{info['cpu']}[/], {info['cores']} cores, onnxruntime {info['onnxruntime']} (edgerun side)")
    python = Path(args.pytriton_python)
    probe = subprocess.run(
        [str(python), "-c", "import pytriton, onnxruntime, numpy; from importlib.metadata import version as v; "
         "print(v('nvidia-pytriton'), onnxruntime.__version__, numpy.__version__)"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if probe.returncode != 0:
        console.print(
            f"[red]PyTriton is not usable with {python}[/]: {probe.stderr.strip()[-500:] or 'interpreter missing'}\n"
            "Set it up: python3 -m venv /tmp/pytriton-venv && "
            "/tmp/pytriton-venv/bin/pip install nvidia-pytriton onnxruntime numpy"
        )
        return 2
    pytriton_version, triton_ort, triton_numpy = probe.stdout.split()
    console.print(f"PyTriton {pytriton_version}, its onnxruntime {triton_ort}, numpy {triton_numpy} ({python})")
    mlp_path = args.mlp_path or MLP_PATH
    paths = {"tiny": str(TINY_MLP_PATH), "mlp": str(mlp_path), "cnn": str(edgerun.models.path("ppocr-det"))}
    if "tiny" in args.models:
        ensure_mlp(TINY_MLP_PATH, console, TINY_MLP_WIDTHS)
    if "mlp" in args.models:
        ensure_mlp(mlp_path, console)
    specs = [
        {
            "name": f"{key}_i{k}",
            "path": paths[key],
            "input": MODELS[key]["input"],
            "row_shape": MODELS[key]["row_shape"],
            "output_shape": MODELS[key]["output_shape"],
            "instances": k,
            "delay_ms": args.delay_ms,
        }
        for key in args.models
        for k in args.instances
    ]
    log_path = Path(args.server_log)
    started = time.perf_counter()
    with console.status("starting the PyTriton server on 127.0.0.1"):
        token = secrets.token_urlsafe(32)
        os.environ[TOKEN_ENV] = token  # inherited by the client processes
        server = TritonServer(python, specs, log_path, start_timeout_s=180, token=token)
    up_s = time.perf_counter() - started
    console.print(f"Triton up in {up_s:.1f} s (HTTP {HOST}:{server.http_port}; log {log_path})")
    results = []
    try:
        for key in args.models:
            model = MODELS[key]
            session = edgerun.load(paths[key])
            defaults = edgerun.load(paths[key], batching=True)  # edgerun's own choice for this model here
            defaults_blocks: list[dict[str, Any]] = []
            for k in args.instances:
                batcher = DynamicBatcher(
                    session,
                    max_batch_size=MAX_BATCH,
                    max_queue_delay_ms=args.delay_ms,
                    preferred_batch_sizes=PREFERRED,
                    instances=k,
                )
                row_shape, callers, seconds = model["row_shape"], args.callers, args.seconds
                sides: dict[str, Callable[[], dict[str, Any]]] = {
                    "edgerun same": partial(edgerun_block, batcher, batcher.infer, row_shape, callers, seconds),
                    "triton": partial(
                        triton_block,
                        python,
                        server,
                        f"{key}_i{k}",
                        row_shape,
                        callers,
                        seconds,
                        args.max_requests,
                        args.protocol,
                    ),
                }
                if k == args.instances[0]:  # the defaults do not depend on k: measured once per model
                    sides["edgerun defaults"] = partial(
                        edgerun_block, defaults.batcher, defaults.run, row_shape, callers, seconds
                    )
                edgerun_block(batcher, batcher.infer, model["row_shape"], args.callers, 0.5)  # warm-up
                if "edgerun defaults" in sides:
                    edgerun_block(defaults.batcher, defaults.run, model["row_shape"], args.callers, 0.5)
                blocks: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
                for r in range(args.rounds):
                    for side in list(sides) if r % 2 == 0 else list(reversed(sides)):
                        with console.status(f"{model['label']}, {k} instance(s): round {r + 1}, {side}"):
                            blocks[side].append(sides[side]())
                batcher.close()
                defaults_blocks += blocks.get("edgerun defaults", [])
                ours, theirs = _pool(blocks["edgerun same"]), _pool(blocks["triton"])
                results.append(
                    {
                        "model": model["label"],
                        "key": key,
                        "instances": k,
                        "callers": args.callers,
                        "edgerun": ours,
                        "triton": theirs,
                        "throughput_ratio": _ratio(ours["req_per_s"], theirs["req_per_s"]),
                        "p99_ratio": _ratio(ours["p99_ms"], theirs["p99_ms"]),
                    }
                )
            best = max((r for r in results if r["key"] == key), key=lambda r: r["triton"]["req_per_s"])
            chosen = dict(defaults.batcher.stats().get("chosen", {}))
            mine = _pool(defaults_blocks)
            results.append(
                {
                    "model": model["label"],
                    "key": key,
                    "instances": chosen.get("instances"),
                    "defaults": True,
                    "chosen": chosen,
                    "callers": args.callers,
                    "edgerun": mine,
                    "triton": best["triton"],
                    "triton_instances": best["instances"],
                    "throughput_ratio": _ratio(mine["req_per_s"], best["triton"]["req_per_s"]),
                    "p99_ratio": _ratio(mine["p99_ms"], best["triton"]["p99_ms"]),
                }
            )
            defaults.close()
            session.close()
    finally:
        server.stop()

    table = Table(
        title=(
            f"edgerun DynamicBatcher vs Triton dynamic batcher (PyTriton {pytriton_version}): {args.callers} callers, "
            f"max_batch_size 16, preferred 4/8/16, max queue delay {args.delay_ms} ms, {args.protocol}, "
            f"{args.rounds} rounds x {args.seconds} s per side"
        )
    )
    for column in ("model", "inst.", "side", "req/s", "p50 ms", "p99 ms", "mean batch", "edgerun ÷ Triton"):
        table.add_column(column, justify="left" if column in ("model", "side") else "right")
    for r in results:
        for side in ("edgerun", "triton"):
            s = r[side]
            ratio = ""
            if side == "edgerun" and r["throughput_ratio"]:
                ratio = f"{r['throughput_ratio']:.2f}x req/s, p99 {r['p99_ratio']:.2f}x"
            if r.get("defaults"):
                label = "edgerun defaults" if side == "edgerun" else f"triton (its best: {r['triton_instances']} inst.)"
                instances = str(r["instances"]) if side == "edgerun" else ""
            else:
                label, instances = ("edgerun same" if side == "edgerun" else "triton"), str(r["instances"])
            table.add_row(
                r["model"],
                instances,
                label,
                f"{s['req_per_s']:.0f}",
                f"{s['p50_ms']:.2f}",
                f"{s['p99_ms']:.2f}",
                f"{s['mean_batch']:.1f}" if s["mean_batch"] else "",
                ratio,
                end_section=side == "triton",
            )
    console.print(table)
    for r in results:
        if r.get("defaults"):
            console.print(f"[dim]{r['model']}, edgerun defaults: {r['chosen']}[/]")
            continue
        t = r["triton"]
        if "server_compute_ms" in t:
            console.print(
                f"[dim]{r['model']}, {r['instances']} instance(s), Triton's statistics per request: queue "
                f"{t['server_queue_ms']:.2f} ms, compute {t['server_compute_ms']:.2f} ms (its batch, mean size "
                f"{t['mean_batch']:.1f}, through the Python backend and PyTriton)[/]"
            )
    console.print(
        f"[dim]Triton: {args.protocol} clients in a separate process, Triton's Python backend handing batches to "
        f"PyTriton's process; edgerun: in-process callers. Total {time.perf_counter() - started:.0f} s.[/]"
    )
    if args.json is not None:
        payload = {
            "machine": info,
            "pytriton": {"version": pytriton_version, "onnxruntime": triton_ort, "numpy": triton_numpy},
            "settings": {
                "callers": args.callers,
                "delay_ms": args.delay_ms,
                "max_batch_size": MAX_BATCH,
                "preferred_batch_sizes": PREFERRED,
                "protocol": args.protocol,
                "seconds": args.seconds,
                "rounds": args.rounds,
                "max_requests_per_block": args.max_requests,
            },
            "results": results,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        console.print(f"wrote {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=tuple(MODELS), default=["tiny", "cnn"])
    parser.add_argument("--protocol", choices=("grpc", "http"), default="grpc", help="Triton clients' protocol")
    parser.add_argument("--instances", nargs="+", type=int, default=[1, 2], help="model instances (default 1 2)")
    parser.add_argument("--callers", type=int, default=16, help="client threads (default 16)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per block (default 3)")
    parser.add_argument("--rounds", type=int, default=2, help="blocks per side, alternating (default 2)")
    parser.add_argument("--max-requests", type=int, default=20_000, help="request cap per Triton block")
    parser.add_argument("--delay-ms", type=float, default=2.0, help="max queue delay of both batchers (default 2)")
    parser.add_argument("--pytriton-python", default=str(DEFAULT_PYTRITON), help="interpreter with nvidia-pytriton")
    parser.add_argument("--server-log", default="/tmp/edgerun-triton-server.log", help="Triton's log file")
    parser.add_argument("--mlp-path", type=Path, default=None, help="MLP model (made if missing)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    # internal modes, run by the PyTriton interpreter
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--http-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--grpc-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--row-shape", nargs="+", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.serve, args.http_port, args.grpc_port)
    if args.client:
        return client(
            args.http_port, args.grpc_port, args.client, args.row_shape, args.callers, args.seconds, args.max_requests
        )
    if args.callers < 1 or args.rounds < 1 or args.seconds <= 0 or any(k < 1 for k in args.instances):
        parser.error("--callers, --rounds and --instances must be >= 1, --seconds > 0")
    return compare(args)


if __name__ == "__main__":
    sys.exit(main())
