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
