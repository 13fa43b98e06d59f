"""Every shipped recipe is a valid spec (globbed recursively, so none is missed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmforge.config import load_spec

RECIPES = sorted((Path(__file__).resolve().parents[3] / "recipes").rglob("*.yaml"))


def test_there_are_recipes() -> None:
    assert len(RECIPES) >= 3


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_validates(path: Path) -> None:
    spec = load_spec(path)
    assert spec.name == path.stem
