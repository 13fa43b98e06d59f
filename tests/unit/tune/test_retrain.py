"""`lmforge retrain`: feedback merged exactly, never the parent's test texts, the forgetting guard, the canary."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from tests._runs import NEG, POS, copy_run

from lmforge.errors import DataError
from lmforge.monitor import open_store
from lmforge.retrain import FeedbackExample, collect_feedback, merge_feedback

TINY_SPEC = {"model": {"max_length": 32}, "train": {"max_steps": 4, "batch_size": 8, "learning_rate": 2e-4,
                                                     "warmup_ratio": 0.0, "precision": "fp32"}}


def _fb(text: str, label: str, ts: float) -> FeedbackExample:
    return FeedbackExample(text, label, ts, f"id-{ts}")


def test_merge_rules_by_hand() -> None:
    train = [{"text": "lost my bag", "label": "negative"}, {"text": "great crew", "label": "positive"}]
    test = ["delayed three hours, worst airline"]
    feedback = [
        _fb("great   CREW", "negative", 1),  # relabels a training text (same text, other spacing and case)
        _fb("seat was fine", "negative", 2),
        _fb("seat was fine", "positive", 3),  # a later label for the same text wins
        _fb("delayed three hours, worst airline", "negative", 4),  # the parent's test text: dropped
        _fb("delayed three hours, worst airline!", "negative", 5),  # nearly it: dropped
        *[_fb(f"new text number {i}", "positive", 10 + i) for i in range(10)],
    ]
    merged = merge_feedback(train, test, feedback, fresh_share=0.2, seed=0, near_threshold=0.9)
    assert merged.counts == {"feedback": 15, "distinct_texts": 14, "conflicting_labels": 1, "leaked_exact": 1,
                             "leaked_near": 1, "already_in_training": 1, "relabelled_training_texts": 1,
                             "fresh_test": 2, "new_training_texts": 9, "train_total": 11}
    assert merged.train[:2] == [{"text": "lost my bag", "label": "negative"}, {"text": "great crew", "label": "negative"}]
    fresh = {r["text"] for r in merged.fresh_test}
    added = {r["text"] for r in merged.train[2:]}
    assert not fresh & added and not (fresh | added) & set(test)
    assert {"text": "seat was fine", "label": "positive"} in merged.train + merged.fresh_test
    again = merge_feedback(train, test, feedback, fresh_share=0.2, seed=0, near_threshold=0.9)
    assert again.fresh_test == merged.fresh_test  # seeded


def _plant_feedback(url: str, model: str, pairs: list[tuple[str, str]], policy: str = "redact") -> None:
    t0 = time.time() - 1000
    with open_store(url) as store:
        store.insert_predictions([
            {"id": f"{model}-{i}", "ts": t0 + i, "model": model, "version": "1", "text_hash": f"h-{model}-{i}",
             "text": None if policy == "hash" else text, "text_policy": policy, "label": "positive",
             "confidence": 0.6, "scores": {"negative": 0.4, "positive": 0.6}, "latency_ms": 1.0, "key_id": None,
             "output": None, "prompt_tokens": None, "completion_tokens": None}
            for i, (text, _) in enumerate(pairs)])
        for i, (_, label) in enumerate(pairs):
            store.upsert_feedback({"prediction_id": f"{model}-{i}", "ts": t0 + 500 + i, "label": label, "predicted": "positive",
                                   "correct": label == "positive", "model": model, "version": "1",
                                   "prediction_ts": t0 + i, "key_id": None, "correction": None})


def test_collect_feedback_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    with pytest.raises(DataError, match="no feedback for model 'm'"):
        collect_feedback(url, "m", ["negative", "positive"])
    _plant_feedback(url, "m", [("a", "negative"), ("b", "positive")], policy="hash")
    with pytest.raises(DataError, match=r"2 feedback label\(s\) for model 'm' but no text to train on \(text_policy: hash\)"):
        collect_feedback(url, "m", ["negative", "positive"])
    _plant_feedback(url, "n", [("c", "angry")])
    with pytest.raises(DataError, match="Feedback labels 'angry' are not among the run's labels"):
        collect_feedback(url, "n", ["negative", "positive"])


@pytest.fixture
def parent(trained_full: Path, tmp_path: Path) -> Path:
    from lmforge.config import spec_from_dict, spec_to_yaml

    run = copy_run(trained_full, tmp_path / "sentiment")
    run.spec_path.write_text(spec_to_yaml(spec_from_dict(TINY_SPEC)), encoding="utf-8")
    run.update_manifest()
    return run.root


def _serve_state(state: Path, parent: Path) -> None:
    from lmforge.serve import ServeSettings, open_stores

    with open_stores(ServeSettings(state_dir=str(state))) as stores:
        info = stores.registry.register("sentiment", parent, allow_unsigned=True, actor="tests")
        stores.registry.activate("sentiment", info.version, actor="tests")


@pytest.mark.slow
def test_retrain_then_canary(parent: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lmforge.cli.__main__ import main
    from lmforge.rundir import RunDir
    from lmforge.serve import ServeSettings, open_stores

    state = tmp_path / "state"
    state.mkdir()
    _serve_state(state, parent)
    test_texts = {json.loads(line)["text"] for line in (parent / "data" / "test.jsonl").read_text().splitlines()}
    served = [(f"{t}, again", "positive") for t in POS] + [(f"{t}, again", "negative") for t in NEG]
    served.append((sorted(test_texts)[0], "positive"))  # a parent test text: must not be trained on
    _plant_feedback(f"sqlite:///{state / 'monitor.db'}", "sentiment", served)
    new = tmp_path / "sentiment-r1"
    argv = ["retrain", str(parent), "--state", str(state), "--out", str(new), "--allow-unsigned", "--no-progress",
            "--register", "--canary-percent", "20", "--set", "retrain.min_feedback=5"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "registered sentiment version 2" in out and "canary at 20 % of traffic" in out
    report = json.loads((new / "eval" / "retrain.json").read_text())
    assert report["feedback"]["leaked_exact"] == 1 and report["feedback"]["feedback"] == 17
    assert report["feedback"]["fresh_test"] + report["feedback"]["new_training_texts"] == 16
    trained = {json.loads(line)["text"] for line in (new / "data" / "train.jsonl").read_text().splitlines()}
    before = {json.loads(line)["text"] for line in (parent / "data" / "train.jsonl").read_text().splitlines()}
    assert not (trained - before) & test_texts  # the leakage check held: no feedback text of the old test split
    fresh = [json.loads(line) for line in (new / "data" / "fresh_test.jsonl").read_text().splitlines()]
    assert len(fresh) == report["fresh_test"]["n"] == report["feedback"]["fresh_test"] > 0
    assert not {r["text"] for r in fresh} & trained
    assert report["old_test"]["n"] == len((parent / "data" / "test.jsonl").read_text().splitlines())
    assert report["start"] == "parent" and (new / "base" / "config.json").is_file()
    manifest = RunDir(new).read_manifest()
    assert manifest["parent"] == str(parent) and manifest["retrain"]["feedback"] == report["feedback"]
    with open_stores(ServeSettings(state_dir=str(state))) as stores:
        info = stores.registry.get_model("sentiment")
        versions = stores.registry.list_versions("sentiment")
    assert (info.active_version, info.canary_version, info.canary_percent) == (1, 2, 20.0)
    assert versions[-1].run_path == str(new.resolve())


@pytest.mark.slow
def test_the_forgetting_guard_refuses_the_canary(parent: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lmforge.cli.__main__ import main
    from lmforge.serve import ServeSettings, open_stores

    state = tmp_path / "state"
    state.mkdir()
    _serve_state(state, parent)
    # Retrained from the base model for one step only: it has not learned what the parent knew.
    served = [(f"{t}, again", "positive") for t in POS] + [(f"{t}, again", "negative") for t in NEG]
    _plant_feedback(f"sqlite:///{state / 'monitor.db'}", "sentiment", served)
    new = tmp_path / "forgot"
    argv = ["retrain", str(parent), "--state", str(state), "--out", str(new), "--allow-unsigned", "--no-progress",
            "--register", "--from", "base", "--set", "train.max_steps=1", "--set", "train.learning_rate=1e-6",
            "--set", "retrain.max_forgetting=10"]
    assert main(argv) == 1
    report = json.loads((new / "eval" / "retrain.json").read_text())
    assert report["start"] == "base" and not (new / "base").exists()
    drop = 100 * (report["old_test"]["parent_accuracy"] - report["old_test"]["accuracy"])
    assert report["old_test"]["drop_points"] == pytest.approx(drop) and drop > 10 and report["promotable"] is False
    assert "not registered" in capsys.readouterr().out
    with open_stores(ServeSettings(state_dir=str(state))) as stores:
        assert stores.registry.get_model("sentiment").canary_version is None
        assert len(stores.registry.list_versions("sentiment")) == 1


def test_out_must_be_new_and_nothing_is_left_on_failure(parent: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from lmforge.cli.__main__ import main

    state = tmp_path / "state"
    state.mkdir()
    _plant_feedback(f"sqlite:///{state / 'monitor.db'}", "sentiment", [("fine", "positive")] * 2)
    new = tmp_path / "r"
    assert main(["retrain", str(parent), "--state", str(state), "--out", str(new), "--allow-unsigned"]) == 2
    assert "Only 1 usable feedback label(s) for model 'sentiment'" in capsys.readouterr().err
    assert not new.exists()
    (new / "x").mkdir(parents=True)
    assert main(["retrain", str(parent), "--state", str(state), "--out", str(new), "--allow-unsigned"]) == 2
    assert "is not empty" in capsys.readouterr().err


@pytest.mark.parametrize(("extra", "message"), [
    ([], "--register: model 'sentiment' has no active version in the registry of"),
    (["--canary-percent", "0"], "--canary-percent must be above 0 and at most 100, got 0."),
])
def test_register_is_refused_before_training_when_no_canary_could_follow(
        parent: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    from lmforge.cli.__main__ import main
    from lmforge.serve import ServeSettings, open_stores

    state = tmp_path / "state"
    state.mkdir()
    if extra:  # a served model: only the percent is wrong
        _serve_state(state, parent)
    served = [(f"{t}, again", "positive") for t in POS] + [(f"{t}, again", "negative") for t in NEG]
    _plant_feedback(f"sqlite:///{state / 'monitor.db'}", "sentiment", served)
    new = tmp_path / "r1"
    argv = ["retrain", str(parent), "--state", str(state), "--out", str(new), "--allow-unsigned", "--no-progress",
            "--model", "sentiment", "--register", "--set", "retrain.min_feedback=5", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not new.exists()  # refused before anything was trained
    with open_stores(ServeSettings(state_dir=str(state))) as stores:
        assert [len(stores.registry.list_versions(m.name)) for m in stores.registry.list_models()] == ([1] if extra else [])
