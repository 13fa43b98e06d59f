"""The compress tests run with a hermetic HOME (onnxruntime caches under ~); the compressed tiny runs
they share are session fixtures in ``tests/conftest.py``."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _hermetic_home(_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(_home))
