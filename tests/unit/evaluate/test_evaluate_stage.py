"""The evaluate stage over a run directory built in tmp, with a stand-in predictor.

The real predictor needs a trained model (the e2e tests use it); here a small object with
``labels`` and ``predict_proba`` returns fixed probabilities per text, so every metric and
every line of the artifacts is known in advance.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from lmforge.config import EvalConfig, Spec, spec_to_dict
from lmforge.errors import DataError, RunDirError
from lmforge.evaluate import evaluate
from lmforge.rundir import RunDir, sha256_file

LABELS = ["negative", "neutral", "positive"]
EVAL_FILES = {"metrics.json", "confusion.png", "calibration.png", "errors.jsonl", "report.html"}
SCRIPT_TEXT = '<script>alert("owned")</script> the flight was fine'

# (text, true label, predicted probabilities in LABELS order)
ROWS = [
    ("terrible delay again, lost my bag", "negative", [0.90, 0.05, 0.05]),
    ("worst airline ever", "negative", [0.80, 0.10, 0.10]),
    ("rude staff at the gate and no apology at all for the three hour wait", "negative", [0.70, 0.20, 0.10]),
    ("cancelled", "negative", [0.60, 0.30, 0.10]),
    ("my flight is at 6pm", "neutral", [0.20, 0.30, 0.50]),
    ("what is the baggage allowance for international flights to europe?", "neutral", [0.55, 0.35, 0.10]),
    ("boarding now", "neutral", [0.10, 0.60, 0.30]),
    (SCRIPT_TEXT, "neutral", [0.05, 0.10, 0.85]),
    ("great crew, thanks!", "positive", [0.05, 0.05, 0.90]),
    ("love the new seats", "positive", [0.10, 0.10, 0.80]),
    ("smooth landing and friendly staff, would fly again with them any day", "positive", [0.05, 0.15, 0.80]),
    ("on time for once", "positive", [0.30, 0.10, 0.60]),
]
MISCLASSIFIED = {ROWS[4][0], ROWS[5][0], SCRIPT_TEXT}


class StandInPredictor:
    """Fixed probabilities per text; records the batch sizes it was called with."""

    labels = LABELS

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.batch_sizes: list[int] = []
        self._proba = {text: proba for text, _, proba in ROWS}

    def predict_proba(self, texts: list[str], batch_size: int, progress: bool = False) -> np.ndarray:
        self.batch_sizes.append(batch_size)
        if self.fail:
            raise RuntimeError("model exploded")
        return np.array([self._proba[t] for t in texts])


def _spec(max_errors: int = 500) -> Spec:
    return Spec(
        name="unit-eval", evaluate=EvalConfig(batch_size=7, calibration_bins=5, max_errors=max_errors)
    )


def _make_run(root: Path, *, manifest: bool = True) -> RunDir:
    run = RunDir(root)
    run.data_dir.mkdir(parents=True)
    with open(run.split_path("test"), "w", encoding="utf-8") as fh:
        for text, label, _ in ROWS:
            fh.write(json.dumps({"text": text, "label": label}) + "\n")
    run.labels_path.write_text(json.dumps({"labels": LABELS}), encoding="utf-8")
    if manifest:
        run.update_manifest(
            spec=spec_to_dict(_spec()),
            data={
                "source": "airline-tweets",
                "fingerprint": "abc123",
                "counts": {"train": 96, "val": 12, "test": len(ROWS)},
                "labels": LABELS,
            },
            train={
                "method": "lora",
                "base_model": "minilm-l6",
                "trainable_parameters": 1000,
                "total_parameters": 4000,
            },
        )
    return run


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunDir, dict, StandInPredictor]:
    run = _make_run(tmp_path_factory.mktemp("eval") / "run")
    predictor = StandInPredictor()
    metrics = evaluate(_spec(), run, predictor=predictor)
    return run, metrics, predictor


def test_writes_the_eval_file_set_and_metrics(evaluated: tuple[RunDir, dict, StandInPredictor]) -> None:
    run, metrics, predictor = evaluated
    assert {p.name for p in run.eval_dir.iterdir()} == EVAL_FILES
    assert predictor.batch_sizes == [7]
    on_disk = json.loads((run.eval_dir / "metrics.json").read_text(encoding="utf-8"))
    assert on_disk == metrics
    for key in (
        "accuracy",
        "macro_f1",
        "weighted_f1",
        "per_class",
        "confusion_matrix",
        "ece",
        "calibration",
        "log_loss",
        "most_confused",
        "n_test",
        "error_rate_by_length",
    ):
        assert key in on_disk, key
    assert on_disk["n_test"] == len(ROWS)
    assert on_disk["accuracy"] == pytest.approx(9 / 12)
    assert on_disk["per_class"]["neutral"]["recall"] == pytest.approx(1 / 4)
    assert on_disk["confusion_matrix"] == [[4, 0, 0], [1, 1, 2], [0, 0, 4]]
    assert on_disk["most_confused"][0] == {"true": "neutral", "predicted": "positive", "count": 2}
    assert len(on_disk["calibration"]) == 5
    for png in ("confusion.png", "calibration.png"):
        assert (run.eval_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_errors_are_misclassified_and_most_confident_first(
    evaluated: tuple[RunDir, dict, StandInPredictor],
) -> None:
    run, _, _ = evaluated
    lines = (run.eval_dir / "errors.jsonl").read_text(encoding="utf-8").splitlines()
    errors = [json.loads(line) for line in lines]
    assert {e["text"] for e in errors} == MISCLASSIFIED
    assert all(e["label"] != e["predicted"] for e in errors)
    assert [e["confidence"] for e in errors] == sorted((e["confidence"] for e in errors), reverse=True)
    assert errors[0] == {
        "text": SCRIPT_TEXT,
        "label": "neutral",
        "predicted": "positive",
        "confidence": 0.85,
        "scores": {"negative": 0.05, "neutral": 0.1, "positive": 0.85},
    }


def test_max_errors_limits_errors_jsonl(tmp_path: Path) -> None:
    run = _make_run(tmp_path / "run", manifest=False)
    evaluate(_spec(max_errors=1), run, predictor=StandInPredictor())
    errors = (run.eval_dir / "errors.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["text"] for line in errors] == [SCRIPT_TEXT]
    # No manifest data or training section: the card says "unknown" instead of failing.
    card = run.model_card_path.read_text(encoding="utf-8")
    assert "| Base model | unknown |" in card


def test_report_is_self_contained_and_escaped(evaluated: tuple[RunDir, dict, StandInPredictor]) -> None:
    run, metrics, _ = evaluated
    report = (run.eval_dir / "report.html").read_text(encoding="utf-8")
    assert "http://" not in report and "https://" not in report
    assert not re.search(r"""(src|href)\s*=\s*["']?(?!data:)[^"'\s>]*//""", report)
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', report)
    assert [base64.b64decode(i) for i in images] == [
        (run.eval_dir / "confusion.png").read_bytes(),
        (run.eval_dir / "calibration.png").read_bytes(),
    ]
    assert "<script" not in report
    assert "&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt;" in report
    for needle in (
        f"{metrics['accuracy']:.4f}",
        f"{metrics['macro_f1']:.4f}",
        "Error analysis",
        "Q1",
        "abc123",
        "minilm-l6",
        "Most confused",
    ):
        assert needle in report, needle


def test_model_card_has_metrics_and_names_the_weak_class(
    evaluated: tuple[RunDir, dict, StandInPredictor],
) -> None:
    run, metrics, _ = evaluated
    card = run.model_card_path.read_text(encoding="utf-8")
    for section in (
        "## Model details",
        "## Intended use",
        "## Training data",
        "## Evaluation",
        "## Calibration",
        "## Limitations",
        "## How to reproduce",
    ):
        assert section in card, section
    assert f"| Accuracy | {metrics['accuracy']:.4f} |" in card
    assert f"| Macro-F1 | {metrics['macro_f1']:.4f} |" in card
    assert f"**{metrics['ece']:.4f}**" in card
    assert re.search(r"Weak classes: neutral \(F1 0\.40\)", card)
    assert "| Base model | minilm-l6 |" in card and "| Method | lora |" in card
    assert "1,000 of 4,000 (25.00%)" in card
    assert "lmforge run spec.yaml" in card
    assert "Latin script" in card and "truncated" in card


def test_manifest_gets_metrics_and_file_hashes(evaluated: tuple[RunDir, dict, StandInPredictor]) -> None:
    run, metrics, _ = evaluated
    manifest = run.read_manifest()
    assert manifest["metrics"] == {**{k: metrics[k] for k in ("accuracy", "macro_f1", "ece", "n_test")},
                                   "beats_baselines": True}
    assert manifest["files"]["eval/metrics.json"] == sha256_file(run.eval_dir / "metrics.json")
    assert manifest["files"]["MODEL_CARD.md"] == sha256_file(run.model_card_path)
    assert manifest["train"]["method"] == "lora"  # merged, not replaced


def _snapshot(run: RunDir) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run.eval_dir.iterdir()}


def test_failing_predictor_leaves_previous_eval_untouched(tmp_path: Path) -> None:
    run = _make_run(tmp_path / "run")
    evaluate(_spec(), run, predictor=StandInPredictor())
    before, card, manifest = _snapshot(run), run.model_card_path.read_bytes(), run.manifest_path.read_bytes()
    with pytest.raises(RuntimeError, match="model exploded"):
        evaluate(_spec(), run, predictor=StandInPredictor(fail=True))
    assert _snapshot(run) == before
    assert run.model_card_path.read_bytes() == card and run.manifest_path.read_bytes() == manifest
    assert not list(run.root.glob(".eval.*"))


def test_failure_while_writing_eval_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _make_run(tmp_path / "run")
    evaluate(_spec(), run, predictor=StandInPredictor())
    before, manifest = _snapshot(run), run.manifest_path.read_bytes()

    def broken_plot(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("lmforge.evaluate._evaluate.plot_calibration", broken_plot)
    with pytest.raises(OSError, match="disk full"):
        evaluate(_spec(), run, predictor=StandInPredictor())
    assert _snapshot(run) == before
    assert run.manifest_path.read_bytes() == manifest
    assert not list(run.root.glob(".eval.*"))


@pytest.mark.parametrize("missing", ["test", "labels"])
def test_missing_prepared_data_says_run_prepare(tmp_path: Path, missing: str) -> None:
    run = _make_run(tmp_path / "run", manifest=False)
    (run.split_path("test") if missing == "test" else run.labels_path).unlink()
    with pytest.raises(RunDirError, match="lmforge prepare"):
        evaluate(_spec(), run, predictor=StandInPredictor())
    assert not run.eval_dir.exists()


def test_missing_run_dir_says_run_prepare(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="does not exist.*lmforge prepare"):
        evaluate(_spec(), tmp_path / "nowhere", predictor=StandInPredictor())


def test_malformed_or_empty_test_split_is_reported(tmp_path: Path) -> None:
    run = _make_run(tmp_path / "run", manifest=False)
    run.split_path("test").write_text(
        '{"text": "ok", "label": "neutral"}\nnot json\n{"text": 3}\n', encoding="utf-8"
    )
    with pytest.raises(RunDirError, match=r"2 malformed lines: line 2.*line 3.*lmforge prepare"):
        evaluate(_spec(), run, predictor=StandInPredictor())
    run.split_path("test").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        evaluate(_spec(), run, predictor=StandInPredictor())


def test_test_label_unknown_to_the_model_is_a_data_error(tmp_path: Path) -> None:
    run = _make_run(tmp_path / "run", manifest=False)
    with open(run.split_path("test"), "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"text": "meh", "label": "mixed"}) + "\n")
    with pytest.raises(DataError, match=r"does not know: \['mixed'\]"):
        evaluate(_spec(), run, predictor=StandInPredictor())


def test_baselines_beside_the_model(evaluated: tuple[RunDir, dict, StandInPredictor]) -> None:
    run, metrics, _ = evaluated
    # No training split in this run: the baselines take the test labels' frequencies (4 / 4 / 4;
    # the tie goes to the first label). Majority: accuracy 4/12, F1 of 'negative' 2*(1/3)/(4/3) = 0.5.
    assert metrics["baselines"]["majority"] == {"accuracy": 1 / 3, "macro_f1": 0.5 / 3, "class": 0,
                                                "label": "negative"}
    assert metrics["baseline_check"] == {"margin": 0.05, "required_accuracy": round(1 / 3 + 0.05 * 2 / 3, 6),
                                         "required_macro_f1": metrics["baseline_check"]["required_macro_f1"],
                                         "beats": True, "fitted_on": "test"}
    saved = json.loads((run.eval_dir / "metrics.json").read_text(encoding="utf-8"))
    assert saved["baselines"] == metrics["baselines"]
    card = run.model_card_path.read_text(encoding="utf-8")
    assert "| Majority class (negative) | 0.3333 | 0.1667 |" in card
    assert "The model beats the majority-class baseline" in card
    assert "Majority class (negative)" in (run.eval_dir / "report.html").read_text(encoding="utf-8")
