"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tui.history import HistoryStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    """A new history file of this test's own."""
    s = HistoryStore(tmp_path / "history.sqlite3")
    yield s
    s.close()
