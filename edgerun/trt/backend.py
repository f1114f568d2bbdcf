"""The TensorRT backend: a cached engine, the v3 execution API, reused buffers and CUDA graphs.

On the model's first load an engine is built from the (precision-converted) ONNX and cached;
later loads deserialize it. A call copies inputs into pinned host buffers, then to device
buffers that are reused across calls; like Polygraphy's runner it only calls
``set_input_shape`` / ``set_tensor_address`` when a shape or an address changed. With CUDA
graphs on, the first call of each input-shape bucket enqueues normally, the second captures
``execute_async_v3`` into a graph, and later calls replay it; if capture fails the backend
falls back to plain enqueue for that bucket and logs it once.
"""

from __future__ import annotations

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
from edgerun.trt.cache import EngineCache, EngineKey
from edgerun.trt.profiles import Profile, bucket, parse_batch_range, parse_shape_range, plan_profile

if TYPE_CHECKING:
    from edgerun.runtime.backends.base import ModelSource
    from edgerun.runtime.modelfile import ModelFile
    from edgerun.runtime.plan import Plan

_log = logging.getLogger("edgerun")


@dataclass
class _Binding:
    """One I/O tensor: its device buffer, pinned host mirror and what was last set on the context."""

    name: str
    dtype: np.dtype[Any]
    is_input: bool
    device: Any
    host: Any = None
    shape: tuple[int, ...] | None = None
    address: int | None = None


class TensorRTBackend:
    """One engine, one execution context and one stream; calls are serialized by a lock."""

    def __init__(self, model: ModelFile, plan: Plan, source: ModelSource) -> None:
        self.inputs = model.inputs
        self.outputs = model.outputs
        self._name = model.path.name
        self._trt = trt = api.tensorrt()
        options = dict(plan.options)
        gpu = cuda.device_info(0)
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
        )
        key = EngineKey(
            model_sha256=model.sha256,
            source_sha256=source.sha256,
            precision=plan.precision,
            tensorrt=trt.__version__,
            gpu=gpu.name,
            compute_capability=gpu.compute_capability,
            profile=self.profile.key(),
            flags=self.settings.flag_names(api.version_tuple(trt)[0]),
            settings=self.settings.key(),
        )
        self._logger = api.make_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        cache = EngineCache(options.get("engine_cache"))
        self.engine_path = cache.path_for(key)
        engine_bytes = cache.lookup(key, self._deserialize)
        self.cache_hit = engine_bytes is not None
        if engine_bytes is None:
            with cache.build_lock(key):
                engine_bytes = cache.lookup(key, self._deserialize)  # another process may have built it
                if engine_bytes is None:
                    _log.info("building TensorRT engine for %s (%s)", self._name, plan.precision)
                    engine_bytes = build_engine(model.path, self.settings)
                    self._deserialize(engine_bytes)
                    cache.store(key, engine_bytes, {"model": str(model.path)})
        self._engine = self._deserialize(engine_bytes)
        self._context = self._engine.create_execution_context()
        self._stream = cuda.Stream()
        self._bindings = self._make_bindings()
        self._graphs: dict[tuple[Any, ...], Any] = {}
        self._seen: set[tuple[Any, ...]] = set()
        self._no_graph: set[tuple[Any, ...]] = set()
        self.cuda_graphs = bool(options.get("cuda_graphs", plan.device_kind == "jetson"))
        self._lock = threading.Lock()
        self._phases: _PhaseTimer | None = None

    def _deserialize(self, data: bytes) -> Any:
        engine = self._runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise BackendError(f"TensorRT could not deserialize the engine for {self._name}")
        return engine

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

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.profile.check({k: v.shape for k, v in feeds.items()}, self._name)
        with self._lock:
            try:
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

    def _run_locked(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        context, stream, phases = self._context, self._stream, self._phases
        changed = False
        if phases is not None:
            phases.events[0].record(stream)
        for name, array in feeds.items():
            binding = self._bindings[name]
            if binding.shape != array.shape:
                context.set_input_shape(name, array.shape)
                binding.shape = array.shape
                changed = True
            changed |= self._ensure(binding, array.shape)
            if array.dtype != binding.dtype:
                raise BackendError(
                    f"{self._name}: the engine takes '{name}' as {binding.dtype}, the model as {array.dtype}"
                )
            np.copyto(binding.host.array, array)
            cuda.copy_to_device(binding.device.ptr, binding.host.array, stream)
        outputs = [b for b in self._bindings.values() if not b.is_input]
        for binding in outputs:
            shape = tuple(context.get_tensor_shape(binding.name))
            if any(d < 0 for d in shape):
                raise UnsupportedModelError(
                    None, f"{self._name}: output '{binding.name}' has a data-dependent shape; not supported yet"
                )
            binding.shape = shape
            changed |= self._ensure(binding, shape)
        if changed:  # graphs replay recorded addresses and shapes: they are stale now
            for graph in self._graphs.values():
                graph.close()
            self._graphs.clear()
        key = bucket({name: array.shape for name, array in feeds.items()})
        if phases is None:
            self._enqueue(key)
        else:
            phases.events[1].record(stream)
            started = time.perf_counter()
            self._enqueue(key)
            phases.enqueue_ms.append((time.perf_counter() - started) * 1e3)
            phases.events[2].record(stream)
        for binding in outputs:
            cuda.copy_to_host(binding.host.array, binding.device.ptr, stream)
        if phases is not None:
            phases.events[3].record(stream)
        stream.synchronize()
        if phases is not None:
            phases.collect()
        return {b.name: b.host.array.copy() for b in outputs}

    def _ensure(self, binding: _Binding, shape: tuple[int, ...]) -> bool:
        """Size the buffers for ``shape``; set the tensor address on the context when it moved."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * binding.dtype.itemsize
        binding.device.ensure(nbytes)
        if binding.host is None or binding.host.array.shape != shape:
            if binding.host is not None:
                binding.host.close()
            binding.host = cuda.PinnedArray(shape, binding.dtype)
        if binding.address != binding.device.ptr:
            self._context.set_tensor_address(binding.name, binding.device.ptr)
            binding.address = binding.device.ptr
            return True
        return False

    def _enqueue(self, key: tuple[Any, ...]) -> None:
        graph = self._graphs.get(key)
        if graph is not None:
            graph.launch(self._stream)
            return
        if self.cuda_graphs and key in self._seen and key not in self._no_graph:
            try:
                graph = cuda.CudaGraph.capture(self._stream, self._execute)
                self._graphs[key] = graph
                graph.launch(self._stream)
                return
            except CudaError as exc:
                self._no_graph.add(key)
                log_once(_log, logging.WARNING, f"CUDA graph capture failed for {self._name}: plain enqueue ({exc})")
        self._seen.add(key)  # the first call per bucket runs plainly: TensorRT initializes on it
        self._execute()

    def _execute(self) -> None:
        if not self._context.execute_async_v3(self._stream.ptr):
            raise BackendError(f"TensorRT execute_async_v3 failed for {self._name}")

    def close(self) -> None:
        if getattr(self, "_phases", None) is not None:
            self._phases.close()  # type: ignore[union-attr]
            self._phases = None
        for graph in self._graphs.values():
            graph.close()
        self._graphs.clear()
        for binding in getattr(self, "_bindings", {}).values():
            binding.device.close()
            if binding.host is not None:
                binding.host.close()
        if hasattr(self, "_stream"):
            self._stream.close()


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
