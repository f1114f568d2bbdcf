"""The TensorRT backend: a cached engine, the v3 execution API, reused buffers and CUDA graphs.

On the model's first load an engine is built from the (precision-converted) ONNX and cached;
later loads deserialize it (once: the cache's check keeps the engine it deserialized). Everything
runs on the plan's ``cuda:N``, made current (``cudaSetDevice``) before the runtime, build, stream
and buffers are made and in every calling thread.

Device buffers and pinned host buffers are allocated once, for the profile's maximum shapes, and
each call uses views of them, so a shape change neither frees nor moves memory (``cudaFreeHost``
synchronizes the device). Like Polygraphy's runner, ``set_input_shape`` / ``set_tensor_address``
are only called when a shape or an address changed.

CUDA graphs: ``set_input_shape`` makes TensorRT redo shape-dependent work on the next enqueue,
which must not be captured, and a graph replays its context's state at capture time. So with
graphs on, each input-shape bucket gets its own execution context (all of them share one block
of activation memory: calls are serialized on one stream); a bucket's first call runs a plain
``execute_async_v3`` at its shapes, the next one captures the graph, later ones replay it (as
trtexec does: one plain enqueue, then capture). Past ``MAX_GRAPH_CONTEXTS`` buckets, calls run
plainly on the main context. A failed capture falls back to plain enqueue for that bucket and is
logged once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgerun.errors import BackendError, CudaError, UnsupportedModelError
from edgerun.logs import log_once
from edgerun.trt import api, cuda
from edgerun.trt.build import BuildSettings, build_engine
from edgerun.trt.cache import EngineCache, EngineKey, device_fields
from edgerun.trt.profiles import Profile, bucket, parse_batch_range, parse_shape_range, plan_profile

if TYPE_CHECKING:
    from edgerun.runtime.backends.base import ModelSource
    from edgerun.runtime.modelfile import ModelFile
    from edgerun.runtime.plan import Plan

_log = logging.getLogger("edgerun")


MAX_GRAPH_CONTEXTS = 4
"""Input-shape buckets that get their own execution context and CUDA graph; later buckets run plainly."""


@dataclass
class _Binding:
    """One I/O tensor: its device buffer and pinned host buffer, both sized for the largest shape seen or allowed."""

    name: str
    dtype: np.dtype[Any]
    is_input: bool
    device: Any
    host: Any = None  # a cuda.PinnedArray of bytes; calls use views of its start

    def ensure(self, shape: tuple[int, ...]) -> None:
        """Room for ``shape``: nothing happens unless it is larger than anything allocated so far."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * self.dtype.itemsize
        self.device.ensure(nbytes)
        if self.host is None or self.host.nbytes < nbytes:
            if self.host is not None:
                self.host.close()
            self.host = cuda.PinnedArray(max(nbytes, 1), np.uint8)

    def view(self, shape: tuple[int, ...]) -> np.ndarray:
        """The pinned host buffer seen as an array of ``shape`` (a view: no allocation)."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * self.dtype.itemsize
        return self.host.array[:nbytes].view(self.dtype).reshape(shape)  # type: ignore[no-any-return]


class _Context:
    """An execution context and what was last set on it; with graphs on, one per input-shape bucket."""

    def __init__(self, context: Any) -> None:
        self._context = context
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.warm = False
        """A plain enqueue ran since the last shape or address change: capturing is safe now."""
        self.graph: Any = None
        self.no_graph = False

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        return bool(self._context.set_input_shape(name, shape))

    def set_tensor_address(self, name: str, ptr: int) -> None:
        self._context.set_tensor_address(name, ptr)

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._context.get_tensor_shape(name))

    def execute_async_v3(self, stream: int) -> bool:
        return bool(self._context.execute_async_v3(stream))

    def drop_graph(self) -> None:
        graph, self.graph = self.graph, None
        if graph is not None:
            graph.close()

    def release(self) -> None:
        """Destroy the graph, then the context (dropping the last reference destroys it at once)."""
        self.drop_graph()
        self._context = None


class TensorRTBackend:
    """One engine, execution contexts (one, or one per graph bucket) and one stream; calls are serialized by a lock."""

    def __init__(self, model: ModelFile, plan: Plan, source: ModelSource) -> None:
        self.inputs = model.inputs
        self.outputs = model.outputs
        self._name = model.path.name
        self._lock = threading.Lock()
        self._phases: _PhaseTimer | None = None
        self._contexts: dict[tuple[Any, ...], _Context] = {}
        self._trt = trt = api.tensorrt()
        options = dict(plan.options)
        self.device_index = device_index(plan.device)
        cuda.set_device(self.device_index)  # before the runtime, the build, the stream and every buffer
        gpu = cuda.device_info(self.device_index)
        self.profile = _profile(model, options, source.typical_shapes)
        self.settings = BuildSettings(
            precision=plan.precision,
            profile=self.profile,
            workspace_mb=options.get("workspace_mb"),
            opt_level=options.get("opt_level"),
            timing_cache=options.get("timing_cache"),
            dla_core=options.get("dla_core"),
            low_memory=bool(options.get("low_memory", False)),
            version_compatible=bool(options.get("version_compatible", False)),
            sparse_weights=bool(options.get("sparse_weights", False)),
        )
        key = EngineKey(
            model_sha256=model.sha256,
            source_sha256=source.sha256,
            precision=plan.precision,
            tensorrt=trt.__version__,
            **device_fields(gpu),
            profile=self.profile.key(),
            flags=self.settings.flag_names(api.version_tuple(trt)[0]),
            settings=self.settings.key(),
        )
        self._logger = api.make_logger(trt)
        self._runtime = api.make_runtime(
            trt, self._logger, version_compatible=self.settings.version_compatible, dla_core=self.settings.dla_core
        )
        cache = EngineCache(options.get("engine_cache"))
        self.engine_path = cache.path_for(key)
        self._checked: tuple[bytes, Any] | None = None
        engine_bytes = cache.lookup(key, self._check)
        self.cache_hit = engine_bytes is not None
        if engine_bytes is None:
            with cache.build_lock(key):
                engine_bytes = cache.lookup(key, self._check)  # another process may have built it
                if engine_bytes is None:
                    _log.info("building TensorRT engine for %s (%s)", self._name, plan.precision)
                    engine_bytes = build_engine(model.path, self.settings, device=device_fields(gpu))
                    self._check(engine_bytes)
                    cache.store(key, engine_bytes, {"model": str(model.path)})
        self._engine = self._engine_for(engine_bytes)
        self._stream = cuda.Stream()
        self._scratch = cuda.DeviceBuffer()
        self._bindings = self._make_bindings()
        self._main: _Context | None = self._new_context()
        self._allocate_for_profile_max(self._main)
        self.cuda_graphs = bool(options.get("cuda_graphs", plan.device_kind == "jetson"))

    # --- loading -----------------------------------------------------------------------------

    def _deserialize(self, data: bytes) -> Any:
        engine = self._runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise BackendError(f"TensorRT could not deserialize the engine for {self._name}")
        return engine

    def _check(self, data: bytes) -> None:
        """The cache's check: deserialize, and keep the engine so that a load deserializes once."""
        self._checked = None  # a previous candidate's engine is released first
        self._checked = (data, self._deserialize(data))

    def _engine_for(self, data: bytes) -> Any:
        checked, self._checked = self._checked, None
        if checked is not None and checked[0] is data:
            return checked[1]
        del checked
        return self._deserialize(data)

    def _make_bindings(self) -> dict[str, _Binding]:
        trt, engine = self._trt, self._engine
        bindings = {}
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            bindings[name] = _Binding(
                name=name,
                dtype=api.numpy_dtype(trt, engine.get_tensor_dtype(name)),
                is_input=engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                device=cuda.DeviceBuffer(),
            )
        expected = {s.name for s in (*self.inputs, *self.outputs)}
        if set(bindings) != expected:
            raise UnsupportedModelError(
                None, f"engine tensors {sorted(bindings)} differ from the model's I/O {sorted(expected)}"
            )
        return bindings

    def _new_context(self) -> _Context:
        """An execution context on the shared activation memory (contexts never run at the same time)."""
        trt = self._trt
        context = self._engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        if context is None:
            raise BackendError(f"TensorRT could not create an execution context for {self._name}")
        size = int(self._engine.device_memory_size_v2)
        self._scratch.ensure(size)
        context.set_device_memory(self._scratch.ptr, size)
        return _Context(context)

    def _allocate_for_profile_max(self, main: _Context) -> None:
        """Size every buffer once for the profile's maximum shapes (outputs as TensorRT infers them)."""
        for name, shapes in self.profile.ranges:
            self._set_shape(main, name, tuple(shapes.max))
            self._bindings[name].ensure(tuple(shapes.max))
        for binding in self._bindings.values():
            if not binding.is_input:
                shape = main.get_tensor_shape(binding.name)
                if all(d >= 0 for d in shape):  # a data-dependent output is sized at its first call
                    binding.ensure(shape)

    # --- running ------------------------------------------------------------------------------

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.profile.check({k: v.shape for k, v in feeds.items()}, self._name)
        with self._lock:
            if self._engine is None:
                raise BackendError(f"the TensorRT engine of {self._name} is closed")
            try:
                cuda.set_device(self.device_index)  # current device is per host thread
                return self._run_locked(feeds)
            except CudaError as exc:
                raise BackendError(f"TensorRT run of {self._name} failed: {exc}") from exc

    def run_single(self, array: np.ndarray) -> dict[str, np.ndarray]:
        return self.run({self.inputs[0].name: array})

    def measure_phases(self, enabled: bool) -> None:
        """Time H2D copies, GPU compute and D2H copies with CUDA events, and the host's enqueue call
        (what trtexec reports); off by default: four event records per call are not free."""
        with self._lock:
            if self._phases is not None:
                self._phases.close()
            self._phases = _PhaseTimer() if enabled else None

    def phase_times_ms(self) -> dict[str, float] | None:
        """Median enqueue / compute / h2d / d2h times since `measure_phases` was turned on."""
        with self._lock:
            return self._phases.medians() if self._phases is not None else None

    @property
    def graph_count(self) -> int:
        """CUDA graphs captured and valid now."""
        return sum(1 for c in self._contexts.values() if c.graph is not None)

    def graph_stats(self) -> dict[str, int]:
        """CUDA graphs now: ``captured`` (valid), ``disabled`` (buckets whose capture failed), ``contexts``."""
        with self._lock:
            contexts = list(self._contexts.values())
        return {
            "captured": sum(1 for c in contexts if c.graph is not None),
            "disabled": sum(1 for c in contexts if c.no_graph),
            "contexts": len(contexts),
        }

    def _context_for(self, key: tuple[Any, ...]) -> _Context:
        main = self._main
        if main is None:
            raise BackendError(f"the TensorRT engine of {self._name} is closed")
        if not self.cuda_graphs:
            return main
        ctx = self._contexts.get(key)
        if ctx is None and len(self._contexts) < MAX_GRAPH_CONTEXTS:
            ctx = self._contexts[key] = self._new_context()
        return ctx if ctx is not None else main

    def _set_shape(self, ctx: _Context, name: str, shape: tuple[int, ...]) -> None:
        if ctx.shapes.get(name) != shape:
            if not ctx.set_input_shape(name, shape):
                raise BackendError(f"{self._name}: TensorRT refused shape {list(shape)} for input '{name}'")
            ctx.shapes[name] = shape
            ctx.warm = False  # TensorRT redoes shape-dependent work on the next enqueue: never capture that
            ctx.drop_graph()

    def _bind(self, ctx: _Context, binding: _Binding) -> None:
        ptr = binding.device.ptr
        if ctx.addresses.get(binding.name) != ptr:
            ctx.set_tensor_address(binding.name, ptr)
            ctx.addresses[binding.name] = ptr
            ctx.warm = False
            ctx.drop_graph()  # a graph replays the addresses it recorded

    def _run_locked(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        stream, phases = self._stream, self._phases
        key = bucket({name: array.shape for name, array in feeds.items()})
        ctx = self._context_for(key)
        if phases is not None:
            phases.events[0].record(stream)
        for name, array in feeds.items():
            binding = self._bindings[name]
            if array.dtype != binding.dtype:
                raise BackendError(
                    f"{self._name}: the engine takes '{name}' as {binding.dtype}, the model as {array.dtype}"
                )
            self._set_shape(ctx, name, tuple(array.shape))
            binding.ensure(tuple(array.shape))  # allocated for the profile's maximum: nothing to do
        outputs = [b for b in self._bindings.values() if not b.is_input]
        shapes = {}
        for binding in outputs:
            shape = ctx.get_tensor_shape(binding.name)
            if any(d < 0 for d in shape):
                raise UnsupportedModelError(
                    None, f"{self._name}: output '{binding.name}' has a data-dependent shape; not supported yet"
                )
            binding.ensure(shape)
            shapes[binding.name] = shape
        for binding in self._bindings.values():
            self._bind(ctx, binding)
        for name, array in feeds.items():
            binding = self._bindings[name]
            host = binding.view(tuple(array.shape))
            np.copyto(host, array)
            cuda.copy_to_device(binding.device.ptr, host, stream)
        if phases is None:
            self._enqueue(ctx)
        else:
            phases.events[1].record(stream)
            started = time.perf_counter()
            self._enqueue(ctx)
            phases.enqueue_ms.append((time.perf_counter() - started) * 1e3)
            phases.events[2].record(stream)
        views = {b.name: b.view(shapes[b.name]) for b in outputs}
        for binding in outputs:
            cuda.copy_to_host(views[binding.name], binding.device.ptr, stream)
        if phases is not None:
            phases.events[3].record(stream)
        stream.synchronize()
        if phases is not None:
            phases.collect()
        return {name: view.copy() for name, view in views.items()}

    def _enqueue(self, ctx: _Context) -> None:
        if ctx.graph is not None:
            ctx.graph.launch(self._stream)
            return
        if ctx.warm and not ctx.no_graph and ctx is not self._main:
            try:
                ctx.graph = cuda.CudaGraph.capture(self._stream, lambda: self._execute(ctx))
                ctx.graph.launch(self._stream)
                return
            except CudaError as exc:
                ctx.no_graph = True
                log_once(_log, logging.WARNING, f"CUDA graph capture failed for {self._name}: plain enqueue ({exc})")
        self._execute(ctx)
        ctx.warm = True  # a plain enqueue at these shapes and addresses ran: the next call may capture

    def _execute(self, ctx: _Context) -> None:
        if not ctx.execute_async_v3(self._stream.ptr):
            raise BackendError(f"TensorRT execute_async_v3 failed for {self._name}")

    # --- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Free graphs, execution contexts, the engine, the runtime, buffers and the stream, in that order.

        Idempotent; waits for a call in progress. TensorRT objects are released by dropping the last
        reference, so nothing here keeps them until garbage collection.
        """
        lock = getattr(self, "_lock", None)
        if lock is None:
            return
        with lock:
            self._close_locked()

    def _close_locked(self) -> None:
        with contextlib.suppress(Exception):
            cuda.set_device(getattr(self, "device_index", 0))
        stream = getattr(self, "_stream", None)
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.synchronize()  # nothing queued may still use what is freed below
        if self._phases is not None:
            self._phases.close()
            self._phases = None
        contexts = list(self._contexts.values())
        main = getattr(self, "_main", None)
        if main is not None:
            contexts.append(main)
        self._contexts.clear()
        self._main = None
        for each in contexts:
            each.release()  # graphs, then contexts, then (below) the engine and the runtime
        contexts.clear()
        self._checked = None
        self._engine = None  # contexts first, then the engine that made them
        self._runtime = None
        for binding in getattr(self, "_bindings", {}).values():
            binding.device.close()
            if binding.host is not None:
                binding.host.close()
                binding.host = None
        scratch = getattr(self, "_scratch", None)
        if scratch is not None:
            scratch.close()
        if stream is not None:
            stream.close()


def device_index(device: str) -> int:
    """The N of ``cuda:N`` (``cuda`` alone is 0)."""
    if device.startswith("cuda:"):
        return int(device.split(":", 1)[1])
    return 0


def _profile(model: ModelFile, options: dict[str, Any], typical: Mapping[str, Sequence[int]] | None) -> Profile:
    batch = options.get("batch")
    shapes = options.get("shapes")
    ranges = None
    if shapes:
        ranges = dict(parse_shape_range(f"{k}={v}") for k, v in dict(shapes).items())
    return plan_profile(
        model.inputs,
        batch=parse_batch_range(str(batch)) if batch is not None else None,
        shapes=ranges,
        typical=typical,
    )


class _PhaseTimer:
    """Four CUDA events per call (start, after H2D, after compute, after D2H) and the host's enqueue time."""

    KEPT = 10_000

    def __init__(self) -> None:
        self.events = [cuda.Event() for _ in range(4)]
        self.enqueue_ms: deque[float] = deque(maxlen=self.KEPT)
        self.h2d_ms: deque[float] = deque(maxlen=self.KEPT)
        self.compute_ms: deque[float] = deque(maxlen=self.KEPT)
        self.d2h_ms: deque[float] = deque(maxlen=self.KEPT)

    def collect(self) -> None:
        """Read the last call's GPU times (the stream has been synchronized)."""
        start, copied, computed, returned = self.events
        self.h2d_ms.append(cuda.elapsed_ms(start, copied))
        self.compute_ms.append(cuda.elapsed_ms(copied, computed))
        self.d2h_ms.append(cuda.elapsed_ms(computed, returned))

    def medians(self) -> dict[str, float] | None:
        if not self.compute_ms:
            return None
        series = {"enqueue": self.enqueue_ms, "compute": self.compute_ms, "h2d": self.h2d_ms, "d2h": self.d2h_ms}
        return {name: float(np.median(list(values))) for name, values in series.items()}

    def close(self) -> None:
        for event in self.events:
            event.close()
