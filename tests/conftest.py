"""Shared fixtures: bundled model paths and sessions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import edgerun
from edgerun import models

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def student_path() -> Path:
    return models.path("digits-student")


@pytest.fixture(scope="session")
def default_path() -> Path:
    return models.path(models.DEFAULT)


@pytest.fixture
def student(student_path: Path) -> Iterator[edgerun.Session]:
    with edgerun.load(student_path) as session:
        yield session


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Converted models and calibration ranges go to a fresh folder, never the user's cache."""
    import os

    folder = tmp_path_factory.mktemp("edgerun-cache")
    previous = os.environ.get("EDGERUN_CACHE_DIR")
    os.environ["EDGERUN_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        del os.environ["EDGERUN_CACHE_DIR"]
    else:
        os.environ["EDGERUN_CACHE_DIR"] = previous


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`slow` tests run only when asked for (``-m slow``): the default run stays under ten minutes."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with `python -m pytest -m slow`")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
