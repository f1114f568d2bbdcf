"""Tools for the dynamic batcher's tests: a gate on a real session's backend call, and small models.

`Gate` replaces ``session.run_validated`` (what `DynamicBatcher` calls for every batch) with a
wrapper around the real call: it records every batch it receives (a copy of the feeds, the thread,
how many calls were in flight), can hold calls until the test releases them (per call or all at
once), and can raise for batches that contain a marker. The model still runs for real.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np
import onnx
from onnx import TensorProto, helper

from edgerun import Session

from .onnx_factory import _model

WAIT_S = 10.0
"""How long a test waits for something that should happen at once (generous: never hit when green)."""


@dataclass
class Call:
    index: int
    feeds: dict[str, np.ndarray]
    thread: threading.Thread
    release: threading.Event = field(default_factory=threading.Event)
    returned: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    @property
    def rows(self) -> int:
        return next(iter(self.feeds.values())).shape[0]


class GateTimeoutError(AssertionError):
    """A held call was never released (the test forgot to, or failed before it could)."""


class Gate:
    """Wraps ``session``'s backend call: records each batch, optionally holds it, optionally fails it.

    ``held``: new calls wait until `release`/`open`. ``fail_when(feeds)`` may return an exception,
    which the call raises instead of running (kept in ``Call.error``, to check ``__cause__``).
    ``entered``: a semaphore released as each call enters (to wait for calls across gates).
    ``outputs(result)``: rewrites what the real call returned (a backend returning malformed outputs).
    """

    def __init__(
        self,
        session: Session,
        *,
        held: bool = False,
        fail_when: Callable[[Mapping[str, np.ndarray]], BaseException | None] | None = None,
        entered: threading.Semaphore | None = None,
        outputs: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
    ) -> None:
        self.session = session
        self.real = session.run_validated
        self.held = held
        self.fail_when = fail_when
        self.entered = entered
        """Released once per call as it enters (before any hold): one wait across several gates."""
        self.outputs = outputs
        """Applied to the real outputs before they are returned (a backend that misbehaves)."""
        self.calls: list[Call] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._cond = threading.Condition()

    # --- installation ---------------------------------------------------------------------------

    def __enter__(self) -> Gate:
        self.session.run_validated = self
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.open()  # never leave a call stuck, even when the test failed
        if self.session.run_validated is self:
            self.session.run_validated = self.real

    # --- the wrapped call ----------------------------------------------------------------------

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._cond:
            call = Call(
                len(self.calls), {k: np.array(v, copy=True) for k, v in feeds.items()}, threading.current_thread()
            )
            if not self.held:
                call.release.set()
            self.calls.append(call)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._cond.notify_all()
        if self.entered is not None:
            self.entered.release()
        try:
            if not call.release.wait(WAIT_S):
                raise GateTimeoutError(f"gate call {call.index} was never released")
            failure = self.fail_when(feeds) if self.fail_when else None
            if failure is not None:
                call.error = failure
                raise failure
            result = self.real(feeds)
            return self.outputs(result) if self.outputs else result
        finally:
            with self._cond:
                self.in_flight -= 1
                self._cond.notify_all()
            call.returned.set()

    # --- control -----------------------------------------------------------------------------

    def wait_calls(self, count: int, timeout: float = WAIT_S) -> list[Call]:
        """Wait until ``count`` calls have entered (they may still be held); return them."""
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.calls) >= count, timeout), (
                f"expected {count} backend calls, saw {len(self.calls)}"
            )
            return self.calls[:count]

    def wait_in_flight(self, count: int, timeout: float = WAIT_S) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.in_flight >= count, timeout), (
                f"expected {count} calls in flight at once, saw {self.in_flight}"
            )

    def release(self, index: int) -> None:
        self.wait_calls(index + 1)
        self.calls[index].release.set()

    def open(self) -> None:
        """Release every held call, and let later calls through."""
        with self._cond:
            self.held = False
            for call in self.calls:
                call.release.set()

    # --- what ran ----------------------------------------------------------------------------

    def batch_rows(self) -> list[int]:
        with self._cond:
            return [call.rows for call in self.calls]

    def executed(self, name: str) -> np.ndarray:
        """Every row of input ``name`` the backend was given, in call order (padding included)."""
        with self._cond:
            return np.concatenate([call.feeds[name] for call in self.calls])


def contains_row(rows: np.ndarray, wanted: np.ndarray) -> bool:
    """True if any row of ``rows`` equals any row of ``wanted`` (same trailing shape)."""
    if rows.shape[1:] != wanted.shape[1:]:
        return False
    flat = rows.reshape(len(rows), -1)
    return any((flat == row).all(axis=1).any() for row in wanted.reshape(len(wanted), -1))


def batcher_threads(exclude: Iterable[threading.Thread] = ()) -> list[threading.Thread]:
    """Live edgerun batcher threads, except those already alive before (``exclude``)."""
    old = set(exclude)
    return [t for t in threading.enumerate() if t.name.startswith("edgerun-batcher") and t not in old]


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
    """Poll a public observable that has no event to wait on (e.g. ``stats()``)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


# --- models ---------------------------------------------------------------------------------------


def row_model() -> onnx.ModelProto:
    """y = 2 x + sum(x, axis=1): x, y [batch, n] float32; each row's result depends only on that row and n."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=1),
            helper.make_node("Mul", ["x", "two"], ["x2"]),
            helper.make_node("Add", ["x2", "s"], ["y"]),
        ],
        "row_model",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "n"])],
        [
            helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
            helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
        ],
    )
    return _model(graph)


def transposed_output_model() -> onnx.ModelProto:
    """y = x^T: x [batch, 4] -> y [4, batch] (an output whose first axis is not the batch)."""
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["x"], ["y"])],
        "transposed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, "batch"])],
    )
    return _model(graph)


def symbolic_transposed_output_model() -> onnx.ModelProto:
    """y = x^T declared as y [rows, batch]: axis 0 is symbolic, so it looks batchable, but it is not the batch."""
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["x"], ["y"])],
        "symbolic_transposed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", "batch"])],
    )
    return _model(graph)


def scalar_output_model() -> onnx.ModelProto:
    """y = sum(x): x [batch, 4] -> y [] (an output with no batch axis at all)."""
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0)],
        "scalar_out",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
    )
    return _model(graph)


def tagged_rows(first_row_id: int, rows: int, n: int) -> np.ndarray:
    """``rows`` x ``n`` float32 rows, each unique: row id in base-64 digits (small integers, so the
    row model's arithmetic is exact and results do not depend on how rows are batched)."""
    ids = np.arange(first_row_id, first_row_id + rows, dtype=np.int64)[:, None]
    digits = (ids >> (6 * np.arange(4, dtype=np.int64))) & 63
    out = np.ones((rows, n), dtype=np.float32)
    width = min(n, 4)
    out[:, :width] = digits[:, :width]
    if n < 4:
        assert first_row_id + rows <= 64**n, "too many rows to tag uniquely at this width"
    return out


def row_model_path(folder: Path) -> Path:
    path = folder / "row_model.onnx"
    if not path.exists():
        onnx.save(row_model(), str(path))
    return path


def as_key(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array).tobytes() + repr(array.shape[1:]).encode()


def split_rows(array: np.ndarray) -> list[np.ndarray]:
    return [array[i : i + 1] for i in range(len(array))]
