"""Fairness report: per-slice metrics, disparity ratios and warnings; from a run's test split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lmforge.cli.__main__ import main
from lmforge.errors import ConfigError, DataError
from lmforge.evaluate import (
    fairness_for_run,
    fairness_report,
    groups_from_field,
    groups_from_handles,
    groups_from_keywords,
    render_fairness_markdown,
)
from lmforge.rundir import RunDir

LABELS = ["negative", "positive"]


def test_disparity_and_warning_from_a_hand_computed_case() -> None:
    # slice A: 10 examples, all right. slice B: 10 examples, 5 right (always predicts negative).
    y_true = ["positive"] * 5 + ["negative"] * 5 + ["positive"] * 5 + ["negative"] * 5
    y_pred = ["positive"] * 5 + ["negative"] * 5 + ["negative"] * 5 + ["negative"] * 5
    groups = ["A"] * 10 + ["B"] * 10
    report = fairness_report(y_true, y_pred, groups, LABELS, min_support=5)
    a, b = report["slices"]["A"], report["slices"]["B"]
    assert (a["n"], a["accuracy"], b["accuracy"]) == (10, 1.0, 0.5)
    assert b["recall"] == {"negative": 1.0, "positive": 0.0}
    assert b["selection_rate"] == {"negative": 1.0, "positive": 0.0}
    assert b["macro_f1"] == pytest.approx((2 * 5 / 15 + 0.0) / 2)
    acc = report["disparity"]["accuracy"]
    assert (acc["ratio"], acc["min_slice"], acc["max_slice"]) == (0.5, "B", "A")
    assert report["disparity"]["recall:positive"]["ratio"] == 0.0
    assert any(w.startswith("accuracy: slice 'B' (0.500) is 0.50x slice 'A' (1.000)") for w in report["warnings"])
    assert report["overall"]["accuracy"] == 0.75
    json.dumps(report)  # JSON-ready
    text = render_fairness_markdown(report)
    assert "**Warnings**" in text and "| B | 10 | 0.500 |" in text


def test_threshold_min_support_multi_membership_and_indices() -> None:
    y_true = [0, 1, 0, 1, 0, 1]
    y_pred = [0, 1, 0, 0, 0, 1]
    groups = [["@united", "@delta"], "@united", None, "@delta", [], "@united"]
    report = fairness_report(y_true, y_pred, groups, LABELS, min_support=2, threshold=0.5)
    assert report["slices"]["@united"]["n"] == 3 and report["slices"]["@delta"]["n"] == 2
    assert report["slices"]["(none)"]["n"] == 2
    assert report["disparity"]["accuracy"]["ratio"] == 0.5  # @delta 1/2 right, @united 3/3
    assert not any(w.startswith("accuracy") for w in report["warnings"])  # not below a 0.5 threshold
    assert any(w.startswith("macro_f1: slice '@delta' (0.333)") for w in report["warnings"])
    strict = fairness_report(y_true, y_pred, groups, LABELS, min_support=3)
    assert strict["small_slices"] == ["(none)", "@delta"]
    assert "accuracy" not in strict["disparity"]  # one eligible slice: nothing to compare
    with pytest.raises(DataError, match="one entry per example"):
        fairness_report([0], [0, 1], [None], LABELS)
    with pytest.raises(DataError, match="not one of the labels"):
        fairness_report(["neutral"], ["positive"], [None], LABELS)
    with pytest.raises(ConfigError, match="threshold"):
        fairness_report([0], [0], [None], LABELS, threshold=1.5)


def test_group_helpers() -> None:
    texts = ["@united lost my bag", "@Delta thanks! @united too", "no handle", "email a@b.com is not a handle"]
    assert groups_from_handles(texts) == [["@united"], ["@delta", "@united"], [], []]
    assert groups_from_handles(texts, min_count=2) == [["@united"], ["@united"], [], []]
    kw = groups_from_keywords(["United Airlines rocks", "unitedly", "国航 很好"], {"united": ["united airlines"],
                                                                                "air china": ["国航"]})
    assert kw == [["united"], [], ["air china"]]
    with pytest.raises(ConfigError):
        groups_from_keywords(["x"], {"g": "not-a-list"})
    assert groups_from_field([{"g": "a"}, {"g": ["b", "c"]}, {}], "g") == [["a"], ["b", "c"], []]
    with pytest.raises(DataError, match="No test record has a value in field 'region'"):
        groups_from_field([{"g": "a"}], "region")


class FakePredictor:
    """Predicts positive iff the text says 'great'; so tweets to @delta (never 'great') fare worse."""

    labels = LABELS

    def predict_proba(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        return np.array([[0.1, 0.9] if "great" in t else [0.8, 0.2] for t in texts], dtype=np.float32)


def make_run(tmp_path: Path) -> RunDir:
    run = RunDir(tmp_path / "run")
    run.data_dir.mkdir(parents=True)
    rows = ([{"text": f"@united great flight {i}", "label": "positive", "region": "us"} for i in range(10)]
            + [{"text": f"@united delayed again {i}", "label": "negative", "region": "us"} for i in range(10)]
            + [{"text": f"@delta fine flight {i}", "label": "positive", "region": "eu"} for i in range(10)]
            + [{"text": f"@delta rude staff {i}", "label": "negative", "region": "eu"} for i in range(10)])
    run.split_path("test").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    run.labels_path.write_text(json.dumps({"labels": LABELS}), encoding="utf-8")
    run.update_manifest()
    return run


def test_fairness_for_run_writes_the_report_and_manifest(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    report = fairness_for_run(run, handles=True, predictor=FakePredictor(), min_support=10)
    assert report["slices"]["@united"]["accuracy"] == 1.0 and report["slices"]["@delta"]["accuracy"] == 0.5
    assert report["groups"] == "handles" and report["warnings"]
    saved = json.loads((run.eval_dir / "fairness.json").read_text(encoding="utf-8"))
    assert saved["disparity"]["accuracy"]["ratio"] == 0.5
    manifest = run.read_manifest()
    assert manifest["fairness"]["warnings"] == len(report["warnings"]) and "eval/fairness.json" in manifest["files"]
    by_field = fairness_for_run(run, group_field="region", predictor=FakePredictor(), write=False)
    assert set(by_field["slices"]) == {"us", "eu"}
    with pytest.raises(ConfigError, match="exactly one way"):
        fairness_for_run(run, handles=True, group_field="region", predictor=FakePredictor())
    with pytest.raises(ConfigError, match="exactly one way"):
        fairness_for_run(run, predictor=FakePredictor())


def test_cli_fairness_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path)
    (tmp_path / "kw.json").write_text("[1, 2]", encoding="utf-8")
    assert main(["fairness", str(run.root), "--keywords", str(tmp_path / "kw.json")]) == 2
    assert "must hold" in capsys.readouterr().err
    assert main(["fairness", str(tmp_path / "missing"), "--by-handle"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_fairness_on_a_really_trained_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the CLI re-signs the run with the user's key
    from lmforge.config import spec_from_dict
    from lmforge.train import train

    run = make_run(tmp_path)
    rows = [json.loads(line) for line in run.split_path("test").read_text(encoding="utf-8").splitlines()]
    for split in ("train", "val"):
        run.split_path(split).write_text("".join(json.dumps({"text": r["text"], "label": r["label"]}) + "\n"
                                                 for r in rows), encoding="utf-8")
    spec = spec_from_dict({"model": {"max_length": 16}, "train": {"max_steps": 2, "batch_size": 8, "eval_steps": 2}})
    train(spec, run, progress=False)
    assert main(["fairness", str(run.root), "--by-handle", "--min-support", "5", "--json", "--allow-unsigned"]) == 0
    saved = json.loads((run.eval_dir / "fairness.json").read_text(encoding="utf-8"))
    assert set(saved["slices"]) == {"@united", "@delta"} and saved["overall"]["n"] == 40
