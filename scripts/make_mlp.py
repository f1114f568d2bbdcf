"""Write a weight-bound MLP as ONNX: the model where dynamic batching pays most on a CPU.

Four fully connected layers of 2048 units (FP32, ReLU between them, the last one linear),
input ``x`` [batch, 2048], output ``y`` [batch, 2048], weights drawn from a seeded generator
(He-scaled, so activations stay in range). 16.8 M parameters, about 67 MB: at batch 1 every
call streams all the weights from memory for 33.6 M multiply-adds, so a batch of 16 costs
little more than one request. ``benchmarks/batching.py`` and ``benchmarks/triton_compare.py``
regenerate it when it is missing; the default folder is git-ignored.

    python scripts/make_mlp.py [PATH] [--width 2048] [--layers 4] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PATH = ROOT / "benchmarks" / ".models" / "mlp-2048x4.onnx"
OPSET = 17
IR_VERSION = 8  # what every ONNX Runtime since 1.10 reads


def build(width: int = 2048, layers: int = 4, seed: int = 0) -> onnx.ModelProto:
    """The MLP as an ONNX model (MatMul + Add per layer, ReLU between layers)."""
    rng = np.random.default_rng(seed)
    nodes, initializers = [], []
    current = "x"
    for i in range(layers):
        weight = (rng.standard_normal((width, width), dtype=np.float32) * np.sqrt(2.0 / width)).astype(np.float32)
        bias = (rng.standard_normal(width, dtype=np.float32) * 0.01).astype(np.float32)
        initializers += [numpy_helper.from_array(weight, f"w{i}"), numpy_helper.from_array(bias, f"b{i}")]
        last = i == layers - 1
        nodes.append(helper.make_node("MatMul", [current, f"w{i}"], [f"mm{i}"], name=f"matmul{i}"))
        nodes.append(helper.make_node("Add", [f"mm{i}", f"b{i}"], ["y" if last else f"add{i}"], name=f"add{i}"))
        if not last:
            nodes.append(helper.make_node("Relu", [f"add{i}"], [f"h{i}"], name=f"relu{i}"))
            current = f"h{i}"
    graph = helper.make_graph(
        nodes,
        f"mlp_{width}x{layers}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="edgerun scripts/make_mlp.py",
        doc_string=f"weight-bound MLP benchmark model: {layers} x {width} FP32, ReLU, seed {seed}",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def write(path: Path = DEFAULT_PATH, width: int = 2048, layers: int = 4, seed: int = 0) -> Path:
    """Build the model and write it atomically to ``path`` (folders made as needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = build(width, layers, seed)
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
    args = parser.parse_args(argv)
    if args.width < 1 or args.layers < 1:
        parser.error("--width and --layers must be >= 1")
    path = write(args.path, args.width, args.layers, args.seed)
    params = args.layers * (args.width * args.width + args.width)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {params / 1e6:.1f} M parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
