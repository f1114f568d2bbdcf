"""GPU tests that would catch a wrong answer: TensorRT and ONNX Runtime CUDA against ONNX Runtime CPU.

Run only where an NVIDIA GPU, its driver, TensorRT and cuda-python (or onnxruntime-gpu, for the CUDA
provider test) are present; elsewhere each test is skipped with the concrete reason. They judge with
`edgerun.bench.selftest` (one definition of the limits for tests, selftest and ``scripts/gpu_check.py``):

* every output of every call, on each card's real check samples, run in calls of batch <= 4;
* FP32 (TensorRT, ONNX Runtime CUDA): max error <= `FP32_MAX_REL` of each output's range (TF32 is on
  by default on Ampere and newer); FP16 and INT8: the precision guard's `QualityBudget`;
* CUDA graphs on vs off over batches 1,1,1,4,4,1,4,1 with fresh inputs: identical outputs, at least
  one graph captured, none disabled;
* the engine cache hits on reload; a truncated engine is rebuilt; two processes build one engine;
  a shape outside the profile is an `InputError`; 20 open/close cycles give device memory back.

When ``EDGERUN_GPU_CHECK_FIGURES`` names a file, each test appends its figures there (one JSON line),
which ``scripts/gpu_check.py`` puts into its summary.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgerun
from edgerun.bench import selftest
from edgerun.bench.selftest import Case, case, check_inputs, judge, reference_outputs, run_in_calls
from edgerun.errors import InputError
from edgerun.runtime.device import current_device
from edgerun.runtime.plan import Precision
from edgerun.trt import cuda
from edgerun.trt import entry as trt_entry

MiB = 1 << 20
MEMORY_SLACK = 2 * MiB
"""Device memory may differ by one allocation granule after 20 open/close cycles, no more."""
CYCLES = 20
CASES = {
    "digits-student": ("digits-student", None),
    "ppocr-cls": ("ppocr-cls", None),
    "ppocr-det-224": ("ppocr-det", 224),
}


def _tensorrt_skip_reason() -> str | None:
    availability = trt_entry.probe(current_device(), "auto")
    return None if availability.available else availability.reason


def _ort_cuda_skip_reason() -> str | None:
    profile = current_device()
    if not profile.has_nvidia_gpu:
        return f"no NVIDIA GPU on this {profile.kind} device"
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime has no CUDA execution provider here (install onnxruntime-gpu)"
    return None


TRT_REASON = _tensorrt_skip_reason()
ORT_CUDA_REASON = _ort_cuda_skip_reason()
needs_tensorrt = pytest.mark.skipif(TRT_REASON is not None, reason=f"TensorRT cannot run here: {TRT_REASON}")
needs_ort_cuda = pytest.mark.skipif(ORT_CUDA_REASON is not None, reason=str(ORT_CUDA_REASON))
pytestmark = pytest.mark.gpu


def _record(request: pytest.FixtureRequest, **figures: Any) -> None:
    """Append this test's figures to ``$EDGERUN_GPU_CHECK_FIGURES`` (read by scripts/gpu_check.py)."""
    target = os.environ.get("EDGERUN_GPU_CHECK_FIGURES")
    if target:
        with open(target, "a") as f:
            f.write(json.dumps({"nodeid": request.node.nodeid, "figures": figures}, default=float) + "\n")


@pytest.fixture(scope="module")
def data() -> dict[str, tuple[Case, dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """Per case: the case, the card's check samples at its size, and ONNX Runtime CPU's outputs on them."""
    found = {}
    for key, (name, size) in CASES.items():
        c = case(name, size)
        inputs = check_inputs(c)
        found[key] = (c, inputs, reference_outputs(c, inputs))
    return found


@pytest.fixture
def engines(tmp_path: Path) -> Path:
    return tmp_path / "engines"


@needs_tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("key", list(CASES))
def test_tensorrt_matches_onnxruntime_cpu(
    key: str, precision: Precision, data: Any, request: pytest.FixtureRequest
) -> None:
    c, inputs, expected = data[key]
    conversion = {} if precision == "fp32" else {"check_data": inputs}
    with edgerun.load(c.name, backend="tensorrt", precision=precision, **c.options, **conversion) as session:
        assert session.plan.backend == "tensorrt"
        assert session.plan.precision == precision, f"ran {session.plan.precision}: {session.plan.fallbacks}"
        got = run_in_calls(session, inputs)
        again = run_in_calls(session, inputs)
    verdict = judge(precision, expected, got, c.card.outputs or None)
    _record(request, **verdict.figures)
    assert verdict.ok, verdict.detail
    for name, array in got.items():  # the same engine, the same inputs: the same answer
        np.testing.assert_array_equal(again[name], array, err_msg=f"output '{name}' changed on a second pass")


@needs_ort_cuda
@pytest.mark.parametrize("key", list(CASES))
def test_onnxruntime_cuda_matches_cpu(key: str, data: Any, request: pytest.FixtureRequest) -> None:
    c, inputs, expected = data[key]
    with edgerun.load(c.name, device="cuda", backend="onnxruntime") as session:
        assert "CUDAExecutionProvider" in session.plan.targets
        got = run_in_calls(session, inputs)
    verdict = judge("fp32", expected, got, c.card.outputs or None)
    _record(request, **verdict.figures)
    assert verdict.ok, verdict.detail


@needs_tensorrt
@pytest.mark.parametrize("key", ["digits-student", "ppocr-cls"])
def test_cuda_graph_replay_matches_plain_execution(key: str, data: Any, request: pytest.FixtureRequest) -> None:
    c, _, _ = data[key]
    comparison = selftest.compare_graph_replay(c, selftest.GRAPH_SEQUENCE)
    _record(request, **comparison.figures)
    assert comparison.ok, comparison.detail
    assert comparison.stats["captured"] >= 1
    assert comparison.stats.get("disabled", 0) == 0


def _hit(session: edgerun.Session) -> bool:
    return bool(session.opened_backend.cache_hit)  # type: ignore[attr-defined]


@needs_tensorrt
def test_engine_cache_hits_on_reload(engines: Path, data: Any, request: pytest.FixtureRequest) -> None:
    c, inputs, expected = data["ppocr-cls"]
    with edgerun.load(c.name, backend="tensorrt", precision="fp32", engine_cache=engines) as first:
        assert not _hit(first)
        path = Path(first.opened_backend.engine_path)  # type: ignore[attr-defined]
        built = run_in_calls(first, inputs)
    assert path.is_file()
    assert path.stat().st_size > 0
    with edgerun.load(c.name, backend="tensorrt", precision="fp32", engine_cache=engines) as second:
        assert _hit(second), "the second load rebuilt the engine"
        cached = run_in_calls(second, inputs)
    _record(request, engine_bytes=path.stat().st_size)
    for name in built:
        np.testing.assert_array_equal(cached[name], built[name])
    verdict = judge("fp32", expected, cached, c.card.outputs or None)
    assert verdict.ok, verdict.detail


@needs_tensorrt
def test_a_truncated_engine_is_rebuilt(engines: Path, data: Any, request: pytest.FixtureRequest) -> None:
    c, inputs, expected = data["digits-student"]
    with edgerun.load(c.name, backend="tensorrt", precision="fp32", engine_cache=engines) as first:
        path = Path(first.opened_backend.engine_path)  # type: ignore[attr-defined]
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[: size // 2])
    with edgerun.load(c.name, backend="tensorrt", precision="fp32", engine_cache=engines) as rebuilt:
        assert not _hit(rebuilt), "a truncated engine was taken from the cache"
        got = run_in_calls(rebuilt, inputs)
    assert path.stat().st_size > size // 2, "the rebuilt engine was not stored again"
    with edgerun.load(c.name, backend="tensorrt", precision="fp32", engine_cache=engines) as again:
        assert _hit(again)
    verdict = judge("fp32", expected, got, c.card.outputs or None)
    _record(request, engine_bytes=size, **verdict.figures)
    assert verdict.ok, verdict.detail


def _build_in_process(engines: str, barrier: Any, results: Any) -> None:
    """One of two processes loading the same engine at once (spawned: top-level, picklable)."""
    builds: list[str] = []

    class Counter(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "building TensorRT engine" in record.getMessage():
                builds.append(record.getMessage())

    logger = logging.getLogger("edgerun")
    logger.addHandler(Counter())
    logger.setLevel(logging.INFO)
    c = case("ppocr-cls")
    inputs = check_inputs(c)
    try:
        barrier.wait(timeout=120)
        with edgerun.load(c.name, backend="tensorrt", precision="fp32", engine_cache=Path(engines)) as session:
            outputs = run_in_calls(session, inputs)
            results.put({"hit": _hit(session), "builds": len(builds), "outputs": outputs, "error": None})
    except Exception as exc:  # the parent reports it
        results.put({"error": f"{type(exc).__name__}: {exc}"})


@needs_tensorrt
def test_two_processes_build_one_engine(engines: Path, data: Any, request: pytest.FixtureRequest) -> None:
    c, _, expected = data["ppocr-cls"]
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=_build_in_process, args=(str(engines), barrier, results)) for _ in range(2)]
    for w in workers:
        w.start()
    answers = [results.get(timeout=400) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    assert [a["error"] for a in answers] == [None, None]
    assert [w.exitcode for w in workers] == [0, 0]
    assert len(list(engines.rglob("*.engine"))) == 1, sorted(engines.rglob("*"))
    assert sum(a["builds"] for a in answers) <= 1, "both processes built the engine"
    assert not all(a["hit"] for a in answers), "neither process built the engine"
    first, second = (a["outputs"] for a in answers)
    for name in first:
        np.testing.assert_array_equal(second[name], first[name])
    verdict = judge("fp32", expected, first, c.card.outputs or None)
    _record(request, builds=sum(a["builds"] for a in answers), **verdict.figures)
    assert verdict.ok, verdict.detail
    with edgerun.load(c.name, backend="tensorrt", precision="fp32", engine_cache=engines) as third:
        assert _hit(third)


@needs_tensorrt
def test_a_shape_outside_the_profile_is_an_input_error(data: Any) -> None:
    digits, inputs, _ = data["digits-student"]
    with edgerun.load(digits.name, backend="tensorrt", precision="fp32") as session:
        image = inputs["image"]
        session.run({"image": np.ascontiguousarray(image[:8])})  # the profile's max batch is fine
        with pytest.raises(InputError, match="outside the engine's profile"):
            session.run({"image": np.ascontiguousarray(np.concatenate([image[:8], image[:1]]))})
    det, det_inputs, _ = data["ppocr-det-224"]
    with edgerun.load(det.name, backend="tensorrt", precision="fp32", **det.options) as session:
        with pytest.raises(InputError):
            session.run({"x": np.zeros((1, 3, 256, 256), np.float32)})
        with pytest.raises(InputError):
            session.run({"x": np.ascontiguousarray(np.concatenate([det_inputs["x"][:4], det_inputs["x"][:1]]))})
        session.run({"x": np.ascontiguousarray(det_inputs["x"][:4])})  # still usable after the errors


def _free_device_memory() -> int:
    free, _total = cuda.check("cudaMemGetInfo", cuda.runtime().cudaMemGetInfo())
    return int(free)


@pytest.fixture
def cycle_session(engines: Path, data: Any) -> Callable[[], None]:
    c, inputs, _ = data["ppocr-cls"]

    def cycle() -> None:
        with edgerun.load(c.name, backend="tensorrt", cuda_graphs=True, engine_cache=engines) as session:
            for batch in (1, 1, 1, 4):  # a graph captured, a shape change
                session.run({"x": np.ascontiguousarray(inputs["x"][:batch])})

    return cycle


@needs_tensorrt
def test_open_close_cycles_give_device_memory_back(cycle_session: Any, request: pytest.FixtureRequest) -> None:
    cycle_session()  # builds the engine; TensorRT and CUDA set up what they keep for the process
    start = _free_device_memory()
    trace = []
    for _ in range(CYCLES):
        cycle_session()
        trace.append(start - _free_device_memory())
    lost = trace[-1]
    _record(request, cycles=CYCLES, lost_bytes=lost, worst_bytes=max(trace))
    assert lost <= MEMORY_SLACK, f"{lost / MiB:.1f} MiB of device memory not given back after {CYCLES} cycles: {trace}"
