# ruff: noqa: N802, N815 - the stand-in mirrors cuda-python's names
"""The TensorRT backend's run-time logic without a GPU: CUDA graphs, buffers, devices, loading and closing.

The stand-ins behave, not just record: the fake cuda-python runtime keeps "device" memory in host
memory and runs queued copies, capturing them into graphs while a stream captures; the fake
TensorRT engine computes ``y = 2x + 1`` from the addresses and shapes set on its context. Where real
TensorRT would silently compute garbage, so does the stand-in, and the tests compare answers:

* the first enqueue after ``set_input_shape`` does shape-dependent set-up work; captured into a
  graph, that work is missing from the replay (the stand-in's replay writes NaN);
* a graph replays its context's state at capture time: replayed after that context was set to
  other shapes, it is wrong (NaN again).

Only names of TensorRT 10.3 / 10.16 / 11.4 (tests/fixtures/trt-api) appear on the stand-in.
"""

from __future__ import annotations

import ctypes
import enum
import gc
import json
import math
import threading
import types
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgerun.errors import BackendError, SessionClosedError
from edgerun.roles import shape_roles
from edgerun.runtime.session import Session
from edgerun.specs import TensorSpec
from edgerun.trt import backend as trt_backend
from edgerun.trt.cuda import api as cuda_api

# --- a cuda-python runtime stand-in ---------------------------------------------------------------

OK = 0
ERR_CAPTURE = 900  # what cudaStreamSynchronize returns on a capturing stream


class _Graph:
    def __init__(self, ops: list[Callable[[], None]]) -> None:
        self.ops = ops

    def __int__(self) -> int:
        return id(self)


class FakeCudart:
    """The cudart calls edgerun makes; device memory is host memory, queued work runs at once."""

    cudaStreamNonBlocking = 1
    cudaEventDefault = 0
    cudaEventDisableTiming = 2
    cudaMemcpyKind = enum.IntEnum(
        "cudaMemcpyKind", {"cudaMemcpyHostToDevice": 1, "cudaMemcpyDeviceToHost": 2, "cudaMemcpyDeviceToDevice": 3}
    )
    cudaStreamCaptureMode = enum.IntEnum("cudaStreamCaptureMode", {"cudaStreamCaptureModeThreadLocal": 1})
    cudaStreamCaptureStatus = enum.IntEnum(
        "cudaStreamCaptureStatus", {"cudaStreamCaptureStatusNone": 0, "cudaStreamCaptureStatusActive": 1}
    )

    def __init__(self, devices: int = 2) -> None:
        self.devices = devices
        self._thread = threading.local()
        self.device_memory: dict[int, Any] = {}  # address -> ctypes block
        self.host_memory: dict[int, Any] = {}
        self.device_of: dict[int, int] = {}  # address or stream -> device current when made
        self.calls: dict[str, int] = {}
        self.capturing: dict[int, list[Callable[[], None]]] = {}
        self.streams: set[int] = set()
        self.graphs_alive = 0
        self._next_stream = 1000

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    @property
    def current(self) -> int:
        return getattr(self._thread, "device", 0)

    # devices
    def cudaGetDeviceCount(self) -> tuple[int, int]:
        return OK, self.devices

    def cudaGetDeviceProperties(self, index: int) -> tuple[int, Any]:
        props = types.SimpleNamespace(
            name=f"Fake GPU {index}".encode() + b"\0\0", major=8, minor=7, totalGlobalMem=8 << 30, multiProcessorCount=8
        )
        return OK, props

    def cudaSetDevice(self, index: int) -> tuple[int]:
        self._count("cudaSetDevice")
        self._thread.device = index
        return (OK,)

    def cudaGetDevice(self) -> tuple[int, int]:
        return OK, self.current

    def cudaGetErrorString(self, err: int) -> tuple[int, bytes]:
        return OK, b"fake error"

    def cudaGetLastError(self) -> tuple[int]:
        return (OK,)

    # memory
    def _block(self, nbytes: int, table: dict[int, Any]) -> int:
        block = (ctypes.c_ubyte * nbytes)()
        address = ctypes.addressof(block)
        table[address] = block
        self.device_of[address] = self.current
        return address

    def cudaMalloc(self, nbytes: int) -> tuple[int, int]:
        self._count("cudaMalloc")
        return OK, self._block(nbytes, self.device_memory)

    def cudaFree(self, ptr: int) -> tuple[int]:
        self._count("cudaFree")
        del self.device_memory[ptr]
        return (OK,)

    def cudaMallocHost(self, nbytes: int) -> tuple[int, int]:
        self._count("cudaMallocHost")
        return OK, self._block(nbytes, self.host_memory)

    def cudaFreeHost(self, ptr: int) -> tuple[int]:
        self._count("cudaFreeHost")
        del self.host_memory[ptr]
        return (OK,)

    def cudaMemcpyAsync(self, dst: int, src: int, nbytes: int, kind: Any, stream: int) -> tuple[int]:
        self.enqueue(stream, lambda: ctypes.memmove(dst, src, nbytes))
        return (OK,)

    # streams and graphs
    def enqueue(self, stream: int, op: Callable[[], object]) -> None:
        """Run ``op`` now, or record it while ``stream`` is capturing."""
        if stream in self.capturing:
            self.capturing[stream].append(op)  # type: ignore[arg-type]
        else:
            op()

    def cudaStreamCreateWithFlags(self, flags: int) -> tuple[int, int]:
        self._next_stream += 1
        self.streams.add(self._next_stream)
        self.device_of[self._next_stream] = self.current
        return OK, self._next_stream

    def cudaStreamDestroy(self, handle: int) -> tuple[int]:
        self.streams.remove(handle)
        return (OK,)

    def cudaStreamSynchronize(self, handle: int) -> tuple[int]:
        return (ERR_CAPTURE,) if handle in self.capturing else (OK,)

    def cudaStreamBeginCapture(self, handle: int, mode: Any) -> tuple[int]:
        self.capturing[handle] = []
        return (OK,)

    def cudaStreamEndCapture(self, handle: int) -> tuple[int, Any]:
        return OK, _Graph(self.capturing.pop(handle))

    def cudaStreamIsCapturing(self, handle: int) -> tuple[int, Any]:
        status = self.cudaStreamCaptureStatus
        return (
            OK,
            status.cudaStreamCaptureStatusActive if handle in self.capturing else status.cudaStreamCaptureStatusNone,
        )

    def cudaGraphInstantiate(self, graph: _Graph, flags: int) -> tuple[int, _Graph]:
        self.graphs_alive += 1
        return OK, _Graph(list(graph.ops))

    def cudaGraphDestroy(self, graph: _Graph) -> tuple[int]:
        return (OK,)

    def cudaGraphLaunch(self, graph_exec: _Graph, stream: int) -> tuple[int]:
        self._count("cudaGraphLaunch")
        for op in graph_exec.ops:
            self.enqueue(stream, op)
        return (OK,)

    def cudaGraphExecDestroy(self, graph_exec: _Graph) -> tuple[int]:
        self.graphs_alive -= 1
        return (OK,)


# --- a TensorRT stand-in: y = 2x + 1 for x of shape (batch, 3) -------------------------------------


def _floats(address: int, count: int) -> np.ndarray:
    return np.ctypeslib.as_array((ctypes.c_float * count).from_address(address)) if count else np.empty(0, np.float32)


class FakeContext:
    def __init__(self, engine: FakeEngine, strategy: Any) -> None:
        self.engine = engine
        self.strategy = strategy
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.memory: tuple[int, int] | None = None
        self.pending = True  # shape-dependent set-up left for the next enqueue

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.shapes[name] = tuple(shape)
        self.pending = True
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self.shapes.get("x", (-1, 3))

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = ptr
        return True

    def set_device_memory(self, ptr: int, size: int) -> None:
        self.memory = (ptr, size)

    def execute_async_v3(self, stream: int) -> bool:
        rt = self.engine.rt
        assert rt.current == self.engine.device, "enqueued from a thread whose current device is another GPU"
        user_managed = self.strategy == self.engine.trt.ExecutionContextAllocationStrategy.USER_MANAGED
        assert self.memory is not None or not user_managed, "USER_MANAGED context without device memory"
        shapes, x, y = dict(self.shapes), self.addresses["x"], self.addresses["y"]
        count = math.prod(shapes["x"])
        capturing = stream in rt.capturing
        skipped_setup = capturing and self.pending

        def compute() -> None:
            if skipped_setup or self.shapes != shapes:  # set-up missing, or the context moved to other shapes
                _floats(y, count)[...] = np.nan
            else:
                _floats(y, count)[...] = _floats(x, count) * 2 + 1

        rt.enqueue(stream, compute)
        if not capturing:
            self.pending = False
        self.engine.enqueues += 1
        return True


class FakeEngine:
    num_io_tensors = 2
    device_memory_size_v2 = 4096

    def __init__(self, trt: Any, data: bytes, dla_core: int) -> None:
        self.trt = trt
        self.rt: FakeCudart = trt.cudart
        self.data = data
        self.dla_core = dla_core
        self.device = self.rt.current
        self.enqueues = 0
        self.contexts: list[weakref.ref[FakeContext]] = []

    def get_tensor_name(self, index: int) -> str:
        return ("x", "y")[index]

    def get_tensor_dtype(self, name: str) -> Any:
        return self.trt.DataType.FLOAT

    def get_tensor_mode(self, name: str) -> Any:
        return self.trt.TensorIOMode.INPUT if name == "x" else self.trt.TensorIOMode.OUTPUT

    def create_execution_context(self, strategy: Any = None) -> FakeContext:
        context = FakeContext(self, strategy)
        self.contexts.append(weakref.ref(context))
        return context


class FakeRuntime:
    def __init__(self, trt: Any, logger: Any) -> None:
        self.trt = trt
        self.engine_host_code_allowed = False
        self.DLA_core = -1
        trt.runtimes.append(weakref.ref(self))

    def deserialize_cuda_engine(self, data: bytes) -> FakeEngine | None:
        self.trt.deserialized += 1
        if data.startswith(b"VC") and not self.engine_host_code_allowed:
            return None  # a version-compatible plan needs host code allowed
        engine = FakeEngine(self.trt, data, self.DLA_core)
        self.trt.engines.append(weakref.ref(engine))
        return engine


def fake_tensorrt(cudart: FakeCudart, version: str = "10.3.0") -> types.SimpleNamespace:
    class ILogger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self) -> None:
            pass

    trt = types.SimpleNamespace(
        __version__=version,
        ILogger=ILogger,
        TensorIOMode=enum.Enum("TensorIOMode", "INPUT OUTPUT"),
        DataType=enum.Enum("DataType", "FLOAT HALF INT8 INT32"),
        ExecutionContextAllocationStrategy=enum.Enum(
            "ExecutionContextAllocationStrategy", "STATIC ON_PROFILE_CHANGE USER_MANAGED"
        ),
        nptype=lambda dtype: np.float32,
        cudart=cudart,
        deserialized=0,
        runtimes=[],
        engines=[],
    )
    trt.Runtime = lambda logger: FakeRuntime(trt, logger)
    return trt


# --- fixtures -----------------------------------------------------------------------------------------


class Rig:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.cudart = FakeCudart()
        self.trt = fake_tensorrt(self.cudart)
        self.tmp_path = tmp_path
        self.builds: list[Any] = []
        monkeypatch.setattr(cuda_api, "_runtime", self.cudart)
        monkeypatch.setattr(cuda_api, "_usable", True)
        monkeypatch.setattr(trt_backend.api, "tensorrt", lambda: self.trt)
        monkeypatch.setattr(trt_backend, "build_engine", self._build)
        spec = TensorSpec("x", ("batch", 3), np.dtype(np.float32))
        out = TensorSpec("y", ("batch", 3), np.dtype(np.float32))
        self.model = types.SimpleNamespace(inputs=(spec,), outputs=(out,), path=tmp_path / "m.onnx", sha256="a" * 64)
        self.source = types.SimpleNamespace(sha256="b" * 64, typical_shapes=None)

    def _build(self, path: Path, settings: Any, *, device: Any = None) -> bytes:
        self.builds.append((settings, device))
        assert self.cudart.current == self.device, "the engine is built on the current device"
        return (b"VC" if settings.version_compatible else b"") + b"plan"

    def open(self, device: str = "cuda:0", **options: Any) -> trt_backend.TensorRTBackend:
        self.device = trt_backend.device_index(device)
        options = {"engine_cache": self.tmp_path / "engines", "batch": "1:1:4", **options}
        plan = types.SimpleNamespace(
            options=options, precision="fp32", device=device, device_kind="desktop", backend="tensorrt"
        )
        return trt_backend.TensorRTBackend(self.model, plan, self.source)  # type: ignore[arg-type]


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    yield Rig(tmp_path, monkeypatch)
    gc.collect()


SEQUENCE = (1, 1, 1, 4, 4, 1, 4, 1, 2, 2, 2, 4)


def feeds(batch: int, seed: int) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((batch, 3)).astype(np.float32)}


# --- defect 3: CUDA graphs ------------------------------------------------------------------------


def test_graph_replay_gives_the_plain_answers_on_a_shape_sequence(rig: Rig) -> None:
    graphs = rig.open(cuda_graphs=True)
    plain = rig.open(cuda_graphs=False)
    for step, batch in enumerate(SEQUENCE):
        x = feeds(batch, step)
        with_graphs, without = graphs.run(x), plain.run(x)
        np.testing.assert_array_equal(with_graphs["y"], x["x"] * 2 + 1, err_msg=f"call {step}, batch {batch}")
        np.testing.assert_array_equal(without["y"], with_graphs["y"])
    assert graphs.graph_count == 3  # batches 1, 4 and 2: one context and one graph each
    assert rig.cudart.calls["cudaGraphLaunch"] >= 6
    assert graphs.graph_stats() == {"captured": 3, "disabled": 0, "contexts": 3}, "no capture failed"
    assert plain.graph_count == 0


def test_a_bucket_is_captured_only_after_a_plain_enqueue_at_its_shapes(rig: Rig) -> None:
    backend = rig.open(cuda_graphs=True)
    backend.run(feeds(2, 0))
    assert backend.graph_count == 0, "the first call of a bucket runs plainly"
    backend.run(feeds(2, 1))
    assert backend.graph_count == 1
    launches = rig.cudart.calls.get("cudaGraphLaunch", 0)
    x = feeds(2, 2)
    np.testing.assert_array_equal(backend.run(x)["y"], x["x"] * 2 + 1)
    assert rig.cudart.calls["cudaGraphLaunch"] == launches + 1, "replayed, not captured again"


def test_buckets_past_the_limit_run_plainly_and_correctly(rig: Rig) -> None:
    backend = rig.open(cuda_graphs=True, batch="1:1:8")
    for step, batch in enumerate([1, 2, 3, 4, 5, 6, 7, 8] * 2):
        x = feeds(batch, step)
        np.testing.assert_array_equal(backend.run(x)["y"], x["x"] * 2 + 1)
    assert backend.graph_count == trt_backend.MAX_GRAPH_CONTEXTS


# --- defect 9: buffers allocated once ---------------------------------------------------------------


def test_shape_changes_neither_allocate_nor_free_buffers(rig: Rig) -> None:
    backend = rig.open(cuda_graphs=False)
    calls = rig.cudart.calls
    before = {name: calls.get(name, 0) for name in ("cudaMalloc", "cudaFree", "cudaMallocHost", "cudaFreeHost")}
    assert before["cudaMallocHost"] == 2, "one pinned block per I/O tensor, sized for the profile's maximum"
    for step, batch in enumerate(SEQUENCE):
        x = feeds(batch, step)
        np.testing.assert_array_equal(backend.run(x)["y"], x["x"] * 2 + 1)
    after = {name: calls.get(name, 0) for name in before}
    assert after == before


def test_outputs_are_new_arrays_not_views_of_the_pinned_buffers(rig: Rig) -> None:
    backend = rig.open()
    first = backend.run(feeds(4, 0))["y"]
    kept = first.copy()
    backend.run(feeds(1, 1))
    np.testing.assert_array_equal(first, kept)
    assert first.flags.owndata


# --- defect 10: the plan's GPU -----------------------------------------------------------------------


def test_cuda_1_builds_allocates_and_runs_on_gpu_1(rig: Rig) -> None:
    backend = rig.open("cuda:1", cuda_graphs=True)
    assert rig.builds, "built (on device 1: the stand-in's build asserts it)"
    assert {rig.cudart.device_of[a] for a in rig.cudart.device_memory} == {1}
    assert {rig.cudart.device_of[a] for a in rig.cudart.host_memory} == {1}
    assert {rig.cudart.device_of[s] for s in rig.cudart.streams} == {1}
    (engine_ref,) = [e for e in rig.trt.engines if e() is not None]
    assert engine_ref().device == 1
    manifest = json.loads(backend.engine_path.with_suffix(".json").read_text())
    assert manifest["key"]["gpu"] == "Fake GPU 1", "the cache key names the GPU that runs it"
    assert rig.builds[0][1]["gpu"] == "Fake GPU 1", "the build (its timing cache) is told the same GPU"
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def other_thread() -> None:  # a fresh thread's current device is 0
        try:
            for step in range(3):
                results.append(backend.run(feeds(2, step))["y"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    worker = threading.Thread(target=other_thread)
    worker.start()
    worker.join()
    assert not errors, errors
    np.testing.assert_array_equal(results[-1], feeds(2, 2)["x"] * 2 + 1)


def test_device_index_parsing() -> None:
    assert trt_backend.device_index("cuda:0") == 0
    assert trt_backend.device_index("cuda:3") == 3
    assert trt_backend.device_index("cuda") == 0


# --- defects 2, 7 and 11: the runtime and one deserialization per load ---------------------------------


def test_a_version_compatible_engine_loads_built_and_cached(rig: Rig) -> None:
    built = rig.open(version_compatible=True)
    assert built.run(feeds(1, 0))["y"].shape == (1, 3)
    assert rig.trt.deserialized == 1
    cached = rig.open(version_compatible=True)
    assert cached.cache_hit
    assert rig.trt.deserialized == 2, "one deserialization per load"
    x = feeds(3, 1)
    np.testing.assert_array_equal(cached.run(x)["y"], x["x"] * 2 + 1)


def test_a_dla_engine_is_deserialized_on_the_dla_core_it_was_built_for(rig: Rig) -> None:
    first = rig.open(dla_core=1)
    second = rig.open(dla_core=1)  # from the cache
    assert second.cache_hit
    engines = [first._engine, second._engine]
    assert [e.dla_core for e in engines] == [1, 1]


def test_each_load_deserializes_once(rig: Rig) -> None:
    rig.open()
    assert (len(rig.builds), rig.trt.deserialized) == (1, 1)
    again = rig.open()
    assert again.cache_hit
    assert (len(rig.builds), rig.trt.deserialized) == (1, 2)


# --- defect 8: close releases TensorRT objects at once -------------------------------------------------


def test_close_releases_contexts_engine_and_runtime_without_gc(rig: Rig) -> None:
    backend = rig.open(cuda_graphs=True)
    for step, batch in enumerate(SEQUENCE):
        backend.run(feeds(batch, step))
    assert rig.cudart.graphs_alive == 3
    (engine,) = [e for e in rig.trt.engines if e() is not None]
    contexts = list(engine().contexts)  # type: ignore[union-attr]
    (runtime,) = rig.trt.runtimes
    gc.disable()
    try:
        backend.close()
        assert [c() for c in contexts] == [None] * len(contexts)
        assert engine() is None
        assert runtime() is None
    finally:
        gc.enable()
    assert rig.cudart.graphs_alive == 0
    assert rig.cudart.device_memory == {}
    assert rig.cudart.host_memory == {}
    assert rig.cudart.streams == set()
    backend.close()  # idempotent
    with pytest.raises(BackendError, match="closed"):
        backend.run(feeds(1, 0))


def test_a_closed_session_holds_no_reference_to_its_backend(rig: Rig) -> None:
    backend = rig.open()
    plan = types.SimpleNamespace(backend="tensorrt", device="cuda:0")
    roles = shape_roles(rig.model.inputs, rig.model.outputs)
    session = Session(rig.model, plan, backend, roles=roles)  # type: ignore[arg-type]
    x = feeds(1, 0)["x"]
    session.run(x)
    session.run(x)  # the fast path through the bound run_single
    ref = weakref.ref(backend)
    del backend
    gc.disable()
    try:
        session.close()
        assert ref() is None, "the session (its bound run_single) kept the backend alive"
    finally:
        gc.enable()
    with pytest.raises(SessionClosedError):
        session.run(x)
    with pytest.raises(SessionClosedError):
        session._run_single(x)
