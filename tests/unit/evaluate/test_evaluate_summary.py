"""Manifest summary robustness and the import-weight contract of lmforge.evaluate."""

from __future__ import annotations

import subprocess
import sys

from lmforge.evaluate._summary import run_summary, summary_rows


def test_partial_manifest_reads_unknown_not_keyerror() -> None:
    summary = run_summary({"spec": {"model": {"name": "minilm-l6"}, "data": {"path": "x.csv"}}, "data": {}})
    data_rows, train_rows = summary_rows(summary)
    data, train = dict(data_rows), dict(train_rows)
    assert data["Source"] == "x.csv"
    assert data["Examples (train / val / test)"] == "unknown / unknown / unknown"
    assert train["Base model"] == "minilm-l6"
    assert train["Base model licence"] == "Apache-2.0"  # the catalog's entry
    assert train["Method"] == "unknown" and train["Trainable parameters"] == "unknown"


def test_a_local_base_model_has_no_licence_row() -> None:
    summary = run_summary({"spec": {"model": {"name": "/models/mine"}, "data": {"path": "x.csv"}}, "data": {}})
    train = dict(summary_rows(summary)[1])
    assert train["Base model"] == "/models/mine" and "Base model licence" not in train


def test_full_manifest_values_are_formatted() -> None:
    summary = run_summary(
        {
            "data": {"source": "airline-tweets", "counts": {"train": 11000, "val": 1400, "test": 1400}},
            "train": {
                "method": "full",
                "base_model": "minilm-l6",
                "seconds": 61.234,
                "best_val_macro_f1": 0.81234,
            },
        }
    )
    data, train = (dict(rows) for rows in summary_rows(summary))
    assert data["Examples (train / val / test)"] == "11,000 / 1,400 / 1,400"
    assert train["Training time"] == "61.2 s"
    assert train["Best validation macro-F1"] == "0.8123"


def test_import_does_not_pull_torch_or_matplotlib() -> None:
    code = "import sys, lmforge.evaluate; print(sorted({'torch', 'matplotlib'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
