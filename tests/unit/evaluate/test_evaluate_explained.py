"""The report's "What the model reads": explanations of a seeded sample of test predictions."""

from __future__ import annotations

import json
from pathlib import Path

from tests._runs import copy_run

from lmforge.config import spec_from_dict
from lmforge.evaluate import evaluate
from lmforge.predict import explain, load_predictor


def test_report_explains_a_seeded_sample(trained_full: Path, tmp_path: Path) -> None:
    run = copy_run(trained_full, tmp_path / "run")
    spec = spec_from_dict({"model": {"max_length": 32}, "evaluate": {"explain_examples": 6, "explain_steps": 4}})
    evaluate(spec, run)
    explained = json.loads((run.eval_dir / "explanations.json").read_text(encoding="utf-8"))
    assert (explained["n"], explained["method"], explained["steps"]) == (6, "integrated-gradients", 4)
    texts = [json.loads(line)["text"] for line in run.split_path("test").read_text(encoding="utf-8").splitlines()]
    predictor = load_predictor(run, "fp32")
    # Recount the decisive words of the same seeded sample by hand.
    import numpy as np

    sample = sorted(np.random.default_rng(spec.data.seed).choice(len(texts), size=6, replace=False).tolist())
    counts: dict[str, dict[str, int]] = {}
    for e in explain(predictor, [texts[i] for i in sample], steps=4):
        top = e.top(1)[0]
        if top.weight > 0:
            word = top.word.strip("\"'“”‘’.,;:!?()[]{}<>«»…-–—*_/\\|@#").casefold()
            counts.setdefault(e.label, {}).setdefault(word, 0)
            counts[e.label][word] += 1
    got = {label: {w["word"]: w["count"] for w in words} for label, words in explained["decisive_words"].items()}
    assert got == counts
    report = (run.eval_dir / "report.html").read_text(encoding="utf-8")
    assert "<h2>What the model reads</h2>" in report and "Decisive words per predicted class" in report
    for error in explained["errors"]:
        assert error["true_label"] != error["predicted"] and error["text"] in texts


def test_explanations_can_be_turned_off(trained_full: Path, tmp_path: Path) -> None:
    run = copy_run(trained_full, tmp_path / "run")
    evaluate(spec_from_dict({"model": {"max_length": 32}, "evaluate": {"explain_examples": 0}}), run)
    assert not (run.eval_dir / "explanations.json").exists()
    assert "No explanations (evaluate.explain_examples: 0)." in (run.eval_dir / "report.html").read_text(encoding="utf-8")
