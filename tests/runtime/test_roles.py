"""Input roles: batch axes from shared symbols, roles read from the graph, overrides, streams of state.

Each model of tests/sequence_models.py is built so the graph says (or does not say) one fact;
the roles must find exactly that fact, overrides must win and reject what does not exist, and
a stream must equal feeding the state back by hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgerun
from edgerun.errors import ConfigError, InputError
from edgerun.roles import batch_symbol, parse_input_option, shape_roles
from edgerun.runtime.modelfile import ModelFile
from edgerun.runtime.synthetic import random_feeds
from edgerun.specs import TensorSpec

from .. import sequence_models as sm
from ..data.test_multi_input_data import stateful_model

F32 = np.dtype(np.float32)
I64 = np.dtype(np.int64)


def _open(tmp_path: Path, name: str, model: object) -> ModelFile:
    return ModelFile.open(sm.save(model, tmp_path / f"{name}.onnx"))  # type: ignore[arg-type]


def test_state_batch_axis_follows_the_shared_symbol(tmp_path: Path) -> None:
    roles = _open(tmp_path, "gru", sm.gru_step_model()).roles
    assert roles.batch_axes == {"x": 0, "h": 1}
    assert roles.output_axes == {"logits": 0, "hn": 1}
    assert roles["h"].role == "state"
    assert roles.state_pairs == {"h": "hn"}


def test_time_major_batch_is_axis_one(tmp_path: Path) -> None:
    roles = _open(tmp_path, "tm", sm.time_major_model()).roles
    assert roles.batch_axes == {"x": 1}
    assert roles.output_axes == {"y": 1, "pooled": 0}


def test_token_ids_vocabulary_comes_from_the_embedding_table(tmp_path: Path) -> None:
    roles = _open(tmp_path, "text", sm.text_classifier_model(vocab=1000, type_vocab=2)).roles
    ids = roles["input_ids"]
    assert (ids.role, ids.low, ids.high, ids.origin) == ("token_ids", 0, 1000, "graph")
    assert "[1000, 32]" in ids.evidence
    assert roles["token_type_ids"].high == 2  # its own 2-row table, not the word vocabulary
    mask = roles["attention_mask"]
    assert (mask.role, mask.low, mask.high) == ("mask", 0, 1)
    assert "token ids in [0, 1000)" in ids.describe()


def test_constant_value_comes_from_the_comparison(tmp_path: Path) -> None:
    roles = _open(tmp_path, "cmp", sm.constant_compare_model()).roles
    sr = roles["sr"]
    assert (sr.role, sr.batch_axis, sr.value, sr.origin) == ("constant", None, sm.RATE, "graph")
    assert roles["input"].role == "data"


def test_random_feeds_take_the_branch_the_model_means(tmp_path: Path) -> None:
    model = _open(tmp_path, "cmp", sm.constant_compare_model())
    feeds = random_feeds(model.inputs, batch=3, roles=model.roles)
    assert feeds["sr"].shape == ()
    assert int(feeds["sr"]) == sm.RATE
    assert feeds["input"].shape[0] == 3


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 6), sequence=st.integers(2, 40), seed=st.integers(0, 2**16))
def test_random_text_feeds_are_valid(tmp_path_factory: pytest.TempPathFactory, batch: int, sequence: int,
                                     seed: int) -> None:  # fmt: skip
    model = _text_model(tmp_path_factory)
    feeds = random_feeds(model.inputs, batch, {"sequence": (sequence,)}, seed, model.roles)
    ids, mask = feeds["input_ids"], feeds["attention_mask"]
    assert ids.shape == mask.shape == (batch, sequence)  # one symbol sizes both inputs
    assert ids.min() >= 0
    assert ids.max() < 1000
    assert set(np.unique(mask)) <= {0, 1}
    assert (mask[:, 0] == 1).all(), "every row keeps at least its first token"
    assert (np.diff(mask, axis=1) <= 0).all(), "ones first, then padding"


_TEXT: dict[str, ModelFile] = {}


def _text_model(factory: pytest.TempPathFactory) -> ModelFile:
    if "m" not in _TEXT:
        _TEXT["m"] = ModelFile.open(sm.save(sm.text_classifier_model(), factory.mktemp("text") / "t.onnx"))
    return _TEXT["m"]


def test_batch_symbol_prefers_the_symbol_most_tensors_share() -> None:
    x = TensorSpec("x", ("sequence", "batch", 6), F32)
    y = TensorSpec("y", ("sequence", "batch", 5), F32)
    pooled = TensorSpec("pooled", ("batch", 5), F32)
    assert batch_symbol([x, y, pooled]) == "batch"
    assert batch_symbol([x, y]) == "batch"  # a tie goes to the batch-like name
    image = TensorSpec("x", ("N", 3, 224, 224), F32)
    assert shape_roles([image]).batch_axes == {"x": 0}
    fixed = TensorSpec("x", (1, 3, 224, 224), F32)
    assert shape_roles([fixed]).batch_axes == {"x": 0}
    table = TensorSpec("table", (2, 128), F32)
    assert shape_roles([image, table]).batch_axes == {"x": 0, "table": None}


def test_overrides_from_load_win_and_are_checked(tmp_path: Path) -> None:
    path = sm.save(stateful_model(), tmp_path / "vad.onnx")
    session = edgerun.load(path, inputs={"sr": "constant,value=16000", "state": {"role": "state", "output": "stateN"}})
    assert session.roles["sr"].value == 16000
    assert session.roles["sr"].origin == "given"
    with pytest.raises(ConfigError, match="did you mean 'state'"):
        edgerun.load(path, inputs={"stat": "state,output=stateN"})
    with pytest.raises(ConfigError, match=r"no output named 'stateX'.*did you mean 'stateN'"):
        edgerun.load(path, inputs={"state": "state,output=stateX"})
    with pytest.raises(ConfigError, match=r"role 'contsant'.*did you mean 'constant'"):
        edgerun.load(path, inputs={"sr": "contsant"})
    with pytest.raises(ConfigError, match="vocab='x' is not a number"):
        edgerun.load(path, inputs={"input": "token_ids,vocab=x"})
    with pytest.raises(ConfigError, match="needs the output"):
        edgerun.load(path, inputs={"input": "state"})


@pytest.mark.parametrize(
    ("text", "name", "settings"),
    [
        ("sr=constant,value=16000", "sr", {"role": "constant", "value": "16000"}),
        ("ids=token_ids,vocab=30522", "ids", {"role": "token_ids", "vocab": "30522"}),
        ("x=batch_axis=1", "x", {"batch_axis": "1"}),
    ],
)
def test_input_option_parses(text: str, name: str, settings: dict[str, str]) -> None:
    assert parse_input_option(text) == (name, settings)


@pytest.mark.parametrize("text", ["sr", "=constant", "sr=", "sr=constant,16000"])
def test_bad_input_option_is_a_typed_error(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_input_option(text)


def test_card_declares_what_the_graph_cannot_say() -> None:
    with edgerun.load("silero-vad") as session:
        roles = session.roles
        assert roles["sr"].value == 16000
        assert roles["sr"].origin == "card"
        assert roles.state_pairs == {"state": "stateN"}
        assert roles.batch_axes == {"input": 0, "state": 1, "sr": None}


def test_stream_equals_feeding_state_back_by_hand(tmp_path: Path) -> None:
    path = sm.save(sm.gru_step_model(), tmp_path / "gru.onnx")
    rng = np.random.default_rng(3)
    chunks = rng.standard_normal((12, 2, 8)).astype(np.float32)
    with edgerun.load(path) as session:
        stream = session.stream(batch=2)
        h = np.zeros((1, 2, 16), np.float32)
        for chunk in chunks:
            got = stream.step(chunk)
            logits, h = sm.gru_step_reference(chunk, h)
            np.testing.assert_allclose(got["logits"], logits, atol=1e-5)
        np.testing.assert_allclose(stream.state["h"], h, atol=1e-5)
        assert stream.steps == 12
        stream.reset()
        assert stream.steps == 0
        assert not stream.state["h"].any()
        first = stream.step(chunks[0])
        fresh = sm.gru_step_reference(chunks[0], np.zeros((1, 2, 16), np.float32))[0]
        np.testing.assert_allclose(first["logits"], fresh, atol=1e-5)


def test_stream_errors_are_typed(tmp_path: Path) -> None:
    stateless = edgerun.load(sm.save(sm.time_major_model(), tmp_path / "tm.onnx"))
    with pytest.raises(InputError, match="no state input"):
        stateless.stream()
    stateless.close()
    with edgerun.load(sm.save(sm.lstm_step_model(), tmp_path / "lstm.onnx")) as session:
        assert session.roles.state_pairs == {"h": "hn", "c": "cn"}
        stream = session.stream()
        assert stream.data_inputs == ["x"]
        with pytest.raises(InputError, match=r"input 'x' expects size 8 at axis 1"):
            stream.step(np.zeros((1, 9), np.float32))


def test_silero_streams_its_eval_clip_like_its_own_wrapper() -> None:
    data = np.load(Path(edgerun.models.card("silero-vad").folder) / "eval" / "vad-eval.npz")
    audio = data["audio"][0].astype(np.float32) / 32768.0
    with edgerun.load("silero-vad") as session:
        stream = session.stream()
        context = np.zeros(64, np.float32)
        probs = []
        for start in range(0, 512 * 40, 512):
            chunk = audio[start : start + 512]
            probs.append(float(stream.step(np.concatenate([context, chunk])[None])["output"][0, 0]))
            context = chunk[-64:]
    labels = data["labels"][0][:40]
    assert np.mean((np.array(probs) > 0.5) == labels.astype(bool)) > 0.8


def test_on_batch_axes_places_the_batch_on_each_inputs_own_axis() -> None:
    from edgerun.runtime.synthetic import on_batch_axes

    shapes = {"input": [1, 576], "state": [2, 1, 128], "sr": [], "sequence": [32]}
    axes = {"input": 0, "state": 1, "sr": None}
    assert on_batch_axes(shapes, 8, axes) == {"input": [8, 576], "state": [2, 8, 128], "sr": [], "sequence": [32]}
