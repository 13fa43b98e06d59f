"""`lmforge predict` on a generative run: answers printed or written per JSONL line; bad input exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests._gen_runs import build_peaky_lm, full_run

from lmforge.cli.__main__ import main
from lmforge.predict import load_generator

TURNS = [{"role": "user", "content": "open account"}]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = build_peaky_lm(tmp_path_factory.mktemp("base") / "tiny-lm")
    return full_run(tmp_path_factory.mktemp("gen") / "run", base)


def test_text_prints_one_answer_per_prompt(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["predict", str(run), "--text", "hello", "--text", "track my refund", "--allow-unsigned",
            "--max-new-tokens", "8"]
    assert main(argv) == 0
    expected = load_generator(run).generate(["hello", "track my refund"], max_new_tokens=8)
    assert [a.text for a in expected] != ["", ""]
    assert capsys.readouterr().out == "".join(f"{a.text}\n" for a in expected)


def test_input_file_gets_a_response_per_line_with_the_sampling_flags(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "prompts.jsonl"
    source.write_text(json.dumps({"prompt": "how do i cancel my order", "id": 1}) + "\n\n"
                      + json.dumps({"messages": TURNS}) + "\n", encoding="utf-8")
    out = tmp_path / "answers.jsonl"
    argv = ["predict", str(run), "--input", str(source), "--output", str(out), "--allow-unsigned",
            "--max-new-tokens", "10", "--temperature", "1.0", "--top-p", "0.9", "--seed", "5", "--stop", "refund",
            "--batch-size", "1"]
    assert main(argv) == 0
    assert capsys.readouterr().out == f"wrote 2 answers to {out}\n"
    expected = load_generator(run).generate(["how do i cancel my order", TURNS], max_new_tokens=10, temperature=1.0,
                                            top_p=0.9, seed=5, stop=["refund"])
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows == [
        {"prompt": "how do i cancel my order", "id": 1, "response": expected[0].text},
        {"messages": TURNS, "prompt": "open account", "response": expected[1].text},
    ]
    assert all("refund" not in row["response"] for row in rows)


def _lines(path: Path, *records: object) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("records", "extra", "message"),
    [
        (({"prompt": "hello"}, {"text": "hi", "id": 2}), [],
         "IN line 2 has no string field 'prompt' and no list 'messages' of chat turns (fields: text, id)."),
        (({"messages": [{"role": "bot", "content": "hi"}]},), [],
         "IN line 1: messages[0] must be {\"role\": one of system, user, assistant, \"content\": text}, "
         "got {'role': 'bot', 'content': 'hi'}."),
        (({"prompt": "hello"},), ["--variant", "onnx-int8"],
         "RUN has no compressed variant 'onnx-int8'. Available: fp32. Run `lmforge compress RUN` to build variants."),
        (({"prompt": "hello"},), ["--temperature", "-1", "--max-new-tokens", "0"],
         "max_new_tokens must be an integer of at least 1, got 0; temperature must be 0 (greedy) or more, got -1.0."),
    ],
    ids=["missing-prompt", "bad-turn", "variant", "bad-settings"],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    run: Path, tmp_path: Path, records: tuple[object, ...], extra: list[str], message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = _lines(tmp_path / "in.jsonl", *records)
    out = tmp_path / "out.jsonl"
    argv = ["predict", str(run), "--input", str(source), "--output", str(out), "--allow-unsigned", *extra]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", f"error: {message.replace('IN', str(source)).replace('RUN', str(run), 1)}\n")
    assert not out.exists()


def test_generation_flags_on_a_classifier_run_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    classifier = tmp_path / "run"
    (classifier / "model").mkdir(parents=True)
    (classifier / "model" / "lmforge_model.json").write_text(json.dumps({"labels": ["neg", "pos"]}), encoding="utf-8")
    assert main(["predict", str(classifier), "--text", "hi", "--max-new-tokens", "5", "--stop", "x"]) == 2
    assert capsys.readouterr().err == (f"error: --max-new-tokens, --stop only apply to a generative run "
                                       f"(task: generate); {classifier} is a classifier.\n")
