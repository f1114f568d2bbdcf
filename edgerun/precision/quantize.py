"""INT8 quantization to an explicit Q/DQ ONNX model, through ``onnxruntime.quantization``.

TensorRT 10.1 deprecated and TensorRT 11 removed implicit INT8 calibration: precision now
comes from the ONNX itself. A Q/DQ model with symmetric signed 8-bit activations and weights
(zero points 0, what TensorRT requires: target ``tensorrt``) runs on TensorRT and ONNX Runtime
alike; for ONNX Runtime on a CPU, target ``cpu`` (unsigned activations) is the layout its
kernels fuse, measured much faster there. Steps: refuse already-quantized models, raise opsets below 13 (so
per-channel weights are possible), ORT's ``quant_pre_process`` (graph optimisation and ONNX
shape inference; symbolic shape inference is skipped on purpose: it needs sympy and matters
for transformer-style dynamic shapes, not for the CNNs this targets), calibrate (cached by
model hash + data hash + method), quantize, count what was quantized, and warn loudly when
nothing was. All temporary files live in a temporary folder.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from edgerun.errors import ConfigError, ConversionError
from edgerun.precision import rangefile
from edgerun.precision.ortfeatures import conv_integer_int8_weights, onnxruntime_version
from edgerun.precision.ranges import cached_ranges_usable, calibrate, range_cache_path
from edgerun.runtime.backends.base import QdqLayout
from edgerun.runtime.modelfile import ModelFile
from edgerun.storage import atomic_path

if TYPE_CHECKING:
    import onnx

    from edgerun.precision.calibration import CalibrationData

Method = Literal["minmax", "entropy", "percentile"]
"""How calibration turns observed activations into ranges."""
Mode = Literal["static", "dynamic"]
"""``static``: activation ranges calibrated ahead of time; ``dynamic``: computed at run time."""
METHODS: tuple[Method, ...] = get_args(Method)
MODES: tuple[Mode, ...] = get_args(Mode)
TARGETS: tuple[QdqLayout, ...] = get_args(QdqLayout)
"""Which runtime the Q/DQ model is shaped for (see `QuantizeOptions.target`)."""
MIN_QDQ_OPSET = 13
_COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
_COUNTED_OPS = _COMPUTE_OPS | {"LSTM", "GRU"}
"""What coverage counts as a compute op (weights that INT8 could hold)."""
_INTEGER_OPS = frozenset(
    {"MatMulInteger", "ConvInteger", "QLinearConv", "QLinearMatMul", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM"}
)
"""Operators that only exist in a quantized model: each one is a quantized compute op."""
_log = logging.getLogger("edgerun")


@dataclass(frozen=True)
class QuantizeOptions:
    """How to quantize: calibration method, per-channel weights, what to leave in float."""

    method: Method = "minmax"
    per_channel: bool = False
    exclude: tuple[str, ...] = ()
    """Node names or operator types to keep in float (detector heads, say)."""
    mode: Mode = "static"
    force: bool = False
    """Allow dynamic quantization of convolutional models (measured slower than FP32)."""
    target: QdqLayout = "tensorrt"
    """``tensorrt``: signed INT8 activations and weights, all zero points 0, float biases, as TensorRT requires
    (ONNX Runtime runs it too, but its x86 kernels do not fuse signed activations: measured 1.8x
    slower than FP32 on the PP-OCR detector). ``cpu``: unsigned INT8 activations with zero points
    and signed symmetric weights, the layout ONNX Runtime's CPU kernels fuse (1.28x faster than
    FP32 on the same model)."""
    keep_head_float: bool = False
    """Keep the last Conv/MatMul/Gemm before each model output in float (detector heads that
    pack boxes and scores together collapse under INT8)."""
    reduce_range: bool | None = None
    """7-bit weights against overflow in ``u8s8`` arithmetic on x86 without VNNI; None: decide
    from this CPU (only for target ``cpu``)."""
    why: str = ""
    """Why this mode was chosen (`auto_mode`), for the artifact's detail and manifest; not part of the key."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown calibration method {self.method!r}; choose one of: {', '.join(METHODS)}")
        if self.mode not in MODES:
            raise ConfigError(f"unknown quantization mode {self.mode!r}; choose one of: {', '.join(MODES)}")
        if self.target not in TARGETS:
            raise ConfigError(f"unknown quantization target {self.target!r}; choose one of: {', '.join(TARGETS)}")

    def key(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "per_channel": self.per_channel,
            "exclude": sorted(self.exclude),
            "mode": self.mode,
            "target": self.target,
            "keep_head_float": self.keep_head_float,
            "reduce_range": self.resolved_reduce_range(),
            "biases": "float" if self.target == "tensorrt" else "int32",  # part of the key since biases changed
        }

    def resolved_reduce_range(self) -> bool:
        """``reduce_range``, decided for this CPU when None: only x86 ``cpu`` targets without VNNI."""
        if self.reduce_range is not None:
            return self.reduce_range
        if self.target != "cpu":
            return False
        from edgerun.runtime.device import current_device

        profile = current_device()
        return profile.arch in ("x86_64", "AMD64") and not profile.int8_dot_product


@dataclass(frozen=True)
class QuantizeResult:
    """What a quantization produced and how much of the model it covered."""

    output: Path
    mode: Mode
    qdq_nodes: int
    quantized: dict[str, int]
    """Compute operators (Conv, MatMul, ...) whose weights are now INT8, by type."""
    float_ops: dict[str, int]
    """Compute operators left in float, by type."""
    excluded_nodes: tuple[str, ...]
    calibration_cache: Path | None
    calibration_cache_hit: bool
    seconds: float
    warnings: list[str] = field(default_factory=list)
    subgraph_quantized: dict[str, int] = field(default_factory=dict)
    """The part of ``quantized`` that sits inside ``If``/``Loop``/``Scan`` subgraphs, by type."""
    subgraph_float_ops: dict[str, int] = field(default_factory=dict)
    """The part of ``float_ops`` that sits inside ``If``/``Loop``/``Scan`` subgraphs, by type."""

    @property
    def quantized_count(self) -> int:
        return sum(self.quantized.values())


def quantize(
    model: str | os.PathLike[str],
    output: str | os.PathLike[str],
    calibration: CalibrationData | None = None,
    options: QuantizeOptions | None = None,
    *,
    cache: Path | None = None,
    warn_if_empty: bool = True,
) -> QuantizeResult:
    """Write an INT8 version of ``model`` to ``output``; static mode needs ``calibration``.

    ``cache`` is the folder for calibration ranges (default: edgerun's user cache); pass a
    folder of your own to keep them with a project. ``warn_if_empty`` False: a result that
    quantized nothing is only recorded in ``warnings`` (the precision guard probes such mixes).
    """
    options = options or QuantizeOptions()
    started = time.perf_counter()
    source = ModelFile.open(model)
    if source.precision == "int8":
        raise ConversionError(f"{source.path}: already quantized (it has Q/DQ or integer operators)")
    if source.precision != "fp32":
        raise ConversionError(
            f"{source.path}: INT8 quantization starts from an fp32 model, this one is {source.precision}"
        )
    if options.mode == "static":
        if calibration is None:
            raise ConversionError(f"{source.path}: static INT8 needs calibration data (--calib)")
        calibration.check_fits(source.inputs, source.path.name)
    output = Path(output)
    warnings: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edgerun-quantize-") as tmp:
        prepared = prepare_for_int8(source, Path(tmp))
        excluded = _resolve_exclusions(prepared, options.exclude, source.path)
        if options.keep_head_float:
            excluded = sorted(set(excluded) | set(head_nodes(prepared)))
        prepared_path = Path(tmp) / "prepared.onnx"
        _save(prepared, prepared_path)
        quantized_path = Path(tmp) / "quantized.onnx"
        cache_file: Path | None = None
        cache_hit = False
        subgraph_failure: str | None = None
        if options.mode == "static":
            assert calibration is not None
            cache_file, cache_hit = _static(
                prepared_path, quantized_path, calibration, options, excluded, source, cache
            )
        else:
            subgraph_failure = _dynamic(prepared, prepared_path, quantized_path, options, excluded, source.path)
        _sort_and_check(quantized_path, source.path, options.mode)
        coverage = _coverage(quantized_path)
        qdq, quantized, float_ops = coverage.qdq_nodes, coverage.quantized, coverage.float_ops
        note = _subgraph_note(coverage, options.mode, subgraph_failure)
        message = None
        if qdq == 0 and not quantized:
            if note is None:
                message = (
                    f"NOTHING WAS QUANTIZED in {source.path.name}: the output has no Q/DQ nodes and no INT8 weights; "
                    "it will run exactly like the fp32 model. Check --exclude and that the model has Conv/MatMul/Gemm."
                )
            else:
                top_level = "" if coverage.top_level_compute else "; the top-level graph has no compute op of its own"
                message = f"NOTHING WAS QUANTIZED in {source.path.name}: {note}{top_level}."
        elif note is not None:
            message = f"{source.path.name}: {note}."
        if message is not None:
            if warn_if_empty:
                _log.warning(message)
            warnings.append(message)
        with atomic_path(output) as temp:
            shutil.copyfile(quantized_path, temp)  # a copy: the temp folder may be another file system
    return QuantizeResult(
        output=output,
        mode=options.mode,
        qdq_nodes=qdq,
        quantized=quantized,
        float_ops=float_ops,
        excluded_nodes=tuple(excluded),
        calibration_cache=cache_file,
        calibration_cache_hit=cache_hit,
        seconds=time.perf_counter() - started,
        warnings=warnings,
        subgraph_quantized=coverage.subgraph_quantized,
        subgraph_float_ops=coverage.subgraph_float_ops,
    )


def auto_mode(model: ModelFile, target: QdqLayout) -> tuple[Mode, str]:
    """The INT8 mode that pays on ``target``, and why: ``dynamic`` for attention models on a CPU, else ``static``.

    ONNX Runtime's guidance, measured in benchmarks/precision_text.py: on a CPU, dynamic quantization suits
    transformer-style models whose compute is MatMul/Gemm with activations on both sides (Q @ K^T) and no
    Conv; static Q/DQ suits CNNs (dynamic ran about 3x slower than FP32 on one).
    """
    if target != "cpu":
        return "static", f"target {target} runs Q/DQ models"
    ops, attention = Counter(model.operators), model.activation_matmuls
    convs = ops["Conv"] + ops["ConvTranspose"]
    matmuls = ops["MatMul"] + ops["Gemm"]
    if convs:
        return "static", f"{convs} Conv nodes: static Q/DQ is the mode that pays for convolutions on a CPU"
    if attention and matmuls:
        return "dynamic", (
            f"automatic for target cpu: {matmuls} MatMul/Gemm, {attention} of them with activations on both sides "
            "(attention) and no Conv: dynamic INT8, as ONNX Runtime advises for transformer-style models on CPUs "
            "(benchmarks/precision_text.py); give quantization=QuantizeOptions(mode=...) to choose"
        )
    return "static", "no attention MatMul (activations on both sides): static Q/DQ"


def prepare_for_int8(source: ModelFile, tmp: Path) -> onnx.ModelProto:
    """Opset >= 13, ORT's quantization pre-processing (optimisation + shape inference), every node named.

    Exclusions (``QuantizeOptions.exclude``, the precision guard's kept nodes) name nodes of this graph;
    it is deterministic, so the guard analyses the same graph the quantizer then excludes from.
    """
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization.shape_inference import quant_pre_process

    proto = onnx.load(str(source.path))
    if source.opset < MIN_QDQ_OPSET:
        try:
            proto = version_converter.convert_version(proto, MIN_QDQ_OPSET)
        except Exception as exc:  # the converter raises RuntimeError/ValueError/ConvertError by op
            raise ConversionError(
                f"{source.path}: cannot raise opset {source.opset} to {MIN_QDQ_OPSET} for Q/DQ quantization: "
                f"{str(exc).strip().splitlines()[0]}"
            ) from exc
    upgraded = tmp / "upgraded.onnx"
    _save(proto, upgraded)
    prepared = tmp / "preprocessed.onnx"
    try:
        quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=True)
    except Exception as exc:
        raise ConversionError(f"{source.path}: onnxruntime's quantization pre-processing failed: {exc}") from exc
    proto = onnx.load(str(prepared))
    taken = {n.name for n in proto.graph.node if n.name}
    for index, node in enumerate(proto.graph.node):  # exclusions address nodes by name: name them all
        if not node.name:
            name = f"{node.op_type}_{index}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
    return proto


def head_nodes(proto: onnx.ModelProto) -> list[str]:
    """Names of the last compute node (Conv, MatMul, Gemm) on the path to each graph output."""
    producer = {out: node for node in proto.graph.node for out in node.output}
    heads: set[str] = set()
    for output in proto.graph.output:
        frontier, seen = [output.name], set()
        while frontier:
            node = producer.get(frontier.pop())
            if node is None or node.name in seen:
                continue
            seen.add(node.name)
            if node.op_type in _COMPUTE_OPS:
                heads.add(node.name)
            else:
                frontier += [i for i in node.input if i]
    return sorted(heads)


def _save(proto: onnx.ModelProto, path: Path) -> None:
    import onnx

    onnx.save(proto, str(path), save_as_external_data=proto.ByteSize() > 1_900_000_000)


def _resolve_exclusions(proto: onnx.ModelProto, exclude: tuple[str, ...], path: Path) -> list[str]:
    """Node names to keep in float: each entry names a node or an operator type present in the model."""
    names = [n.name for n in proto.graph.node]
    by_type: dict[str, list[str]] = {}
    for node in proto.graph.node:
        by_type.setdefault(node.op_type, []).append(node.name)
    excluded: list[str] = []
    for entry in exclude:
        if entry in by_type:
            excluded += by_type[entry]
        elif entry in names:
            excluded.append(entry)
        else:
            sample = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise ConfigError(
                f"{path}: --exclude {entry!r} names no node or operator type of the (optimised) model; "
                f"operator types: {', '.join(sorted(by_type))}; node names like: {sample}"
            )
    return sorted(set(excluded))


def _static(
    prepared: Path,
    output: Path,
    calibration: CalibrationData,
    options: QuantizeOptions,
    excluded: list[str],
    source: ModelFile,
    cache_folder: Path | None,
) -> tuple[Path | None, bool]:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[options.method]
    if options.target == "tensorrt":
        activations = QuantType.QInt8
        # Biases stay float: TensorRT's ONNX parser refuses a DequantizeLinear of INT32 (onnx-tensorrt#850,
        # "only activation types allowed as input to this layer"); it fuses a float bias into the INT8 layer.
        extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
    else:
        activations = QuantType.QUInt8
        extra = {"ActivationSymmetric": False, "WeightSymmetric": True}

    def run(reader: CalibrationData | None, **kwargs: Any) -> None:
        try:
            quantize_static(
                str(prepared),
                str(output),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=options.per_channel,
                reduce_range=options.resolved_reduce_range(),
                activation_type=activations,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded,
                calibrate_method=method,
                extra_options=extra,
                **kwargs,
            )
        except Exception as exc:
            raise ConversionError(f"{source.path}: onnxruntime static quantization failed: {exc}") from exc

    def run_cached(cache_file: Path) -> None:
        """Quantize with the ranges in ``cache_file``: ORT reads it itself, or (older ORT) edgerun hands them over."""
        if rangefile.native_cache():
            run(None, calibration_cache_path=str(cache_file))
            return
        try:
            ranges = rangefile.load_ranges(cache_file)
        except Exception as exc:  # checked by cached_ranges_usable: only a file changed since then gets here
            raise ConversionError(f"{cache_file}: calibration cache unreadable: {exc}") from exc
        with rangefile.fixed_ranges(ranges), contextlib.redirect_stdout(io.StringIO()):
            run(calibration)  # the reader is not read: the fixed calibrator returns the ranges

    cache_file = range_cache_path(source, calibration, options.method, cache_folder)
    hit = cached_ranges_usable(cache_file, method)
    if not hit:
        calibrate(prepared, calibration, method, cache_file, prepared.parent)
    try:
        run_cached(cache_file)
    except ConversionError as exc:
        if not hit:
            raise
        _log.warning(
            "calibration cache %s is corrupt (its ranges do not fit the model: %s): rebuilding it", cache_file, exc
        )
        cache_file.unlink(missing_ok=True)
        calibrate(prepared, calibration, method, cache_file, prepared.parent)
        run_cached(cache_file)
        hit = False
    return cache_file, hit


def _dynamic(
    proto: onnx.ModelProto,
    prepared: Path,
    output: Path,
    options: QuantizeOptions,
    excluded: list[str],
    path: Path,
) -> str | None:
    """Quantize ``prepared`` dynamically, ``If``/``Loop``/``Scan`` subgraphs included.

    ONNX Runtime's dynamic quantizer leaves subgraphs in float unless ``EnableSubgraph`` is set
    (measured on onnxruntime 1.32). Returns why subgraphs stayed float when the quantizer failed
    on them (the model is then quantized without them), else None.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    convs = sum(1 for n in proto.graph.node if n.op_type in ("Conv", "ConvTranspose"))
    if convs and not options.force:
        raise ConversionError(
            f"{path}: refusing dynamic INT8 for a convolutional model ({convs} Conv nodes): ONNX Runtime's "
            "dynamic quantization ran about 3x slower than FP32 on a CNN here. Use static INT8 with --calib, "
            "or --force to do it anyway (dynamic suits MatMul-heavy models)."
        )
    weights = QuantType.QInt8
    if convs and not conv_integer_int8_weights():
        weights = QuantType.QUInt8
        _log.warning(
            "%s: onnxruntime %s cannot run ConvInteger with int8 weights (onnxruntime 1.32 can): "
            "quantizing the weights as uint8",
            path,
            onnxruntime_version(),
        )
    extra: dict[str, Any] = {}
    sub_types = _subgraph_op_types(proto.graph)
    if sub_types:
        extra["extra_options"] = {"EnableSubgraph": True}
        # Subgraph nodes are matched by name only; an excluded operator type must stay float there too.
        kinds = {entry for entry in options.exclude if entry in sub_types}
        if kinds:
            from onnxruntime.quantization.registry import IntegerOpsRegistry

            extra["op_types_to_quantize"] = [t for t in IntegerOpsRegistry if t not in kinds]
    try:
        quantize_dynamic(str(prepared), str(output), weight_type=weights, nodes_to_exclude=excluded, **extra)
    except Exception as exc:
        if not sub_types:
            raise ConversionError(f"{path}: onnxruntime dynamic quantization failed: {exc}") from exc
        reason = f"onnxruntime's dynamic quantizer failed on the subgraphs ({str(exc).strip()[:200]})"
        _log.info("%s: %s; quantizing the top-level graph only", path, reason)
        try:
            quantize_dynamic(str(prepared), str(output), weight_type=weights, nodes_to_exclude=excluded)
        except Exception as again:
            raise ConversionError(f"{path}: onnxruntime dynamic quantization failed: {again}") from again
        return reason
    return None


def _sort_and_check(path: Path, source: Path, mode: Mode) -> None:
    """Re-sort the quantized graph counting names its subgraphs read from outside, then check it.

    onnxruntime's quantizer sorts nodes by their explicit inputs only (``ONNXModel.topological_sort``),
    so an ``If`` whose branches read another ``If``'s output can land before it (silero-vad's decoder):
    onnxruntime still runs it, but the model is invalid ONNX. Raises ConversionError if it stays invalid.
    """
    import onnx

    from edgerun.precision.convert import sort_topologically

    proto = onnx.load(str(path))
    try:
        moved = sort_topologically(proto.graph)
    except ConversionError as exc:  # a cycle
        raise ConversionError(f"{source}: onnxruntime's {mode} quantizer produced an invalid model: {exc}") from exc
    if moved:
        _save(proto, path)
    try:
        onnx.checker.check_model(proto if proto.ByteSize() < 1_900_000_000 else str(path))
    except Exception as exc:  # onnx raises ValidationError (and C++ errors) by check
        first = " ".join(str(exc).split())[:300]
        raise ConversionError(
            f"{source}: onnxruntime's {mode} quantizer produced an invalid ONNX model ({first}); "
            "keep the named nodes in float (--exclude) or use the fp32 model"
        ) from exc


@dataclass
class _Coverage:
    """What a quantized model holds, subgraphs included (their share also kept apart)."""

    qdq_nodes: int = 0
    quantized: dict[str, int] = field(default_factory=dict)
    float_ops: dict[str, int] = field(default_factory=dict)
    subgraph_quantized: dict[str, int] = field(default_factory=dict)
    subgraph_float_ops: dict[str, int] = field(default_factory=dict)
    float_hosts: dict[str, int] = field(default_factory=dict)
    """Operator types (If, Loop, Scan) of the subgraphs that hold float compute ops."""

    @property
    def top_level_compute(self) -> int:
        total = sum(self.quantized.values()) + sum(self.float_ops.values())
        return total - sum(self.subgraph_quantized.values()) - sum(self.subgraph_float_ops.values())


def _subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    """The graphs held in ``node``'s attributes (If branches, Loop and Scan bodies)."""
    import onnx

    graphs: list[onnx.GraphProto] = []
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            graphs.append(attr.g)
        elif attr.type == onnx.AttributeProto.GRAPHS:
            graphs.extend(attr.graphs)
    return graphs


def _subgraph_op_types(graph: onnx.GraphProto) -> set[str]:
    """Operator types of every node inside ``graph``'s subgraphs, at any depth."""
    types: set[str] = set()
    for node in graph.node:
        for sub in _subgraphs(node):
            types |= {n.op_type for n in sub.node} | _subgraph_op_types(sub)
    return types


def _coverage(path: Path) -> _Coverage:
    """Q/DQ node count, compute ops with INT8 weights and compute ops left in float, by type.

    Walks ``If``/``Loop``/``Scan`` subgraphs recursively: a subgraph sees the INT8 initializers
    and dequantized weights of its own graph and of every graph around it (outer-scope names).
    """
    import onnx

    proto = onnx.load(str(path))
    int8_types = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    quantized: Counter[str] = Counter()
    float_ops: Counter[str] = Counter()
    sub_quantized: Counter[str] = Counter()
    sub_float: Counter[str] = Counter()
    hosts: Counter[str] = Counter()
    qdq = 0

    def walk(graph: onnx.GraphProto, outer_int8: set[str], outer_dequantized: set[str], host: str | None) -> None:
        nonlocal qdq
        int8_tensors = outer_int8 | {t.name for t in graph.initializer if t.data_type in int8_types}
        dequantized = outer_dequantized | {
            n.output[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in int8_tensors
        }
        for node in graph.node:
            if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
                qdq += 1
            kind: Counter[str] | None = None
            if node.op_type in _INTEGER_OPS:
                kind = quantized
            elif node.op_type in _COUNTED_OPS:
                weight_is_int8 = len(node.input) > 1 and node.input[1] in dequantized
                kind = quantized if weight_is_int8 else float_ops
            if kind is not None:
                kind[node.op_type] += 1
                if host is not None:
                    (sub_quantized if kind is quantized else sub_float)[node.op_type] += 1
                    if kind is float_ops:
                        hosts[host] += 1
            for sub in _subgraphs(node):
                walk(sub, int8_tensors, dequantized, node.op_type)

    walk(proto.graph, set(), set(), None)
    return _Coverage(qdq, dict(quantized), dict(float_ops), dict(sub_quantized), dict(sub_float), dict(hosts))


def _subgraph_note(coverage: _Coverage, mode: Mode, failure: str | None) -> str | None:
    """Why compute ops inside subgraphs stayed float, or None when none did."""
    if not coverage.subgraph_float_ops:
        return None
    import onnxruntime

    ops = ", ".join(f"{n} {op}" for op, n in sorted(coverage.subgraph_float_ops.items()))
    where = "/".join(sorted(coverage.float_hosts))
    version = f"onnxruntime {onnxruntime.__version__}"
    if mode == "static":
        why = (
            f"{version}'s quantizer does not quantize subgraphs in static (QDQ) mode, only the top-level graph; "
            "dynamic mode (--mode dynamic) quantizes MatMul inside them"
        )
    elif failure is not None:
        why = failure
    else:
        why = (
            f"excluded, or of an operator type {version}'s dynamic quantizer leaves in float "
            "(it quantizes MatMul, Conv and LSTM)"
        )
    return f"{ops} inside {where} subgraphs left in float: {why}"
