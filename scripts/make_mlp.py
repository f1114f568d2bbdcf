"""Write a weight-bound MLP as ONNX: the model where dynamic batching pays most on a CPU.

Four fully connected layers of 2048 units (FP32, ReLU between them, the last one linear),
input ``x`` [batch, 2048], output ``y`` [batch, 2048], weights drawn from a seeded generator
(He-scaled, so activations stay in range). 16.8 M parameters, about 67 MB: at batch 1 every
call streams all the weights from memory for 33.6 M multiply-adds, so a batch of 16 costs
little more than one request. ``benchmarks/batching.py`` and ``benchmarks/triton_compare.py``
regenerate it when it is missing; the default folder is git-ignored.

    python scripts/make_mlp.py [PATH] [--width 2048] [--layers 4] [--seed 0]
    python scripts/make_mlp.py PATH --widths 64 256 10   # the tiny MLP of issue 18: 64 -> 256 -> 10
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PATH = ROOT / "benchmarks" / ".models" / "mlp-2048x4.onnx"
OPSET = 17
IR_VERSION = 8  # what every ONNX Runtime since 1.10 reads


def build(width: int = 2048, layers: int = 4, seed: int = 0, widths: list[int] | None = None) -> onnx.ModelProto:
    """The MLP as an ONNX model (MatMul + Add per layer, ReLU between layers).

    ``widths`` (input, hidden..., output) replaces ``width`` x ``layers`` square layers.
    """
    sizes = widths or [width] * (layers + 1)
    rng = np.random.default_rng(seed)
    nodes, initializers = [], []
    current = "x"
    layers = len(sizes) - 1
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        scale = np.sqrt(2.0 / fan_in)
        weight = (rng.standard_normal((fan_in, fan_out), dtype=np.float32) * scale).astype(np.float32)
        bias = (rng.standard_normal(fan_out, dtype=np.float32) * 0.01).astype(np.float32)
        initializers += [numpy_helper.from_array(weight, f"w{i}"), numpy_helper.from_array(bias, f"b{i}")]
        last = i == layers - 1
        nodes.append(helper.make_node("MatMul", [current, f"w{i}"], [f"mm{i}"], name=f"matmul{i}"))
        nodes.append(helper.make_node("Add", [f"mm{i}", f"b{i}"], ["y" if last else f"add{i}"], name=f"add{i}"))
        if not last:
            nodes.append(helper.make_node("Relu", [f"add{i}"], [f"h{i}"], name=f"relu{i}"))
            current = f"h{i}"
    graph = helper.make_graph(
        nodes,
        f"mlp_{width}x{layers}" if widths is None else "mlp_" + "-".join(map(str, sizes)),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", sizes[-1]])],
        initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="edgerun scripts/make_mlp.py",
        doc_string=f"weight-bound MLP benchmark model: {layers} x {width} FP32, ReLU, seed {seed}"
        if widths is None
        else f"MLP benchmark model: {'-'.join(map(str, sizes))} FP32, ReLU, seed {seed}",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def write(
    path: Path = DEFAULT_PATH, width: int = 2048, layers: int = 4, seed: int = 0, widths: list[int] | None = None
) -> Path:
    """Build the model and write it atomically to ``path`` (folders made as needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = build(width, layers, seed, widths)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(model.SerializeToString())
    partial.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "path", nargs="?", type=Path, default=DEFAULT_PATH, help=f"output file (default {DEFAULT_PATH})"
    )
    parser.add_argument("--width", type=int, default=2048, help="units per layer (default 2048)")
    parser.add_argument("--layers", type=int, default=4, help="layers (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    parser.add_argument("--widths", type=int, nargs="+", help="input, hidden and output sizes (not --width/--layers)")
    args = parser.parse_args(argv)
    bad_widths = args.widths is not None and (len(args.widths) < 2 or min(args.widths) < 1)
    if args.width < 1 or args.layers < 1 or bad_widths:
        parser.error("--width and --layers must be >= 1; --widths needs at least 2 sizes, each >= 1")
    path = write(args.path, args.width, args.layers, args.seed, args.widths)
    sizes = args.widths or [args.width] * (args.layers + 1)
    params = sum(a * b + b for a, b in itertools.pairwise(sizes))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {params / 1e6:.1f} M parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
