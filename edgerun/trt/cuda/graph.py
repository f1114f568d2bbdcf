"""CUDA graphs: work captured once from a stream and replayed with one launch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgerun.errors import CudaError
from edgerun.trt.cuda.api import check, closed_error
from edgerun.trt.cuda.memory import Resource, Stream


class CudaGraph(Resource):
    """An instantiated CUDA graph: work captured once from a stream, replayed with one launch.

    A graph replays the recorded addresses: refill the same buffers between launches, never new ones.
    """

    def __init__(self, rt: Any, graph_exec: Any) -> None:
        self._rt = rt
        self._exec = graph_exec

    @classmethod
    def capture(cls, stream: Stream, enqueue: Callable[[], object]) -> CudaGraph:
        """Record what ``enqueue()`` queues on ``stream`` into a graph (thread-local capture mode).

        ``enqueue`` must only queue async work on ``stream`` (copies from pinned memory, TensorRT's
        ``execute_async_v3``); returning ``False`` counts as failure. On any failure the capture is ended,
        CUDA's last error cleared, partial objects destroyed, and CudaError raised so that the caller can
        fall back to plain enqueue; the stream stays usable.
        """
        rt = stream.rt
        handle = stream.handle
        check(
            "cudaStreamBeginCapture",
            _clearing(rt, rt.cudaStreamBeginCapture(handle, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal)),
        )
        try:
            returned = enqueue()
        except CudaError:
            _abort_capture(rt, handle)
            raise
        except Exception as exc:
            _abort_capture(rt, handle)
            raise CudaError("CudaGraph.capture enqueue", type(exc).__name__, str(exc)) from exc
        except BaseException:  # KeyboardInterrupt: end the capture, keep the interrupt
            _abort_capture(rt, handle)
            raise
        if returned is False:
            _abort_capture(rt, handle)
            raise CudaError("CudaGraph.capture enqueue", "returned False", "the enqueue callable reported failure")
        graph = check("cudaStreamEndCapture", _clearing(rt, rt.cudaStreamEndCapture(handle)))
        try:
            graph_exec = check("cudaGraphInstantiate", _clearing(rt, rt.cudaGraphInstantiate(graph, 0)))
        finally:
            rt.cudaGraphDestroy(graph)  # the executable graph does not need it
        return cls(rt, graph_exec)

    def launch(self, stream: Stream) -> None:
        """Queue one replay of the graph on ``stream``."""
        if self._exec is None:
            raise closed_error("CudaGraph.launch")
        check("cudaGraphLaunch", self._rt.cudaGraphLaunch(self._exec, stream.handle))

    def close(self) -> None:
        """Destroy the executable graph (synchronize its stream first); later calls do nothing."""
        graph_exec, self._exec = self._exec, None
        if graph_exec is not None:
            check("cudaGraphExecDestroy", self._rt.cudaGraphExecDestroy(graph_exec))


def _clearing(rt: Any, result: Any) -> Any:
    """Pass ``result`` through, clearing CUDA's last-error state when it is a failure (so it does not linger)."""
    if result[0]:
        rt.cudaGetLastError()
    return result


def _abort_capture(rt: Any, handle: Any) -> None:
    """End a capture that failed midway (if still capturing), destroy any partial graph, clear the last error."""
    try:
        err, status = rt.cudaStreamIsCapturing(handle)
        if err or status != rt.cudaStreamCaptureStatus.cudaStreamCaptureStatusNone:
            err, graph = rt.cudaStreamEndCapture(handle)
            if not err and graph is not None and int(graph):
                rt.cudaGraphDestroy(graph)
        rt.cudaGetLastError()
    except Exception:  # never let the clean-up hide the failure being reported
        pass
