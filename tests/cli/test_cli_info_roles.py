"""``edgerun info MODEL``: input roles, stateful pairs and declared vs observed output shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgerun.cli.main import main

from .. import sequence_models as sm


def _info(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["info", *args, "--json"]) == 0
    model = json.loads(capsys.readouterr().out)["model"]
    assert isinstance(model, dict)
    return model


def test_text_model_shows_token_ids_from_the_graph_and_the_mask(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = sm.save(sm.text_classifier_model(), tmp_path / "text.onnx")
    report = _info(capsys, str(path))
    described = " | ".join(r["describe"] for r in report["roles"]["inputs"])  # type: ignore[index]
    assert "token ids in [0, 1000)" in described
    assert "graph" in described
    assert "mask of 0/1" in described
    assert main(["info", str(path), "--no-run"]) == 0
    text = capsys.readouterr().out
    assert "token ids in [0, 1000)" in text.replace("\n", " ") or "token ids" in text


def test_silero_vad_shows_the_cards_constant_and_state_pair(capsys: pytest.CaptureFixture[str]) -> None:
    report = _info(capsys, "silero-vad")
    roles = {r["name"]: r for r in report["roles"]["inputs"]}  # type: ignore[index]
    assert roles["sr"]["describe"] == "constant 16000 (card)"
    assert roles["state"]["state_output"] == "stateN"
    assert report["roles"]["state_pairs"] == {"state": "stateN"}  # type: ignore[index]
    assert report["output_mismatches"] == []
    assert main(["info", "silero-vad"]) == 0
    assert "stateful: yes (state -> stateN)" in capsys.readouterr().out


def test_lying_model_shows_declared_and_observed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sm.save(sm.lying_output_model(), tmp_path / "lying.onnx")
    report = _info(capsys, str(path))
    assert report["observed_outputs"][0]["shape"] == [3, "batch", 10]  # type: ignore[index]
    assert report["output_mismatches"] == [{"name": "probs", "declared": [1, "seqlen"], "returned": [3, "batch", 10]}]
    assert _info(capsys, str(path), "--no-run")["observed_outputs"] is None


def test_input_option_overrides_a_role(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sm.save(sm.gru_step_model(), tmp_path / "gru.onnx")
    report = _info(capsys, str(path), "--role", "x=data,batch_axis=0", "--shape", "batch=2")
    assert report["roles"]["inputs"][0]["origin"] == "given"  # type: ignore[index]
