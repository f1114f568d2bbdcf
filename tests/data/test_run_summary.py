"""`edgerun run` summarises each output per sample along the output's own batch axis."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgerun import models
from edgerun.cli.main import main
from edgerun.data.files import summarize_outputs

CHECK = models.path("silero-vad").parent / "check" / "check.npz"


def test_samples_follow_the_batch_axis() -> None:
    state = np.zeros((2, 3, 4), np.float32)
    state[1, 2, 3] = 9.0  # sample 2's largest value, at flat index 1 * 4 + 3 of its [2, 4] slice
    (entry,) = summarize_outputs({"stateN": state}, top=1, axes={"stateN": 1})
    assert len(entry["top"]) == 3
    assert entry["top"][2] == [{"index": 7, "label": None, "value": 9.0}]
    assert len(summarize_outputs({"stateN": state}, top=1)[0]["top"]) == 2  # no axes: axis 0, as before
    assert len(summarize_outputs({"table": state}, top=1, axes={"table": None})[0]["top"]) == 1


def test_run_summarises_silero_state_per_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check = np.load(CHECK)
    batch = 3
    data = tmp_path / "three.npz"
    np.savez(data, input=check["input"][:batch], state=check["state"][:, :batch], sr=check["sr"])
    assert main(["run", "silero-vad", "--data", str(data), "--json", "--top", "2"]) == 0
    outputs = {o["name"]: o for o in json.loads(capsys.readouterr().out)["outputs"]}
    assert outputs["stateN"]["shape"] == [2, batch, 128]
    assert len(outputs["stateN"]["top"]) == batch  # one per sample, not one per state layer
    assert len(outputs["output"]["top"]) == batch
    assert all(len(top) == 2 for top in outputs["stateN"]["top"])
