"""Runtime tests' shared rule (no batcher thread outlives the test that started it) and the row model's sessions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import edgerun
from edgerun.runtime.session import Session

from .. import onnx_factory
from ..batching_helpers import batcher_threads, row_model


@pytest.fixture(autouse=True)
def _no_batcher_thread_outlives_its_test() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    assert batcher_threads(before) == []


@pytest.fixture(scope="module")
def row_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`batching_helpers.row_model` on disk: each output row depends only on its input row, exactly."""
    return onnx_factory.save(row_model(), tmp_path_factory.mktemp("row-model") / "row_model.onnx")


@pytest.fixture(scope="module")
def rows(row_path: Path) -> Iterator[Session]:
    """The session under test (tests gate it); `rows_ref` is a second, ungated one for solo results."""
    with edgerun.load(row_path) as session:
        yield session


@pytest.fixture(scope="module")
def rows_ref(row_path: Path) -> Iterator[Session]:
    with edgerun.load(row_path) as session:
        yield session
