"""Fixtures of the catalog tests: a tiny E5S1 model and its tokenizer, written per test."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests._tiny_e5 import TinyE5, write_e5s1, write_tokenizer


@pytest.fixture
def tiny_e5(tmp_path: Path) -> TinyE5:
    model, tokenizer = tmp_path / "dist" / "e5-small-q4.bin", tmp_path / "dist2" / "tokenizer.json"
    model.parent.mkdir()
    tokenizer.parent.mkdir()
    expected = write_e5s1(model)
    write_tokenizer(tokenizer)
    return TinyE5(model, tokenizer, expected)
