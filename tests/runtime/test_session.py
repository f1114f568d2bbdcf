"""Sessions give exactly raw ONNX Runtime's outputs, are thread-safe and hand out their own arrays."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import edgerun
from edgerun import models
from edgerun.loading import model_roles
from edgerun.runtime.modelfile import ModelFile
from edgerun.runtime.synthetic import random_feeds


def raw_session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", models.names())
@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("threads", [1, 2])
def test_outputs_match_raw_onnxruntime_exactly(name: str, batch: int, threads: int) -> None:
    card = models.card(name)
    model = ModelFile.open(card.path)
    assert model.has_dynamic_batch, "every bundled model takes any batch size"
    roles = model_roles(model, card, None)  # the card's sample rate, the state's batch on axis 1
    shapes: dict[str, tuple[int, ...]] = {}  # the card's sizes for every free dimension but the batch
    for spec in model.inputs:
        typical, axis = list(card.input_shapes[spec.name]), roles.batch_axes[spec.name]
        if "?" in spec.shape and axis is not None:  # unnamed dims: the whole shape, batch on its axis
            typical[axis] = batch
            shapes[spec.name] = tuple(typical)
        for index, dim in enumerate(spec.shape):
            if isinstance(dim, str) and dim != "?" and index != axis:
                shapes[dim] = (typical[index],)
    feeds = random_feeds(model.inputs, batch, shapes, seed=batch, roles=roles)
    raw = raw_session(card.path, threads)
    expected = raw.run(None, feeds)
    with edgerun.load(name, threads=threads) as session:
        got = session.run(feeds)
    assert list(got) == [o.name for o in raw.get_outputs()]
    for array, reference in zip(got.values(), expected, strict=True):
        assert array.shape == reference.shape
        assert array.dtype == reference.dtype
        np.testing.assert_array_equal(array, reference)


def test_returned_arrays_belong_to_the_caller(student: edgerun.Session) -> None:
    rng = np.random.default_rng(0)
    x1, x2 = rng.random((2, 1, 8, 8), dtype=np.float32), rng.random((2, 1, 8, 8), dtype=np.float32)
    first = student.run(x1)["logits"]
    kept = first.copy()
    second = student.run(x2)["logits"]
    assert not np.shares_memory(first, second)
    np.testing.assert_array_equal(first, kept)
    first[:] = 0  # writable, and writing to it does not affect later calls
    np.testing.assert_array_equal(student.run(x1)["logits"], kept)


def test_batch_size_can_change_between_calls(student: edgerun.Session) -> None:
    rng = np.random.default_rng(3)
    for batch in (1, 5, 2, 8, 1):
        x = rng.random((batch, 1, 8, 8), dtype=np.float32)
        assert student.run(x)["logits"].shape == (batch, 10)


def test_concurrent_calls_from_many_threads_get_their_own_results(student: edgerun.Session) -> None:
    rng = np.random.default_rng(7)
    inputs = [rng.random((1 + i % 4, 1, 8, 8), dtype=np.float32) for i in range(64)]
    expected = [student.run(x)["logits"] for x in inputs]
    barrier = threading.Barrier(8)

    def work(i: int) -> np.ndarray:
        if i < 8:
            barrier.wait()
        return student.run(inputs[i])["logits"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(len(inputs))))
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_call_is_run(student: edgerun.Session) -> None:
    x = np.zeros((1, 1, 8, 8), np.float32)
    np.testing.assert_array_equal(student(x)["logits"], student.run({"image": x})["logits"])


def test_session_describes_itself(student: edgerun.Session) -> None:
    assert student.backend == "onnxruntime"
    assert [s.name for s in student.inputs] == ["image"]
    assert student.inputs[0].shape == ("batch", 1, 8, 8)
    assert student.inputs[0].dtype == np.float32
    assert [s.name for s in student.outputs] == ["logits"]
    assert student.card is not None
    assert student.card.name == "digits-student"
    assert "onnxruntime on cpu" in repr(student)
    plan = student.plan
    assert plan.targets[-1] == "CPUExecutionProvider"
    assert plan.precision == "fp32"
    assert any("TensorRT not available: using onnxruntime CPU" in f for f in plan.fallbacks)
    assert "fallback: TensorRT not available" in plan.describe()


def test_context_manager_closes(student_path: Path) -> None:
    with edgerun.load(student_path) as session:
        assert not session.closed
    assert session.closed


def test_user_path_to_a_bundled_file_still_gets_its_card(student_path: Path) -> None:
    with edgerun.load(str(student_path)) as session:
        assert session.card is not None
        assert session.card.name == "digits-student"


def test_direct_run_path_is_active_and_matches_the_public_one(student_path: Path) -> None:
    from edgerun.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    with edgerun.load(student_path) as session:
        backend = session._backend
        assert isinstance(backend, OnnxRuntimeBackend)
        assert backend.uses_direct_run, "this onnxruntime lost InferenceSession._sess.run: per-call cost went up"
        x = np.random.default_rng(5).random((3, 1, 8, 8), dtype=np.float32)
        direct = session.run(x)["logits"]
        backend._run = backend._session.run
        public = session.run(x)["logits"]
    np.testing.assert_array_equal(direct, public)


def test_backend_failure_at_run_time_is_a_backend_error(tmp_path: Path) -> None:
    """A Reshape whose target size depends on the data fails inside ORT: one clear error."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "reshape",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [4]),
            helper.make_tensor_value_info("shape", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "reshape.onnx"))
    with edgerun.load(tmp_path / "reshape.onnx") as session:
        ok = session.run({"x": np.arange(4, dtype=np.float32), "shape": np.array([2, 2])})
        assert ok["y"].shape == (2, 2)
        with pytest.raises(edgerun.BackendError, match=r"onnxruntime failed running reshape.onnx: .*") as info:
            session.run({"x": np.arange(4, dtype=np.float32), "shape": np.array([3, 3])})
    assert "[ONNXRuntimeError]" not in str(info.value)
