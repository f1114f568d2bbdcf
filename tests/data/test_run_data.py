"""``edgerun run MODEL --data file.npz`` with a multi-input model: constants given once, typed errors otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgerun import models
from edgerun.cli.main import main

CHECK = models.path("silero-vad").parent / "check" / "check.npz"


def test_run_with_a_multi_input_npz(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "silero-vad", "--data", str(CHECK), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["inputs"] == {"input": [32, 576], "state": [2, 32, 128], "sr": []}


def test_a_missing_input_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check = np.load(CHECK)
    partial = tmp_path / "partial.npz"
    np.savez(partial, input=check["input"], sr=check["sr"])
    assert main(["run", "silero-vad", "--data", str(partial)]) != 0
    assert "missing input 'state'" in capsys.readouterr().err
