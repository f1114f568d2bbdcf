"""INT8 for sequence and stateful models: ragged calibration, roles in random checks, silero-vad's card set."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest

import edgerun
from edgerun.errors import CalibrationError
from edgerun.precision.calibration import GroupedCalibrationData, open_calibration
from edgerun.precision.convert import sort_topologically
from edgerun.runtime.modelfile import ModelFile
from tests.sequence_models import constant_compare_model, text_classifier_model


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("EDGERUN_CACHE_DIR", str(folder))
    return folder


def _ragged(count: int = 12, vocab: int = 1000) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    lengths = [7, 12, 9, 16, 7, 12, 5, 11, 8, 14, 10, 6][:count]
    return [{"input_ids": rng.integers(1, vocab, (1, n)), "attention_mask": np.ones((1, n), np.int64)} for n in lengths]


def _text_model(tmp_path: Path) -> Path:
    path = tmp_path / "text.onnx"
    onnx.save(text_classifier_model(), str(path))
    return path


def test_unpadded_sequences_are_padded_with_the_mask(tmp_path: Path) -> None:
    model = ModelFile.open(_text_model(tmp_path))
    data = open_calibration(_ragged(), model.inputs, roles=model.roles)
    assert data.count == 12
    assert data.samples["input_ids"].shape == (12, 16)
    assert data.samples["attention_mask"][0].tolist() == [1] * 7 + [0] * 9
    assert data.samples["input_ids"][0, 7:].tolist() == [0] * 9
    assert "padded to the longest, sequence 16" in data.source
    as_lists = {
        "input_ids": [f["input_ids"][0] for f in _ragged()],
        "attention_mask": [f["attention_mask"][0] for f in _ragged()],
    }
    assert open_calibration(as_lists, model.inputs, roles=model.roles).sha256 == data.sha256


def test_sequences_without_a_mask_are_grouped_by_length(tmp_path: Path) -> None:
    model = ModelFile.open(_text_model(tmp_path))
    feeds = [{"input_ids": f["input_ids"], "attention_mask": f["attention_mask"]} for f in _ragged()]
    roles = model.roles.overridden({"attention_mask": "data"}, "given", "test")
    data = open_calibration(feeds, model.inputs, roles=roles)
    assert isinstance(data, GroupedCalibrationData)
    assert data.count == 12
    batches = list(data)
    assert len(batches) == 12
    assert all(b["input_ids"].shape == b["attention_mask"].shape for b in batches)
    assert sorted(b["input_ids"].shape[1] for b in batches) == sorted([7, 12, 9, 16, 7, 12, 5, 11, 8, 14, 10, 6])
    assert data.subset(np.arange(12) % 2 == 0).count == 6


def test_lengths_on_a_fixed_axis_are_a_typed_error(tmp_path: Path) -> None:
    model = ModelFile.open(_text_model(tmp_path))
    fixed = [replace(s, shape=("batch", 16)) for s in model.inputs]
    with pytest.raises(CalibrationError, match=r"input 'input_ids' have lengths 5, 6, 7.* where the model fixes 16"):
        open_calibration(_ragged(), fixed, roles=model.roles)


def test_int8_load_with_unpadded_sequences(cache: Path, tmp_path: Path) -> None:
    path = _text_model(tmp_path)
    rng = np.random.default_rng(5)
    ids = rng.integers(1, 1000, (4, 10))
    with edgerun.load(path, precision="int8", device="cpu", calibration=_ragged() * 3) as session:
        assert session.model.precision == "int8" or session.plan.fallbacks
        out = session.run({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    assert next(iter(out.values())).shape[0] == 4


def test_random_check_samples_follow_roles(tmp_path: Path) -> None:
    from edgerun.precision.checks import random_samples

    model = ModelFile.open(_text_model(tmp_path))
    card = SimpleNamespace(input_shapes={"input_ids": [1, 16], "attention_mask": [1, 16]})
    samples = random_samples(model, card, roles=model.roles)  # type: ignore[arg-type]
    ids = samples.inputs["input_ids"]
    assert ids.shape == (8, 16)
    assert ids.min() >= 0
    assert ids.max() < 1000
    unnamed = random_samples(model, None, roles=model.roles)  # no card: the free sequence gets a size, said
    assert unnamed.inputs["attention_mask"].shape == unnamed.inputs["input_ids"].shape == (8, 32)
    assert "sequence=32" in unnamed.source
    path = tmp_path / "cmp.onnx"
    onnx.save(constant_compare_model(), str(path))
    compare = ModelFile.open(path)
    roles = compare.roles.overridden({"sr": "constant,value=16000"}, "given", "test")
    drawn = random_samples(compare, None, roles=roles)
    assert drawn.inputs["sr"].tolist() == 16000
    assert drawn.batch_axes["sr"] is None


def test_if_subgraph_reads_are_sorted() -> None:
    graph = onnx.helper.make_graph
    node = onnx.helper.make_node
    info = onnx.helper.make_tensor_value_info
    branch = graph([node("Identity", ["a"], ["o"])], "b", [], [info("o", onnx.TensorProto.FLOAT, [1])])
    main = graph(
        [
            node("If", ["c"], ["y"], then_branch=branch, else_branch=branch, name="late_if"),
            node("Relu", ["x"], ["a"], name="producer"),
        ],
        "g",
        [info("x", onnx.TensorProto.FLOAT, [1]), info("c", onnx.TensorProto.BOOL, [])],
        [info("y", onnx.TensorProto.FLOAT, [1])],
    )
    assert sort_topologically(main)
    assert [n.name for n in main.node] == ["producer", "late_if"]
    assert not sort_topologically(main)


def test_silero_vad_int8_uses_its_card_calibration(cache: Path) -> None:
    with edgerun.load("silero-vad", precision="int8", device="cpu") as session:
        if session.model.precision == "fp32":  # a fallback names its reason
            assert "running fp32" in session.plan.fallbacks[-1]
            return
        assert session.model.precision == "int8"
        assert "calibration/calib.npz" in session.plan.reasons[-1]
        check = np.load(Path(edgerun.__file__).parent / "models" / "silero-vad" / "check" / "check.npz")
        out = session.run({"input": check["input"][:2], "state": check["state"][:, :2], "sr": check["sr"]})
    assert out["output"].shape == (2, 1)
