"""Multi-input data for calibration and comparison: constants, batch axes that are not axis 0, typed errors.

The model mirrors a stateful voice-activity detector: ``input [batch, 16]`` float32,
``state [2, batch, 128]`` float32 (its batch on axis 1, found through the shared ``batch``
symbol) and a rank-0 ``sr`` int64 that is a constant. Every batch served by `load_samples`
and `open_calibration` must run in ONNX Runtime; every bad data set must end in a
`CalibrationError` naming the input, what the model expects and what was found.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgerun
from edgerun.data.samples import batch_axes, batch_axis, load_samples
from edgerun.errors import CalibrationError, InputError
from edgerun.precision.calibration import CalibrationData, open_calibration
from edgerun.precision.quantize import quantize
from edgerun.runtime.modelfile import ModelFile
from edgerun.specs import TensorSpec

from .. import onnx_factory

CHUNK = 16
STATE = 128
COUNT = 8
WEIGHT = np.linspace(-1.0, 1.0, CHUNK * 4, dtype=np.float32).reshape(CHUNK, 4)


def stateful_model() -> onnx.ModelProto:
    """output = input @ W + sum(state over axes 0, 2) * sr / 16000; stateN = state * 0.5."""
    inits = [
        numpy_helper.from_array(WEIGHT, "W"),
        numpy_helper.from_array(np.array([0, 2], np.int64), "state_axes"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array(16000.0, np.float32), "rate"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
    ]
    nodes = [
        helper.make_node("MatMul", ["input", "W"], ["mm"]),
        helper.make_node("ReduceSum", ["state", "state_axes"], ["summed"], keepdims=0),
        helper.make_node("Unsqueeze", ["summed", "one"], ["column"]),
        helper.make_node("Cast", ["sr"], ["sr_float"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["sr_float", "rate"], ["scale"]),
        helper.make_node("Mul", ["column", "scale"], ["scaled"]),
        helper.make_node("Add", ["mm", "scaled"], ["output"]),
        helper.make_node("Mul", ["state", "half"], ["stateN"]),
    ]
    graph = helper.make_graph(
        nodes,
        "stateful_vad",
        [
            helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", CHUNK]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", STATE]),
            helper.make_tensor_value_info("sr", TensorProto.INT64, []),
        ],
        [
            helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "batch", STATE]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgerun-tests")
    model.ir_version = 8
    return model


def expected_output(feed: dict[str, np.ndarray]) -> np.ndarray:
    summed = feed["state"].sum(axis=(0, 2))[:, None] * (float(feed["sr"]) / 16000.0)
    return feed["input"] @ WEIGHT + summed


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return onnx_factory.save(stateful_model(), tmp_path_factory.mktemp("vad") / "vad.onnx")


@pytest.fixture(scope="module")
def model(model_path: Path) -> ModelFile:
    return ModelFile.open(model_path)


@pytest.fixture(scope="module")
def session(model_path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])


def arrays(count: int = COUNT) -> dict[str, np.ndarray]:
    """``count`` samples; sample i has input all i and state all i (so a row's source is visible)."""
    steps = np.arange(count, dtype=np.float32)
    return {
        "input": np.repeat(steps[:, None], CHUNK, axis=1),
        "state": np.broadcast_to(steps[None, :, None], (2, count, STATE)).copy(),
        "sr": np.array(16000, np.int64),
    }


def save_npz(path: Path, data: dict[str, np.ndarray]) -> Path:
    np.savez(path, **data)  # type: ignore[arg-type]
    return path


def run_all(session: ort.InferenceSession, batches: list[dict[str, np.ndarray]]) -> list[float]:
    """Run every batch; return the sample index (input value) of each row served, in order."""
    rows: list[float] = []
    for feed in batches:
        assert feed["sr"].shape == (), "the constant is served as-is"
        assert int(feed["sr"]) == 16000
        assert feed["state"].shape[1] == feed["input"].shape[0], "state is sliced along its batch axis"
        output, state_n = session.run(None, feed)
        np.testing.assert_allclose(output, expected_output(feed), rtol=1e-5)
        np.testing.assert_allclose(state_n, feed["state"] * 0.5)
        rows.extend(feed["input"][:, 0].tolist())
        assert np.array_equal(feed["state"][0, :, 0], feed["input"][:, 0]), "rows stay paired across inputs"
    return rows


# --- batch axes --------------------------------------------------------------------------------


def test_batch_axis_is_read_from_shared_symbols(model: ModelFile) -> None:
    assert batch_axes(model.inputs) == {"input": 0, "state": 1, "sr": None}
    f32 = np.dtype(np.float32)
    fixed_batch = TensorSpec("image", (1, 3, 8, 8), f32)
    assert batch_axis(fixed_batch, [fixed_batch]) == 0, "a fixed batch of one is still the batch"
    table = TensorSpec("table", (2, 128), f32)
    assert batch_axis(table, [table, fixed_batch]) is None, "no batch dimension: a constant"
    time_major = TensorSpec("frames", ("seq", "batch", 40), f32)
    lengths = TensorSpec("lengths", ("batch",), np.dtype(np.int64))
    assert batch_axes([time_major, lengths]) == {"frames": 1, "lengths": 0}
    alone = TensorSpec("x", ("?", 4), f32)
    assert batch_axis(alone, [alone]) == 0


# --- good data ---------------------------------------------------------------------------------


def test_load_samples_reads_the_three_inputs_from_an_npz(
    model: ModelFile, session: ort.InferenceSession, tmp_path: Path
) -> None:
    path = save_npz(tmp_path / "vad.npz", arrays())
    loaded = load_samples(path, model.inputs)
    assert loaded.count == COUNT
    assert loaded.batch_axes == {"input": 0, "state": 1, "sr": None}
    assert loaded.inputs["sr"].shape == ()
    assert run_all(session, [loaded.inputs]) == list(range(COUNT))
    picked = load_samples(path, model.inputs, samples=3, seed=1)
    assert picked.count == 3
    assert picked.inputs["state"].shape == (2, 3, STATE)
    rows = run_all(session, [picked.inputs])
    assert rows == sorted(rows), "picked along each input's batch axis, in order"
    assert len(set(rows)) == 3


@pytest.mark.parametrize("as_file", [True, False], ids=["npz", "dict"])
def test_open_calibration_serves_batches_that_run(
    model: ModelFile, session: ort.InferenceSession, tmp_path: Path, as_file: bool
) -> None:
    data = arrays()
    source = save_npz(tmp_path / "vad.npz", data) if as_file else data
    calibration = open_calibration(source, model.inputs, batch_size=3)
    assert calibration.count == COUNT
    assert len(calibration) == 3
    calibration.check_fits(model.inputs, "vad.onnx")
    batches = list(calibration)
    assert [b["input"].shape[0] for b in batches] == [3, 3, 2]
    assert run_all(session, batches) == list(range(COUNT))
    assert calibration.get_next() is not None, "iteration rewinds"


def test_a_scalar_as_a_one_element_array_or_python_int(model: ModelFile, session: ort.InferenceSession) -> None:
    for sr in (np.array([16000], np.int64), np.int64(16000)):
        data = {**arrays(), "sr": sr}
        calibration = open_calibration(data, model.inputs, samples=5, seed=3)
        assert calibration.count == 5
        assert calibration.constants["sr"].shape == ()
        assert len(run_all(session, list(calibration))) == 5


def test_a_list_of_feed_dicts_per_sample(model: ModelFile, session: ort.InferenceSession) -> None:
    data = arrays()
    feeds = [{"input": data["input"][i], "state": data["state"][:, i], "sr": 16000} for i in range(COUNT)]
    calibration = open_calibration(feeds, model.inputs, batch_size=4)
    assert calibration.batch_axes["state"] == 1
    assert run_all(session, list(calibration)) == list(range(COUNT))
    batched = [{"input": data["input"][i : i + 2], "state": data["state"][:, i : i + 2], "sr": 16000} for i in (0, 2)]
    assert run_all(session, list(open_calibration(batched, model.inputs))) == [0, 1, 2, 3]


def test_subset_and_identity_follow_the_batch_axes(model: ModelFile, session: ort.InferenceSession) -> None:
    calibration = open_calibration(arrays(), model.inputs)
    held = np.arange(COUNT) % 4 == 3
    kept = calibration.subset(~held)
    assert kept.count == 6
    assert kept.samples["sr"].shape == ()
    assert run_all(session, list(kept)) == [0, 1, 2, 4, 5, 6]
    swapped = CalibrationData(
        {"input": arrays()["input"], "state": np.moveaxis(arrays()["state"], 1, 0).copy(), "sr": np.int64(16000)}
    )
    assert swapped.sha256 != calibration.sha256
    plain = np.zeros((4, 4), np.float32)
    assert CalibrationData({"x": plain}).sha256 == CalibrationData({"x": plain}, batch_axes={"x": 0}).sha256


def test_quantize_calibrates_on_the_three_inputs(model_path: Path, tmp_path: Path) -> None:
    data = arrays(32)
    calibration = open_calibration(data, ModelFile.open(model_path).inputs, batch_size=4)
    result = quantize(model_path, tmp_path / "int8.onnx", calibration)
    assert result.quantized_count > 0
    feed = {"input": data["input"][:3], "state": data["state"][:, :3], "sr": data["sr"]}
    quantized = ort.InferenceSession(str(tmp_path / "int8.onnx"), providers=["CPUExecutionProvider"])
    output, _ = quantized.run(None, feed)
    np.testing.assert_allclose(output, expected_output(feed), rtol=0.05, atol=0.5)


def test_int8_load_with_a_dict_of_the_three_inputs(model_path: Path) -> None:
    data = arrays(32)
    feed = {"input": data["input"][:3], "state": data["state"][:, :3], "sr": data["sr"]}
    # the output is a regression, not class scores: its argmax means nothing, so top-1 is not held to a budget
    budget = {"min_top1": 0.0}
    with edgerun.load(model_path, precision="int8", calibration=data, max_quality_loss=budget) as quantized:
        assert quantized.model.precision == "int8", quantized.plan.fallbacks
        assert quantized.plan.quality is not None
        assert "held apart from calibration" in quantized.plan.quality["samples"]
        result = quantized.run(feed)
    want = expected_output(feed)
    # INT8 steps are 1/255 of a tensor's range: judged against the output's range, not per element
    assert np.abs(result["output"] - want).max() <= 0.1 * np.abs(want).max()


# --- bad data: typed errors naming the input ---------------------------------------------------


def test_npz_missing_an_input(model: ModelFile, tmp_path: Path) -> None:
    data = arrays()
    del data["sr"]
    path = save_npz(tmp_path / "no_sr.npz", data)
    with pytest.raises(CalibrationError, match=r"no data for input\(s\) 'sr' int64 \[\] \(a constant") as info:
        load_samples(path, model.inputs)
    assert info.value.tensor == "sr"  # type: ignore[attr-defined]
    assert "the data has input, state" in str(info.value)
    with pytest.raises(CalibrationError, match="'sr'"):
        open_calibration(path, model.inputs)
    with pytest.raises(CalibrationError, match=r"no data for input\(s\) 'sr'"):
        open_calibration(data, model.inputs)


def test_a_scalar_given_as_a_vector_of_samples(model: ModelFile, tmp_path: Path) -> None:
    data = {**arrays(), "sr": np.full(COUNT, 16000, np.int64)}
    pattern = r"input 'sr' is a constant .*give one value, not one per sample; got shape \[8\]"
    with pytest.raises(CalibrationError, match=pattern):
        load_samples(save_npz(tmp_path / "vector_sr.npz", data), model.inputs)
    with pytest.raises(CalibrationError, match=pattern):
        open_calibration(data, model.inputs)
    varying = [{"input": arrays()["input"][i], "state": arrays()["state"][:, i], "sr": 8000 * (1 + i)} for i in (0, 1)]
    with pytest.raises(
        CalibrationError, match=r"input 'sr' is a constant .* differs between samples \(8000 and 16000\)"
    ):
        open_calibration(varying, model.inputs)


def test_mismatched_sample_counts_name_each_input_and_axis(model: ModelFile, tmp_path: Path) -> None:
    data = {**arrays(), "state": arrays(5)["state"]}
    pattern = (
        r"different sample counts: 'input' 8 along axis 0 \(shape \[8, 16\]\), "
        r"'state' 5 along axis 1 \(shape \[2, 5, 128\]\)"
    )
    with pytest.raises(CalibrationError, match=pattern):
        load_samples(save_npz(tmp_path / "counts.npz", data), model.inputs)
    with pytest.raises(CalibrationError, match=pattern):
        open_calibration(data, model.inputs)


def test_wrong_rank_names_the_input_and_its_shape(model: ModelFile, tmp_path: Path) -> None:
    data = {**arrays(), "state": np.zeros((COUNT, STATE), np.float32)}
    pattern = r"input 'state' has shape \[8, 128\], the model expects \[2, 'batch', 128\] \(samples along axis 1\)"
    with pytest.raises(CalibrationError, match=pattern):
        load_samples(save_npz(tmp_path / "rank.npz", data), model.inputs)
    with pytest.raises(CalibrationError, match=pattern):
        open_calibration(data, model.inputs)
    with pytest.raises(CalibrationError, match=r"input 'input' has shape \[\]"):
        open_calibration({**arrays(), "input": np.float32(1.0)}, model.inputs)


def test_wrong_fixed_size_and_dtype_are_reported_by_check_fits(model: ModelFile) -> None:
    bad_state = {**arrays(), "state": np.zeros((3, COUNT, STATE), np.float32)}
    with pytest.raises(CalibrationError, match=r"'state' have size 3 at axis 0, vad\.onnx expects 2"):
        open_calibration(bad_state, model.inputs).check_fits(model.inputs, "vad.onnx")
    with pytest.raises(CalibrationError, match=r"'sr' are int32, vad\.onnx expects int64"):
        open_calibration({**arrays(), "sr": np.int32(16000)}, model.inputs).check_fits(model.inputs, "vad.onnx")


def test_bad_data_through_load_is_a_typed_error(model_path: Path) -> None:
    with pytest.raises(CalibrationError, match="'sr'"):
        edgerun.load(model_path, precision="int8", calibration={**arrays(), "sr": np.full(COUNT, 16000)})
    with pytest.raises(InputError, match="'state'"):
        edgerun.load(model_path, precision="int8", calibration={**arrays(), "state": arrays(3)["state"]})


def test_sequences_of_different_lengths_are_padded_with_the_mask() -> None:
    ids = TensorSpec("input_ids", ("batch", "sequence"), np.dtype(np.int64))
    mask = TensorSpec("attention_mask", ("batch", "sequence"), np.dtype(np.int64))
    feeds = [
        {"input_ids": np.ones((1, length), np.int64), "attention_mask": np.ones((1, length), np.int64)}
        for length in (5, 7, 5)
    ]
    padded = open_calibration(feeds, [ids, mask])  # the mask shares 'sequence': padded to 7, mask 0 on the padding
    assert padded.samples["input_ids"].shape == (3, 7)
    assert padded.samples["attention_mask"].sum(axis=1).tolist() == [5, 7, 5]
    same = open_calibration(feeds[::2], [ids, mask])
    assert same.count == 2
    assert same.samples["input_ids"].shape == (2, 5)


def test_compare_runs_the_three_inputs_along_their_own_batch_axes(model_path: Path, tmp_path: Path) -> None:
    """`edgerun compare --data model.npz`: state batched along axis 1, sr a constant (was an IndexError)."""
    from edgerun.compare.comparison import compare

    path = save_npz(tmp_path / "all.npz", arrays(12))
    loaded = load_samples(path, ModelFile.open(model_path).inputs)
    result = compare(
        [model_path, model_path], loaded.inputs, source=loaded.source, iterations=3, batch_axes=loaded.batch_axes
    )
    assert result.samples == 12
    for output in result.rows[1].outputs:  # the same model on the same samples: identical
        assert output.max_abs == 0.0


def test_bench_data_feeds_each_input_along_its_own_axis(model_path: Path, tmp_path: Path) -> None:
    """`edgerun bench MODEL --data model.npz` on the three inputs (was an IndexError)."""
    from edgerun.bench.inputs import data_source

    path = save_npz(tmp_path / "all.npz", arrays(6))
    source = data_source(path, ModelFile.open(model_path).inputs, rows=4, preprocess=None)
    for query in range(4):  # the last ones wrap past sample 5
        feed = source.feeds(query)
        assert feed["input"].shape == (4, 16)
        assert feed["state"].shape == (2, 4, 128)
        assert feed["sr"].shape == ()
        rows = (np.arange(4) + query * 4) % 6
        np.testing.assert_array_equal(feed["input"][:, 0], rows)  # sample i holds the value i
        np.testing.assert_array_equal(feed["state"][0, :, 0], rows)


def test_fp16_checked_on_a_dict_of_the_three_inputs(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """check_data as a dict: read along each input's batch axis for the cache key too (was a sample-count error)."""
    monkeypatch.setenv("EDGERUN_CACHE_DIR", str(tmp_path / "cache"))
    with edgerun.load(model_path, precision="fp16", check_data=arrays(12)) as session:
        assert session.plan.precision == "fp16"
        assert session.plan.quality is not None
        assert session.plan.quality["samples"] == "12 samples of <arrays>"


def test_outputs_are_joined_along_their_own_batch_axis(model_path: Path) -> None:
    """stateN [2, batch, 128] of 8 samples run 3 at a time: 8 samples on axis 0, each its own state."""
    from edgerun.data.samples import run_in_chunks

    model = ModelFile.open(model_path)
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(5)
    inputs = {
        "input": rng.standard_normal((COUNT, CHUNK)).astype(np.float32),
        "state": rng.standard_normal((2, COUNT, STATE)).astype(np.float32),
        "sr": np.array(16000, np.int64),
    }

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(["output", "stateN"], session.run(None, feed), strict=True))

    joined = run_in_chunks(run, inputs, model.roles.batch_axes, 3, "test", model.roles.output_axes)
    assert joined["stateN"].shape == (COUNT, 2, STATE)
    np.testing.assert_allclose(joined["stateN"], np.moveaxis(inputs["state"] * 0.5, 1, 0))
    assert joined["output"].shape == (COUNT, 4)
