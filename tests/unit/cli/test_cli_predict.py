"""`lmforge predict`: every input error exits 2 with its message and writes nothing; --input/--output labels a file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests._runs import copy_run

from lmforge.cli.__main__ import main
from lmforge.predict import load_predictor

EITHER_INPUT = "Give either --text (repeatable) or --input FILE.jsonl, not both or neither."
EITHER_TARGET = "Give either a run directory or --url of a running server, not both or neither."


@pytest.fixture
def texts_file(tmp_path: Path) -> Path:
    path = tmp_path / "texts.jsonl"
    path.write_text(json.dumps({"text": "lost my bag", "id": 1}) + "\n" + json.dumps({"text": "great crew", "id": 2})
                    + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["RUN", "--text", "hi", "--input", "IN"], EITHER_INPUT),
        (["RUN"], EITHER_INPUT),
        (["RUN", "--input", "IN"], "--input needs --output FILE.jsonl for the predictions."),
        (["RUN", "--text", "hi", "--batch-size", "0"], "--batch-size must be at least 1, got 0."),
        (["RUN", "--text", "hi", "--batch-size", "-3"], "--batch-size must be at least 1, got -3."),
        (["--text", "hi"], EITHER_TARGET),
        (["RUN", "--url", "http://127.0.0.1:9", "--text", "hi"], EITHER_TARGET),
        (["RUN", "--input", "MISSING", "--output", "OUT"], "Input file not found: MISSING"),
    ],
    ids=["text-and-input", "neither-text-nor-input", "input-without-output", "batch-size-0", "batch-size-negative",
         "neither-run-nor-url", "run-and-url", "missing-input-file"],
)
def test_input_errors_exit_2_with_the_message_and_write_nothing(
    argv: list[str], message: str, tmp_path: Path, texts_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = {"RUN": str(tmp_path / "run"), "IN": str(texts_file), "MISSING": str(tmp_path / "missing.jsonl"),
             "OUT": str(tmp_path / "out.jsonl")}
    assert main(["predict", *(names.get(a, a) for a in argv)]) == 2
    out = capsys.readouterr()
    expected = message.replace("MISSING", names["MISSING"])
    assert (out.out, out.err) == ("", f"error: {expected}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["texts.jsonl"]  # no output, no run folder made


@pytest.mark.slow
def test_input_file_gets_one_prediction_per_line(
    trained_full: Path, tmp_path: Path, texts_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(trained_full, tmp_path / "run").root
    out_file = tmp_path / "predictions.jsonl"
    argv = ["predict", str(run), "--input", str(texts_file), "--output", str(out_file), "--allow-unsigned",
            "--batch-size", "1", "--no-progress"]
    assert main(argv) == 0
    assert capsys.readouterr().out == f"wrote 2 predictions to {out_file}\n"
    rows = [json.loads(line) for line in out_file.read_text(encoding="utf-8").splitlines()]
    expected = load_predictor(run).predict(["lost my bag", "great crew"], batch_size=1)
    assert [(r["id"], r["text"]) for r in rows] == [(1, "lost my bag"), (2, "great crew")]  # the input fields kept
    assert [r["prediction"]["label"] for r in rows] == [p["label"] for p in expected]
    for row, want in zip(rows, expected, strict=True):
        assert row["prediction"]["scores"] == pytest.approx(want["scores"], abs=1e-6)


def test_explain_adds_the_words_that_pushed_toward_the_label(
    trained_full: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lmforge.predict import explain

    run = copy_run(trained_full, tmp_path / "run").root
    text = "lost my bag again, terrible service"
    argv = ["predict", str(run), "--text", text, "--allow-unsigned", "--explain", "--explain-top", "2",
            "--explain-steps", "8"]
    assert main(argv) == 0
    (row,) = json.loads(capsys.readouterr().out)
    (want,) = explain(load_predictor(run), [text], steps=8)
    assert row["label"] == want.label == row["explanation"]["label"]
    assert row["explanation"]["method"] == "integrated-gradients"
    assert [t["token"] for t in row["explanation"]["tokens"]] == [w.word for w in want.top(2)]
    assert main(["predict", str(run), "--text", text, "--allow-unsigned", "--explain", "--explain-top", "-1"]) == 2
    assert capsys.readouterr().err == "error: --explain-top must be 0 (every word) or more, got -1.\n"
    assert main(["predict", str(run), "--text", text, "--allow-unsigned", "--explain", "--explain-label", "meh"]) == 2
    assert capsys.readouterr().err == "error: Unknown label 'meh'; the model's labels are negative, positive.\n"
