"""pytest-benchmark view of benchmarks/overhead.py: edgerun against raw ONNX Runtime.

Run explicitly (pyproject's testpaths is ``tests/``)::

    pytest benchmarks/ --benchmark-only

Each case (model and batch) is one benchmark group, so ``edgerun`` and ``raw-ort`` sit side by
side in the report; the ``import`` group times fresh interpreters importing each package.
pytest-benchmark runs the sides one after the other, not interleaved, so on a noisy machine
``python benchmarks/overhead.py`` gives the more trustworthy ratio.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from _common import OVERHEAD_CASES, REPO, Case, raw_session

import edgerun

CASES = {case.label: case for case in OVERHEAD_CASES}


@pytest.fixture(scope="module", params=list(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


@pytest.fixture(scope="module")
def runners(case: Case) -> Iterator[dict[str, Callable[[], Any]]]:
    """Both sides of one case, on the same input array, with 1 intra-op thread each."""
    x = case.feed()
    session = edgerun.load(case.model, threads=1)
    raw = raw_session(case.model, threads=1)
    feeds = {case.input_name: x}
    yield {"edgerun": lambda: session.run(x), "raw-ort": lambda: raw.run(None, feeds)}
    session.close()


def test_sides_agree(runners: dict[str, Callable[[], Any]]) -> None:
    """Not a benchmark: the two sides compute the same thing (skipped under --benchmark-only)."""
    ours = list(runners["edgerun"]().values())
    theirs = runners["raw-ort"]()
    for got, want in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("side", ["edgerun", "raw-ort"])
def test_run(benchmark: Any, case: Case, runners: dict[str, Callable[[], Any]], side: str) -> None:
    benchmark.group = f"run {case.label}"
    benchmark.extra_info.update({"model": case.model, "batch": case.batch, "threads": 1, "side": side})
    benchmark(runners[side])


@pytest.mark.parametrize(("side", "code"), [("edgerun", "import edgerun"), ("onnxruntime", "import onnxruntime")])
def test_import(benchmark: Any, side: str, code: str) -> None:
    """Fresh interpreter importing one package (python startup included; compare the two)."""
    benchmark.group = "import (fresh interpreter, startup included)"

    def fresh() -> None:
        subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)

    benchmark.pedantic(fresh, rounds=10, warmup_rounds=1, iterations=1)
