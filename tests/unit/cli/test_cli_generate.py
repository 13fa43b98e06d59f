"""`lmforge validate / prepare` for ``task: generate``: the task comes from the model's kind, a
task pointed at the other kind of model exits 2, and every bad question/answer input exits 2
with one clear line (and writes nothing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tests._tiny_lm import build_tiny_lm

from lmforge.cli.__main__ import main


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture
def spec_file(tmp_path: Path) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text("name: t\n", encoding="utf-8")
    return str(path)


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line, no traceback
    return err.removeprefix("error: ").rstrip("\n")


def test_a_causal_lm_without_task_resolves_to_generate_with_its_defaults(
    tiny_lm: Path, spec_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", spec_file, "--set", f"model.name={tiny_lm}", "--print"]) == 0
    out = capsys.readouterr().out
    resolved = yaml.safe_load(out.split("\n", 1)[1])
    assert resolved["task"] == "generate"
    assert (resolved["data"]["dataset"], resolved["model"]["max_length"], resolved["train"]["method"],
            resolved["train"]["batch_size"]) == ("support-answers", 512, "lora", 8)


def test_an_encoder_without_task_resolves_to_classify(spec_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", spec_file, "--print"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out.split("\n", 1)[1])
    assert (resolved["task"], resolved["model"]["name"], resolved["data"]["dataset"]) == (
        "classify", "minilm-l6", "airline-tweets")
    assert (resolved["model"]["max_length"], resolved["train"]["method"], resolved["train"]["batch_size"]) == (
        128, "full", 32)


def test_explicit_keys_win_over_the_task_defaults(tiny_lm: Path, spec_file: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", spec_file, "--set", f"model.name={tiny_lm}", "--set", "model.max_length=64",
                 "--set", "train.method=full", "--set", "train.batch_size=32", "--print"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out.split("\n", 1)[1])
    assert (resolved["task"], resolved["model"]["max_length"], resolved["train"]["method"],
            resolved["train"]["batch_size"]) == ("generate", 64, "full", 32)


def test_classify_pointed_at_a_causal_lm(tiny_lm: Path, spec_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _error(capsys, ["validate", spec_file, "--set", "task=classify", "--set", f"model.name={tiny_lm}"]) == (
        f"task is 'classify' but model.name '{tiny_lm}' is a causal-lm, which cannot classify text. "
        "Point model.name at an encoder such as minilm-l6, or set task: generate."
    )


def test_generate_pointed_at_an_encoder(spec_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _error(capsys, ["validate", spec_file, "--set", "task=generate", "--set", "model.name=minilm-l6"]) == (
        "task is 'generate' but model.name 'minilm-l6' is an encoder, which cannot generate answers. "
        "Point model.name at a causal LM such as smollm2-135m, or set task: classify."
    )


def test_a_classification_dataset_for_generate(tiny_lm: Path, spec_file: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert _error(capsys, ["validate", spec_file, "--set", f"model.name={tiny_lm}", "--set", "data.dataset=airline-tweets"]) == (
        "data.dataset: 'airline-tweets' is a classify dataset but task is 'generate'. Pick a generate dataset: "
        "support-answers."
    )


def test_augmentation_with_generate(spec_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _error(capsys, ["validate", spec_file, "--set", "task=generate", "--set", "data.augment.enabled=true"]).startswith(
        "data.augment.enabled is true but task is 'generate'"
    )


def _pairs(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


WORDS = "how do i cancel my order track refund the it is to your please call us open account reset password".split()
# 20 prompts of 5 distinct words each: none a near duplicate of another.
PAIRS = [{"prompt": " ".join(WORDS[(i * 5 + k) % len(WORDS)] for k in range(5)) + f" {i}",
          "response": "please call us"} for i in range(20)]


@pytest.mark.parametrize(
    ("rows", "extra", "message"),
    [
        ([{"question": "a", "answer": "b"}], [],
         "data.prompt_column is 'prompt' but {path} has no such column. data.response_column is 'response' but "
         "{path} has no such column. Columns found: 'question', 'answer'. Set data.prompt_column and "
         "data.response_column to the question and answer columns, or data.messages_column to a column of chat turns."),
        ([*PAIRS[:3], {"prompt": "reset password", "response": ""}], [],
         "line 4 of {path} has an empty response (data.response_column 'response'). Fill it in or drop the row."),
        ([*PAIRS[:2], {"prompt": "how do i reset my password please call us thanks", "response": "yes"}],
         ["model.max_length=8"],
         "line 3 of {path}: the prompt is 15 tokens with the chat template, and the limit is 8 (model.max_length), "
         "which leaves no room for the answer. Shorten it, raise model.max_length, or set data.truncate: left to cut "
         "its oldest tokens."),
    ],
    ids=["missing-columns", "empty-response", "prompt-too-long"],
)
def test_bad_question_answer_files_exit_2(tmp_path: Path, tiny_lm: Path, capsys: pytest.CaptureFixture[str],
                                          rows: list[dict[str, str]], extra: list[str], message: str) -> None:
    path = _pairs(tmp_path / "qa.jsonl", rows)
    sets = [a for s in [f"model.name={tiny_lm}", f"data.path={path}", *extra] for a in ("--set", s)]
    assert _error(capsys, ["prepare", *sets, "--out", str(tmp_path / "run")]) == message.format(path=path)
    assert not (tmp_path / "run").exists()


def test_truncate_left_prepares_with_a_warning(tmp_path: Path, tiny_lm: Path, capsys: pytest.CaptureFixture[str]) -> None:
    long = {"prompt": "how do i reset my password please call us thanks", "response": "yes"}
    path = _pairs(tmp_path / "qa.jsonl", [*PAIRS, long])
    sets = [a for s in [f"model.name={tiny_lm}", f"data.path={path}", "model.max_length=12", "data.truncate=left",
                        "data.val_fraction=0", "data.test_fraction=0", "data.dedupe=false"] for a in ("--set", s)]
    assert main(["prepare", *sets, "--out", str(tmp_path / "run")]) == 0
    report = json.loads((tmp_path / "run" / "data" / "data_report.json").read_text(encoding="utf-8"))
    assert report["counts"]["train"] == 21
    assert "prompts were longer than 12 tokens and lost their oldest tokens (data.truncate: left)." in " ".join(
        report["warnings"])
