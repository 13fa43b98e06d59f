"""Active learning: what to label next from the prediction store, and labels imported as feedback
(on SQLite and PostgreSQL: ``store_url`` runs each store test on both)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from lmforge.errors import ConfigError, DataError
from lmforge.monitor import (
    acquisition_scores,
    import_labels,
    k_center,
    open_store,
    read_label_file,
    sample_for_labelling,
)

# (text, P(negative), P(positive)): planted served predictions, newest last
PLANTED = [
    ("sure thing", 0.99, 0.01),
    ("could go either way", 0.52, 0.48),
    ("maybe fine", 0.30, 0.70),
    ("meh", 0.45, 0.55),
    ("meh", 0.45, 0.55),  # the same text served again: one record
    ("clearly great", 0.02, 0.98),
]


def _plant(url: str, rows=PLANTED, policy: str = "redact") -> list[str]:
    ids = []
    t0 = time.time() - 100
    with open_store(url) as store:
        records = []
        for i, (text, neg, pos) in enumerate(rows):
            pid = f"p{i}"
            ids.append(pid)
            label = "negative" if neg >= pos else "positive"
            records.append({"id": pid, "ts": t0 + i, "model": "m", "version": "1", "text_hash": f"h-{text}",
                            "text": None if policy == "hash" else text, "text_policy": policy, "label": label,
                            "confidence": max(neg, pos), "scores": {"negative": neg, "positive": pos},
                            "latency_ms": 1.0, "key_id": None, "output": None, "prompt_tokens": None,
                            "completion_tokens": None})
        # A generation (its feedback is up/down): never sampled.
        records.append({**records[1], "id": "gen", "text_hash": "h-gen", "output": "an answer",
                        "scores": {"negative": 0.5, "positive": 0.5}})
        store.insert_predictions(records)
    return ids


def test_acquisition_scores_by_hand() -> None:
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.5, 0.5]])
    assert acquisition_scores(p, "uncertainty") == pytest.approx([0.1, 0.4, 0.5])
    assert acquisition_scores(p, "margin") == pytest.approx([0.2, 0.8, 1.0])
    h = [-(0.9 * np.log(0.9) + 0.1 * np.log(0.1)), -(0.6 * np.log(0.6) + 0.4 * np.log(0.4)), np.log(2)]
    assert acquisition_scores(p, "entropy") == pytest.approx(h)
    three = np.array([[0.5, 0.3, 0.2], [0.4, 0.4, 0.2]])
    assert acquisition_scores(three, "margin") == pytest.approx([0.8, 1.0])
    assert acquisition_scores(np.array([[1.0, 0.0]]), "entropy") == pytest.approx([0.0])  # no log(0) NaN
    with pytest.raises(ConfigError, match="Unknown sampling strategy 'random'"):
        acquisition_scores(p, "random")


def test_k_center_picks_farthest_first() -> None:
    x = np.array([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [0.0, 5.0], [9.9, 0.1]])
    assert k_center(x, 3) == [0, 2, 3]  # start, the farthest from it, then the farthest from both
    # From (10, 0): (0, 5) is farthest; then (0.1, 0), 5.001 from its nearest pick against (0, 0)'s 5; then
    # (9.9, 0.1), 0.14 from (10, 0), against (0, 0)'s 0.1 from (0.1, 0).
    assert k_center(x, 5, first=2) == [2, 3, 1, 4, 0]
    assert k_center(np.zeros((3, 2)), 2) == [0, 1]  # duplicates: taken in order
    assert k_center(x, 0) == []


def test_sample_ranks_unlabelled_texts_once_each(store_url: str) -> None:
    ids = _plant(store_url)
    with open_store(store_url) as store:
        picked = sample_for_labelling(store, 3, "uncertainty")
        # "could go either way" (0.48 off), then "meh" (0.45; its newest copy), then "maybe fine" (0.30).
        assert [r["text"] for r in picked] == ["could go either way", "meh", "maybe fine"]
        assert [r["prediction_id"] for r in picked] == [ids[1], ids[4], ids[2]]
        assert picked[0] == {"prediction_id": ids[1], "text": "could go either way", "predicted": "negative",
                             "confidence": 0.52, "scores": {"negative": 0.52, "positive": 0.48}, "model": "m",
                             "version": "1", "strategy": "uncertainty", "acquisition": 0.48, "label": None}
        # A labelled prediction is not offered again.
        result = import_labels(store, [(1, {"prediction_id": ids[1], "label": "positive"})])
        assert (result.imported, result.problems) == (1, [])
        again = sample_for_labelling(store, 10, "margin")
        # margin 1 - |p1 - p2|: meh 0.9, maybe fine 0.6, clearly great 0.04, sure thing 0.02
        assert [r["text"] for r in again] == ["meh", "maybe fine", "clearly great", "sure thing"]


def test_diverse_skips_near_duplicates_among_the_uncertain(store_url: str) -> None:
    rows = [("refund please", 0.5, 0.5), ("refund please!", 0.51, 0.49), ("refund pls", 0.52, 0.48),
            ("seat broken", 0.55, 0.45), ("fine", 0.9, 0.1)]
    _plant(store_url, rows)
    vectors = {"refund please": [1.0, 0.0], "refund please!": [0.99, 0.01], "refund pls": [0.98, 0.02],
               "seat broken": [0.0, 1.0], "fine": [0.7, 0.7]}
    with open_store(store_url) as store:
        by_entropy = sample_for_labelling(store, 2, "entropy")
        assert [r["text"] for r in by_entropy] == ["refund please", "refund please!"]
        diverse = sample_for_labelling(store, 2, "diverse", pool=2,
                                       embed=lambda texts: np.array([vectors[t] for t in texts]))
        # The pool is the 4 most uncertain; k-center starts at the most uncertain, then goes farthest.
        assert [r["text"] for r in diverse] == ["refund please", "seat broken"]
        with pytest.raises(ConfigError, match="--run RUN"):
            sample_for_labelling(store, 2, "diverse")


def test_a_store_without_texts_says_which_policy_would_keep_them(store_url: str) -> None:
    _plant(store_url, policy="hash")
    with open_store(store_url) as store, pytest.raises(DataError) as err:
        sample_for_labelling(store, 5, "uncertainty")
    assert str(err.value) == ("No unlabelled prediction in the store has a text to label (5 without feedback, "
                              "stored under text_policy hash). Serve with monitor.text_policy: redact (the "
                              "default) or redact+encrypt to keep texts for labelling.")


def test_import_checks_every_line_before_writing(store_url: str) -> None:
    ids = _plant(store_url)
    with open_store(store_url) as store:
        bad = import_labels(store, [(1, {"prediction_id": ids[0], "label": "negative"}),
                                    (2, {"prediction_id": "nope", "label": "negative"}),
                                    (3, {"prediction_id": ids[2], "label": "neutral"}),
                                    (4, {"prediction_id": ids[3], "label": None})])
        assert bad.imported == 0 and bad.skipped == 1
        assert bad.problems == ["line 2: no prediction with id 'nope' in the store",
                                "line 3: 'neutral' is not one of the model's labels (negative, positive)"]
        assert store.get_feedback(ids[0]) is None  # line 1 was fine, but nothing is half-imported
        ok = import_labels(store, [(1, {"prediction_id": ids[0], "label": "negative"}),
                                   (2, {"prediction_id": ids[2], "label": "negative"})])
        assert (ok.imported, ok.unchanged, ok.problems) == (2, 0, [])
        fb = store.get_feedback(ids[2])
        assert fb is not None and fb["label"] == "negative"
        assert import_labels(store, [(1, {"prediction_id": ids[0], "label": "negative"})]).unchanged == 1
        conflict = import_labels(store, [(7, {"prediction_id": ids[2], "label": "positive"})])
        assert conflict.problems == [f"line 7: {ids[2]} already has the label 'negative' (--override replaces it)"]
        assert import_labels(store, [(7, {"prediction_id": ids[2], "label": "positive"})], override=True).imported == 1
        fb = store.get_feedback(ids[2])
        assert fb is not None and fb["label"] == "positive"


def test_cli_sample_then_import_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lmforge.cli.__main__ import main

    state = tmp_path / "state"
    state.mkdir()
    url = f"sqlite:///{state / 'monitor.db'}"
    _plant(url)
    out = tmp_path / "to_label.jsonl"
    assert main(["monitor", "sample", "--state", str(state), "--n", "2", "--strategy", "margin",
                 "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote 2 texts to label to {out} (strategy margin)\n"
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == ["could go either way", "meh"] and rows[0]["label"] is None
    rows[0]["label"] = "positive"  # the labeller fills in one, leaves the other
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert main(["label", "import", str(out), "--state", str(state)]) == 0
    assert capsys.readouterr().out == "imported 1 labels (0 already given, 1 lines without a label)\n"
    with open_store(url) as store:
        assert store.get_feedback(rows[0]["prediction_id"])["label"] == "positive"  # type: ignore[index]
    rows[1]["label"] = "angry"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert main(["label", "import", str(out), "--state", str(state)]) == 2
    assert capsys.readouterr().err == (f"error: {out}: nothing imported, 1 line(s) need fixing: line 2: 'angry' is "
                                       "not one of the model's labels (negative, positive)\n")
    (tmp_path / "bad.jsonl").write_text('{"prediction_id": "p1"}\nnot json\n', encoding="utf-8")
    assert main(["label", "import", str(tmp_path / "bad.jsonl"), "--state", str(state)]) == 2
    assert "bad.jsonl line 2 is not valid JSON" in capsys.readouterr().err
    assert main(["monitor", "sample", "--state", str(tmp_path / "nowhere"), "--n", "2", "--out", str(out)]) == 2
    assert "holds no monitor.db" in capsys.readouterr().err


def test_read_label_file_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    path.write_text('{"prediction_id": "a", "label": "x"}\n\n[1]\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 3 holds a JSON list, not an object"):
        read_label_file(str(path))
    with pytest.raises(DataError, match="Label file not found"):
        read_label_file(str(tmp_path / "missing.jsonl"))
