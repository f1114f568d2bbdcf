"""Feeds that do not fit the model raise InputError naming the tensor, expected and got."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import edgerun

from .. import onnx_factory


@pytest.fixture(scope="module")
def two_inputs(tmp_path_factory: pytest.TempPathFactory) -> edgerun.Session:
    path = onnx_factory.save(onnx_factory.two_input_add(), tmp_path_factory.mktemp("m") / "add.onnx")
    return edgerun.load(path)


def feeds(batch: int = 2) -> dict[str, np.ndarray]:
    return {
        "a": np.ones((batch, 4), np.float32),
        "b": np.full((batch, 4), 2, np.float32),
        "c": np.arange(batch, dtype=np.int64),
    }


def test_wrong_input_name(student: edgerun.Session) -> None:
    with pytest.raises(edgerun.InputError) as info:
        student.run({"input": np.zeros((1, 1, 8, 8), np.float32)})
    message = str(info.value)
    assert "unknown input 'input'" in message
    assert "missing input 'image'" in message
    assert "image float32 [batch, 1, 8, 8]" in message
    assert info.value.tensor == "input"


def test_missing_input(two_inputs: edgerun.Session) -> None:
    partial = feeds()
    del partial["b"]
    with pytest.raises(edgerun.InputError, match=r"add\.onnx: missing input 'b'") as info:
        two_inputs.run(partial)
    assert info.value.tensor == "b"


def test_extra_input(two_inputs: edgerun.Session) -> None:
    with pytest.raises(edgerun.InputError, match="unknown input 'd'"):
        two_inputs.run({**feeds(), "d": np.zeros(2)})


def test_single_array_for_multi_input_model(two_inputs: edgerun.Session) -> None:
    with pytest.raises(edgerun.InputError, match=r"has 3 inputs .* pass a dict"):
        two_inputs.run(np.zeros((2, 4), np.float32))


def test_feeds_of_the_wrong_type(student: edgerun.Session) -> None:
    with pytest.raises(edgerun.InputError, match="must be a numpy array or a mapping"):
        student.run([np.zeros((1, 1, 8, 8), np.float32)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("array", "expected", "got"),
    [
        (np.zeros((1, 8, 8), np.float32), "rank 4", "rank 3"),
        (np.zeros((1, 1, 8, 8, 1), np.float32), "rank 4", "rank 5"),
        (np.zeros((1, 3, 8, 8), np.float32), "size 1 at axis 1", "size 3"),
        (np.zeros((1, 1, 28, 28), np.float32), "size 8 at axis 2", "size 28"),
        (np.zeros((1, 1, 8, 8), np.float64), "dtype float32", "dtype float64"),
        (np.zeros((1, 1, 8, 8), np.int32), "dtype float32", "dtype int32"),
        (np.zeros((1, 1, 8, 8), ">f4"), "dtype float32", "dtype >f4"),
    ],
)
def test_wrong_rank_shape_or_dtype(student: edgerun.Session, array: np.ndarray, expected: str, got: str) -> None:
    with pytest.raises(edgerun.InputError) as info:
        student.run(array)
    message = str(info.value)
    assert message.startswith("digits-student: input 'image' expects")
    assert expected in message
    assert got in message
    assert info.value.tensor == "image"
    assert expected in (info.value.expected or "")


def test_dtype_error_suggests_the_conversion(student: edgerun.Session) -> None:
    with pytest.raises(edgerun.InputError, match=r"astype\(numpy.float32\)"):
        student.run(np.zeros((1, 1, 8, 8)))


def test_inconsistent_symbolic_dims_across_inputs(two_inputs: edgerun.Session) -> None:
    bad = feeds(2)
    bad["b"] = np.zeros((3, 4), np.float32)
    with pytest.raises(edgerun.InputError, match=r"input 'b' expects dimension 'batch' = 2 as in input 'a', got 3"):
        two_inputs.run(bad)


def test_non_contiguous_and_read_only_arrays_give_correct_results(student: edgerun.Session) -> None:
    rng = np.random.default_rng(1)
    base = rng.random((2, 1, 8, 8), dtype=np.float32)
    expected = student.run(base)["logits"]
    transposed = np.ascontiguousarray(base.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)  # same values, F-order
    assert not transposed.flags.c_contiguous
    np.testing.assert_array_equal(student.run(transposed)["logits"], expected)
    strided = np.zeros((4, 1, 8, 8), np.float32)
    strided[::2] = base
    view = strided[::2]
    assert not view.flags.c_contiguous
    np.testing.assert_array_equal(student.run(view)["logits"], expected)
    frozen = base.copy()
    frozen.flags.writeable = False
    np.testing.assert_array_equal(student.run(frozen)["logits"], expected)


def test_lists_are_converted_but_dtype_still_checked(two_inputs: edgerun.Session) -> None:
    good = {"a": np.ones((1, 4), np.float32), "b": np.ones((1, 4), np.float32), "c": [7]}
    assert two_inputs.run(good)["n"].tolist() == [7]
    with pytest.raises(edgerun.InputError, match="input 'a' expects dtype float32, got dtype float64"):
        two_inputs.run({**good, "a": [[1.0, 2.0, 3.0, 4.0]]})


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_inputs_run(student: edgerun.Session, value: float) -> None:
    x = np.zeros((2, 1, 8, 8), np.float32)
    x[0, 0, 3, 3] = value
    out = student.run(x)["logits"]
    assert out.shape == (2, 10)
    assert np.all(np.isfinite(out[1])), "the untouched sample is unaffected"


def test_input_error_is_a_value_error(student: edgerun.Session) -> None:
    with pytest.raises(ValueError, match="image"):
        student.run(np.zeros((1, 2, 8, 8), np.float32))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    array=hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.float16]),
        shape=hnp.array_shapes(min_dims=1, max_dims=5, min_side=1, max_side=9),
        elements=st.just(0),
    )
)
def test_any_array_either_runs_or_raises_input_error(student: edgerun.Session, array: np.ndarray) -> None:
    fits = array.dtype == np.float32 and array.ndim == 4 and array.shape[1:] == (1, 8, 8)
    if fits:
        assert student.run(array)["logits"].shape == (array.shape[0], 10)
    else:
        with pytest.raises(edgerun.InputError, match="input 'image' expects"):
            student.run(array)


def test_closed_session_refuses_to_run(student_path: Path) -> None:
    session = edgerun.load(student_path)
    session.run(np.zeros((1, 1, 8, 8), np.float32))  # primes the repeat-call fast path
    session.close()
    session.close()  # idempotent
    assert session.closed
    with pytest.raises(edgerun.SessionClosedError, match="closed"):
        session.run(np.zeros((1, 1, 8, 8), np.float32))


def test_repeat_calls_still_check_dtype_layout_and_shape(student: edgerun.Session) -> None:
    """The one-array fast path (same shape as the last accepted call) must not let anything else through."""
    good = np.zeros((2, 1, 8, 8), np.float32)
    student.run(good)
    student.run(good)
    with pytest.raises(edgerun.InputError, match="dtype float32, got dtype float64"):
        student.run(np.zeros((2, 1, 8, 8)))
    with pytest.raises(edgerun.InputError, match="dtype float32, got dtype >f4"):
        student.run(np.zeros((2, 1, 8, 8), ">f4"))
    fortran = np.asfortranarray(np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32))
    np.testing.assert_array_equal(student.run(fortran)["logits"], student.run(np.ascontiguousarray(fortran))["logits"])
    with pytest.raises(edgerun.InputError, match="size 8 at axis 3"):
        student.run(np.zeros((2, 1, 8, 9), np.float32))


def test_repeat_calls_with_several_inputs_still_check_each(two_inputs: edgerun.Session) -> None:
    two_inputs.run(feeds(2))
    assert two_inputs.run(feeds(2))["y"].tolist() == [[3.0] * 4] * 2
    bad = feeds(2)
    bad["c"] = bad["c"].astype(np.int32)
    with pytest.raises(edgerun.InputError, match="input 'c' expects dtype int64"):
        two_inputs.run(bad)
    mixed = feeds(2)
    mixed["b"] = np.zeros((3, 4), np.float32)
    with pytest.raises(edgerun.InputError, match="dimension 'batch' = 2"):
        two_inputs.run(mixed)
    with pytest.raises(edgerun.InputError, match="unknown input 'd'"):
        two_inputs.run({**feeds(2), "d": np.zeros(1)})
