"""Runtime tests' shared rule: no batcher thread outlives the test that started it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from ..batching_helpers import batcher_threads


@pytest.fixture(autouse=True)
def _no_batcher_thread_outlives_its_test() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    assert batcher_threads(before) == []
