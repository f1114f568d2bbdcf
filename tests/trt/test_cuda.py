"""edgerun.trt.cuda: absence reported as CudaUnavailableError with the reason, CUDA failures as CudaError, lazy import.

The CPU-side tests run everywhere (the "not installed" and old-import-path cases are simulated through
``sys.modules``); the ``gpu`` tests need a CUDA device and are skipped elsewhere with the reason.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import edgerun
from edgerun.errors import BackendError, BackendUnavailableError, CudaError, CudaUnavailableError, InputError
from edgerun.trt import cuda
from edgerun.trt.cuda import api as cuda_api

REASON = cuda.unavailable_reason()
gpu = [pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=f"no usable CUDA device: {REASON}")]
no_gpu = pytest.mark.skipif(REASON is None, reason="a CUDA device is usable here")


@pytest.fixture
def fresh_import(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Forget the cached runtime module, then make import names resolve to given modules (None: unimportable)."""
    monkeypatch.setattr(cuda_api, "_runtime", None)
    monkeypatch.setattr(cuda_api, "_usable", False)

    def install(**modules: Any) -> None:
        for name, module in modules.items():
            monkeypatch.setitem(sys.modules, name.replace("__", "."), module)

    return install


def real_runtime() -> Any:
    from cuda.bindings import runtime as cudart

    return cudart


# --- CPU side: import, absence, check() ---------------------------------------------------------


def test_importing_edgerun_cuda_loads_neither_cuda_python_nor_numpy() -> None:
    script = (
        "import sys, json, edgerun, edgerun.trt.cuda\n"
        "before = sorted(m for m in sys.modules if m == 'cuda' or m.startswith('cuda.') or m == 'numpy')\n"
        "edgerun.trt.cuda.device_count()\n"
        "after = sorted(m for m in sys.modules if m == 'cuda' or m.startswith('cuda.'))\n"
        "print(json.dumps([before, after]))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    before, after = json.loads(done.stdout.strip().splitlines()[-1])
    assert before == []
    assert "cuda.bindings.runtime" in after or "cuda.cudart" in after


@no_gpu
def test_no_device_count_is_zero_and_the_reason_names_the_cause() -> None:
    assert cuda.device_count() == 0
    assert REASON is not None
    driver = real_runtime().cudaDriverGetVersion()[1]
    if driver == 0:  # no libcuda at all, as on this CPU machine
        assert REASON == "no NVIDIA driver: cudaErrorInsufficientDriver"
    else:
        assert "cudaError" in REASON or "no CUDA device" in REASON


@no_gpu
@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: cuda.device_info(), id="device_info"),
        pytest.param(lambda: cuda.Stream(), id="Stream"),
        pytest.param(lambda: cuda.DeviceBuffer(16), id="DeviceBuffer"),
        pytest.param(lambda: cuda.DeviceBuffer(), id="DeviceBuffer-empty"),
        pytest.param(lambda: cuda.Event(), id="Event"),
        pytest.param(lambda: cuda.PinnedArray((4, 2), np.float32), id="PinnedArray"),
    ],
)
def test_absence_raises_cuda_unavailable_with_the_reason(make: Callable[[], object]) -> None:
    with pytest.raises(CudaUnavailableError) as caught:
        make()
    assert type(caught.value) is CudaUnavailableError  # not a raw cuda-python exception
    assert isinstance(caught.value, BackendUnavailableError)
    assert isinstance(caught.value, edgerun.EdgerunError)
    assert not isinstance(caught.value, CudaError)
    assert str(caught.value) == caught.value.reason == REASON
    gc.collect()  # half-built objects are finalised without an unraisable exception (an error under pytest)


@no_gpu
def test_set_device_without_a_device_raises_cuda_unavailable_with_the_reason() -> None:
    with pytest.raises(CudaUnavailableError) as caught:
        cuda.set_device(1)
    assert str(caught.value) == REASON


@pytest.mark.parametrize("index", [-1, 1.0, True, "1"])
def test_set_device_refuses_what_is_not_a_device_index(index: Any) -> None:
    with pytest.raises(CudaUnavailableError, match="device index is an int >= 0"):
        cuda.set_device(index)


def test_not_installed(fresh_import: Callable[..., None]) -> None:
    fresh_import(cuda__bindings=None, cuda__cudart=None)
    with pytest.raises(
        CudaUnavailableError, match=r"cuda-python is not installed \(pip install 'edgerun\[tensorrt\]'\)"
    ):
        cuda.runtime()
    assert cuda.device_count() == 0
    assert cuda.unavailable_reason() == cuda.NOT_INSTALLED
    with pytest.raises(CudaUnavailableError, match="cuda-python is not installed"):
        cuda.Stream()
    with pytest.raises(CudaUnavailableError, match="cuda-python is not installed"):
        cuda.device_info()


def test_old_cuda_cudart_import_path(fresh_import: Callable[..., None]) -> None:
    cudart = real_runtime()
    fresh_import(cuda__bindings=None, cuda__bindings__runtime=None, cuda__cudart=cudart)
    assert cuda.runtime() is cudart
    assert cuda.runtime() is cudart  # cached


def test_new_import_path_preferred(fresh_import: Callable[..., None]) -> None:
    fresh_import()
    assert cuda.runtime() is real_runtime()


def test_broken_cuda_python_is_unavailable_not_a_raw_exception(fresh_import: Callable[..., None]) -> None:
    from cuda.pathfinder import DynamicLibNotFoundError

    class Broken(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            raise DynamicLibNotFoundError(f"libcudart.so not found while loading {name}")

    fresh_import(cuda__bindings=Broken("cuda.bindings"), cuda__bindings__runtime=None)
    with pytest.raises(CudaUnavailableError, match="cuda-python cannot be loaded: DynamicLibNotFoundError") as caught:
        cuda.runtime()
    assert isinstance(caught.value.__cause__, DynamicLibNotFoundError)
    assert cuda.device_count() == 0
    assert (cuda.unavailable_reason() or "").startswith("cuda-python cannot be loaded")


def test_check_raises_cuda_error_naming_the_call_and_cuda_error() -> None:
    cudart = real_runtime()
    with pytest.raises(CudaError) as caught:
        cuda.check("cudaMalloc", (cudart.cudaError_t.cudaErrorMemoryAllocation, None))
    error = caught.value
    assert str(error) == "cudaMalloc failed: cudaErrorMemoryAllocation (out of memory)"
    assert (error.call, error.error_name, error.code) == ("cudaMalloc", "cudaErrorMemoryAllocation", 2)
    assert isinstance(error, BackendError)
    assert isinstance(error, edgerun.EdgerunError)
    with pytest.raises(CudaError, match=r"^cudaStreamSynchronize failed: cudaErrorStreamCaptureUnsupported \("):
        cuda.check("cudaStreamSynchronize", (cudart.cudaError_t.cudaErrorStreamCaptureUnsupported,))


def test_check_returns_the_values_of_success_tuples() -> None:
    ok = real_runtime().cudaError_t.cudaSuccess
    assert cuda.check("cudaStreamSynchronize", (ok,)) is None
    assert cuda.check("cudaMalloc", (ok, 1234)) == 1234
    assert cuda.check("cudaStreamIsCapturing", (ok, 5, "x")) == (5, "x")
    assert cuda.check("cudaGetLastError", ok) is None


def test_real_call_result_through_check() -> None:
    cudart = real_runtime()
    version = cuda.check("cudaRuntimeGetVersion", cudart.cudaRuntimeGetVersion())
    assert isinstance(version, int)
    assert version >= 12000


def test_cuda_errors_derive_from_the_existing_families() -> None:
    assert issubclass(CudaUnavailableError, BackendUnavailableError)
    assert issubclass(CudaError, BackendError)
    assert str(CudaError("cudaFree", "cudaErrorInvalidValue")) == "cudaFree failed: cudaErrorInvalidValue"


# --- GPU ----------------------------------------------------------------------------------------


@pytest.fixture
def stream() -> Iterator[cuda.Stream]:
    with cuda.Stream() as s:
        yield s


def round_trip(values: np.ndarray[Any, Any], stream: cuda.Stream) -> np.ndarray[Any, Any]:
    """values -> pinned -> device -> pinned, returned as a copy."""
    with (
        cuda.PinnedArray(values.shape, values.dtype) as src,
        cuda.PinnedArray(values.shape, values.dtype) as dst,
        cuda.DeviceBuffer(values.nbytes) as buffer,
    ):
        src.array[...] = values
        cuda.copy_to_device(buffer.ptr, src.array, stream)
        cuda.copy_to_host(dst.array, buffer.ptr, stream)
        stream.synchronize()
        return dst.array.copy()


class TestOnGpu:
    pytestmark = gpu

    def test_device_info_is_sane(self) -> None:
        assert cuda.device_count() >= 1
        info = cuda.device_info(0)
        assert info.index == 0
        assert info.name
        assert "\0" not in info.name
        major, minor = map(int, info.compute_capability.split("."))
        assert major >= 5
        assert minor >= 0
        assert info.total_memory > 256 * 2**20
        assert info.multiprocessors > 0
        with pytest.raises(CudaUnavailableError, match="no CUDA device"):
            cuda.device_info(cuda.device_count())

    def test_set_device_makes_it_current_for_this_thread_only(self) -> None:
        import threading

        cuda.set_device(0)
        assert cuda.current_device() == 0
        last = cuda.device_count() - 1
        seen: list[int] = []

        def other() -> None:
            seen.append(cuda.current_device())  # a new thread starts on device 0
            cuda.set_device(last)
            seen.append(cuda.current_device())

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert seen == [0, last]
        assert cuda.current_device() == 0
        with pytest.raises(CudaError, match="cudaSetDevice"):
            cuda.set_device(cuda.device_count())

    def test_stream_handle_ptr_and_close(self) -> None:
        s = cuda.Stream()
        assert isinstance(s.ptr, int)
        assert s.ptr != 0  # not the legacy default stream
        assert int(s.handle) == s.ptr
        s.synchronize()
        s.close()
        s.close()
        with pytest.raises(CudaError, match="closed"):
            s.synchronize()

    def test_device_buffer_grows_and_keeps_its_address(self) -> None:
        buffer = cuda.DeviceBuffer()
        assert (buffer.ptr, buffer.nbytes) == (0, 0)
        assert buffer.ensure(1024) is True
        first = buffer.ptr
        assert first != 0
        assert buffer.ensure(512) is False
        assert buffer.ensure(1024) is False
        assert buffer.ptr == first
        assert buffer.ensure(1 << 20) is True
        assert buffer.nbytes == 1 << 20
        with pytest.raises(InputError):
            buffer.ensure(-1)
        buffer.close()
        buffer.close()
        assert buffer.nbytes == 0
        with pytest.raises(CudaError, match="closed"):
            _ = buffer.ptr

    def test_pinned_array_is_a_view_on_pinned_memory(self) -> None:
        pinned = cuda.PinnedArray((3, 5), np.float16)
        assert pinned.array.shape == (3, 5)
        assert pinned.array.dtype == np.float16
        assert pinned.array.flags.c_contiguous
        assert pinned.array.flags.writeable
        assert pinned.array.ctypes.data == pinned.ptr != 0
        assert pinned.nbytes == 30
        view = pinned.array[1:]
        view[...] = 7
        pinned.close()
        pinned.close()
        with pytest.raises(CudaError, match="closed"):
            _ = pinned.array
        assert (view == 7).all()  # the block outlives close() while a view is held, so this is not freed memory
        empty = cuda.PinnedArray((0, 4), np.int32)
        assert (empty.ptr, empty.nbytes, empty.array.shape) == (0, 0, (0, 4))

    @settings(max_examples=40, deadline=None)
    @given(
        values=hnp.arrays(
            dtype=st.sampled_from(
                [np.dtype(t) for t in (np.uint8, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_)]
            ),
            shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=9),
        )
    )
    def test_pinned_round_trip_equals_input(self, values: np.ndarray[Any, Any]) -> None:
        with cuda.Stream() as s:
            back = round_trip(values, s)
        assert back.dtype == values.dtype
        assert back.shape == values.shape
        assert back.tobytes() == values.tobytes()  # bitwise, NaNs included

    def test_pageable_arrays_copy_too(self, stream: cuda.Stream) -> None:
        values = np.arange(1000, dtype=np.float32)
        out = np.zeros_like(values)
        with cuda.DeviceBuffer(values.nbytes) as buffer:
            cuda.copy_to_device(buffer.ptr, values, stream)
            cuda.copy_to_host(out, buffer.ptr, stream)
            stream.synchronize()
        np.testing.assert_array_equal(out, values)

    def test_copies_refuse_strided_or_read_only_arrays(self, stream: cuda.Stream) -> None:
        with cuda.DeviceBuffer(4096) as buffer:
            with pytest.raises(InputError, match="C-contiguous"):
                cuda.copy_to_device(buffer.ptr, np.zeros((8, 8), np.float32)[:, ::2], stream)
            frozen = np.zeros(16, np.float32)
            frozen.flags.writeable = False
            with pytest.raises(InputError, match="writeable"):
                cuda.copy_to_host(frozen, buffer.ptr, stream)

    def test_copy_device_to_device(self, stream: cuda.Stream) -> None:
        values = np.random.default_rng(0).integers(0, 255, size=4099, dtype=np.uint8)
        out = np.zeros_like(values)
        with cuda.DeviceBuffer(values.nbytes) as a, cuda.DeviceBuffer(values.nbytes) as b:
            cuda.copy_to_device(a.ptr, values, stream)
            cuda.copy_device_to_device(b.ptr, a.ptr, values.nbytes, stream)
            cuda.copy_to_host(out, b.ptr, stream)
            stream.synchronize()
        np.testing.assert_array_equal(out, values)

    def test_events_time_work(self, stream: cuda.Stream) -> None:
        nbytes = 64 * 2**20
        with (
            cuda.PinnedArray(nbytes, np.uint8) as host,
            cuda.DeviceBuffer(nbytes) as device,
            cuda.Event() as start,
            cuda.Event() as end,
        ):
            start.record(stream)
            cuda.copy_to_device(device.ptr, host.array, stream)
            end.record(stream)
            end.synchronize()
            ms = cuda.Event.elapsed_ms(start, end)
            assert ms > 0
            assert cuda.elapsed_ms(start, end) == ms

    def test_graph_replays_recorded_copies_with_new_input(self, stream: cuda.Stream) -> None:
        n = 4096
        with (
            cuda.PinnedArray(n, np.float32) as inp,
            cuda.PinnedArray(n, np.float32) as out,
            cuda.DeviceBuffer(4 * n) as a,
            cuda.DeviceBuffer(4 * n) as b,
        ):
            inp.array[...] = 1.0
            out.array[...] = 0.0

            def enqueue() -> None:
                cuda.copy_to_device(a.ptr, inp.array, stream)
                cuda.copy_device_to_device(b.ptr, a.ptr, 4 * n, stream)
                cuda.copy_to_host(out.array, b.ptr, stream)

            with cuda.CudaGraph.capture(stream, enqueue) as graph:
                stream.synchronize()
                assert (out.array == 0).all()  # capturing records, it does not run
                for scale in (2.0, 3.0):
                    inp.array[...] = np.arange(n, dtype=np.float32) * scale
                    graph.launch(stream)
                    stream.synchronize()
                    np.testing.assert_array_equal(out.array, np.arange(n, dtype=np.float32) * scale)

    def test_unclosed_objects_are_freed_quietly_at_exit(self) -> None:
        script = (
            "import numpy as np\n"
            "from edgerun.trt import cuda\n"
            "s = cuda.Stream(); b = cuda.DeviceBuffer(64); e = cuda.Event(); p = cuda.PinnedArray(16, np.float32)\n"
            "view = p.array[2:]\n"
            "g = cuda.CudaGraph.capture(s, lambda: cuda.copy_to_device(b.ptr, p.array, s))\n"
            "g.launch(s); e.record(s); s.synchronize()\n"
            "cycle = [s, b, e, p, g]; cycle.append(cycle)\n"
        )
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "Exception ignored" not in done.stderr

    @pytest.mark.parametrize(
        "fail",
        [
            pytest.param("synchronize", id="sync-api-in-capture"),
            pytest.param("python-error", id="enqueue-raises"),
            pytest.param("false", id="enqueue-returns-false"),
        ],
    )
    def test_failed_capture_raises_cuda_error_and_leaves_the_stream_usable(
        self, stream: cuda.Stream, fail: str
    ) -> None:
        values = np.arange(256, dtype=np.float32)
        with (
            cuda.PinnedArray(values.shape, values.dtype) as inp,
            cuda.PinnedArray(values.shape, values.dtype) as out,
            cuda.DeviceBuffer(values.nbytes) as buffer,
        ):
            inp.array[...] = values

            def enqueue() -> object:
                cuda.copy_to_device(buffer.ptr, inp.array, stream)
                if fail == "synchronize":
                    stream.synchronize()  # illegal while capturing
                elif fail == "python-error":
                    raise ValueError("boom")
                return False

            with pytest.raises(CudaError) as caught:
                cuda.CudaGraph.capture(stream, enqueue)
            if fail == "synchronize":
                assert caught.value.call == "cudaStreamSynchronize"
            elif fail == "python-error":
                assert isinstance(caught.value.__cause__, ValueError)
            cudart = cuda.runtime()
            status = cuda.check("cudaStreamIsCapturing", cudart.cudaStreamIsCapturing(stream.handle))
            assert status == cudart.cudaStreamCaptureStatus.cudaStreamCaptureStatusNone
            assert cuda.check("cudaGetLastError", cudart.cudaGetLastError()) is None
            cuda.copy_to_device(buffer.ptr, inp.array, stream)
            cuda.copy_to_host(out.array, buffer.ptr, stream)
            stream.synchronize()
            np.testing.assert_array_equal(out.array, values)
