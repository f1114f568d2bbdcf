"""Token ids outside the vocabulary are a typed InputError naming the input, value and position."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import edgerun
from edgerun.errors import InputError
from edgerun.runtime.batching import DynamicBatcher

from .. import sequence_models as sm

VOCAB = 1000


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sm.save(sm.text_classifier_model(vocab=VOCAB), tmp_path_factory.mktemp("text") / "text.onnx")


@pytest.fixture(scope="module")
def session(model_path: Path) -> Iterator[edgerun.Session]:
    with edgerun.load(model_path, threads=1) as session:
        yield session


def _feeds(ids: np.ndarray) -> dict[str, np.ndarray]:
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


_SHAPES = hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6)


@settings(max_examples=40, deadline=None)
@given(ids=hnp.arrays(np.int64, _SHAPES, elements=st.integers(0, VOCAB - 1)))
def test_ids_inside_the_vocabulary_run(session: edgerun.Session, ids: np.ndarray) -> None:
    assert session.run(_feeds(ids))["logits"].shape[0] == ids.shape[0]


@settings(max_examples=40, deadline=None)
@given(
    ids=hnp.arrays(np.int64, _SHAPES, elements=st.integers(0, VOCAB - 1)),
    bad=st.one_of(st.integers(-(2**40), -1), st.integers(VOCAB, 2**40)),
    where=st.data(),
)
def test_ids_outside_the_vocabulary_are_named(
    session: edgerun.Session, ids: np.ndarray, bad: int, where: st.DataObject
) -> None:
    row = where.draw(st.integers(0, ids.shape[0] - 1))
    col = where.draw(st.integers(0, ids.shape[1] - 1))
    ids[row, col] = bad
    session.run(_feeds(np.zeros_like(ids)))  # the repeat-call fast path must check values too
    pattern = rf"'input_ids' expects token ids in \[0, 1000\).*got {bad} at position \[{row}, {col}\]"
    with pytest.raises(InputError, match=pattern) as info:
        session.run(_feeds(ids))
    assert info.value.tensor == "input_ids"
    assert "vocabulary of 1000" in str(info.value.expected)


def test_negative_id_says_it_would_wrap(session: edgerun.Session) -> None:
    with pytest.raises(InputError, match=r"-1 at position \[0, 2\].*silently"):
        session.run(_feeds(np.array([[1, 2, -1]], np.int64)))


def test_overridden_vocabulary_is_the_domain(model_path: Path) -> None:
    with edgerun.load(model_path, threads=1, inputs={"input_ids": "token_ids,vocab=500"}) as session:
        session.run(_feeds(np.array([[499]], np.int64)))
        with pytest.raises(InputError, match=r"\[0, 500\).*got 500 at position \[0, 0\]"):
            session.run(_feeds(np.array([[500]], np.int64)))


def test_batcher_rejects_bad_ids_at_submit(session: edgerun.Session) -> None:
    with DynamicBatcher(session, max_batch_size=4, max_queue_delay_ms=1.0) as batcher:
        good = batcher.infer(_feeds(np.array([[3, 4]], np.int64)))
        assert good["logits"].shape == (1, 4)
        with pytest.raises(InputError, match="got 1000 at position"):
            batcher.submit(_feeds(np.array([[3, 1000]], np.int64)))


def test_models_without_token_ids_keep_the_one_array_fast_path() -> None:
    with edgerun.load("digits-student", threads=1) as session:
        spec = session.inputs[0]
        session.run(np.zeros(spec.concrete_shape(1), spec.dtype))
        assert session.validate.accepted_array is not None


def test_dynamic_int8_of_a_text_model_needs_no_calibration(model_path: Path) -> None:
    """Dynamic INT8 computes activation ranges per call: random in-vocabulary samples are enough to check it."""
    from edgerun.precision.quantize import auto_mode
    from edgerun.runtime.modelfile import ModelFile

    assert auto_mode(ModelFile.open(model_path), "cpu")[0] == "dynamic"
    with edgerun.load(model_path, precision="int8", device="cpu", threads=1) as session:
        assert session.plan.precision == "int8"
        assert "int8 dynamic" in " ".join(session.plan.reasons)


def test_info_finds_the_dynamic_int8_version_load_made(model_path: Path) -> None:
    """`edgerun info` looks the check up under load's own quantization mode (dynamic here), not static."""
    from edgerun.info import model_report
    from edgerun.runtime.device import current_device

    with edgerun.load(model_path, precision="int8", device="cpu", threads=1) as session:
        made = session.plan.quality
    assert made is not None
    plan = model_report(str(model_path), current_device(), device="cpu", precision="int8", observe=False)["plan"]
    assert plan["quality"] is not None
    assert plan["quality"]["summary"] == made["summary"]
