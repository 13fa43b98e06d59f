"""The terminal table of `lmforge tune`: one aligned row per trial, in the order of the study."""

from __future__ import annotations

from lmforge.tune import format_table

ROWS = [
    {"trial": 0, "state": "COMPLETE", "value": 0.8125, "second": 12.5, "seconds": 31.26,
     "params": {"train.lora.r": 8, "train.learning_rate": 0.000312}, "note": ""},
    {"trial": 1, "state": "FAIL", "value": None, "second": None, "seconds": 3.0,
     "params": {"train.lora.r": 4}, "note": "killed; retried"},
]


def test_one_objective_table() -> None:
    assert format_table(ROWS, "accuracy").splitlines() == [
        "trial  state     accuracy  seconds  params                                       note",
        "0      COMPLETE  0.8125    31.3     train.learning_rate=0.000312 train.lora.r=8",
        "1      FAIL                3.0      train.lora.r=4                               killed; retried",
    ]


def test_two_objectives_add_a_column() -> None:
    lines = format_table(ROWS, "macro_f1", "latency_ms").splitlines()
    assert lines[0].split() == ["trial", "state", "macro_f1", "latency_ms", "seconds", "params", "note"]
    assert lines[1].split()[:5] == ["0", "COMPLETE", "0.8125", "12.5", "31.3"]
